package capabilities

import (
	"encoding/binary"
	"fmt"
)

// BinarySize is the size of NDIS_IPSEC_OFFLOAD_V2 in bytes.
const BinarySize = 32

// Byte offsets of NDIS_IPSEC_OFFLOAD_V2 fields: ULONG = 4 bytes
// little-endian, BOOLEAN = 1 byte. The eleven BOOLEANs IPv6Supported,
// IPv4Options, IPv6NonIPsecExtensionHeaders, Ah, Esp, AhEspCombined,
// Transport, Tunnel, TransportTunnelCombined, LsoSupported and
// ExtendedSequenceNumbers sit at offsets 4 to 14; byte 15 is padding before
// the next ULONG.
const (
	offEncapsulation            = 0
	offFirstBoolean             = 4
	offPadding                  = 15
	offUdpEsp                   = 16
	offAuthenticationAlgorithms = 20
	offEncryptionAlgorithms     = 24
	offSaOffloadCapacity        = 28
)

// booleans returns pointers to the BOOLEAN fields, indexed by offset-4.
func (r *Record) booleans() [11]*bool {
	return [11]*bool{
		&r.IPv6Supported, &r.IPv4Options, &r.IPv6NonIPsecExtensionHeaders,
		&r.Ah, &r.Esp, &r.AhEspCombined, &r.Transport, &r.Tunnel,
		&r.TransportTunnelCombined, &r.LsoSupported, &r.ExtendedSequenceNumbers,
	}
}

var booleanNames = [11]string{
	"IPv6Supported", "IPv4Options", "IPv6NonIPsecExtensionHeaders",
	"Ah", "Esp", "AhEspCombined", "Transport", "Tunnel",
	"TransportTunnelCombined", "LsoSupported", "ExtendedSequenceNumbers",
}

// AppendBinary appends the 32-byte NDIS_IPSEC_OFFLOAD_V2 encoding of r to b.
// Only the NDIS fields are encoded; OffloadFlags (part of NDIS_OFFLOAD),
// Extensions and Limits are not. Mask values are written as they are.
func (r Record) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, uint32(r.Encapsulation))
	for _, v := range r.booleans() {
		if *v {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = append(b, 0) // padding at offset 15
	b = binary.LittleEndian.AppendUint32(b, uint32(r.UdpEsp))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.AuthenticationAlgorithms))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.EncryptionAlgorithms))
	b = binary.LittleEndian.AppendUint32(b, r.SaOffloadCapacity)
	return b, nil
}

// MarshalBinary returns the 32-byte NDIS_IPSEC_OFFLOAD_V2 encoding of r
// (see AppendBinary). It never fails.
func (r Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, BinarySize))
}

// UnmarshalBinary decodes a 32-byte NDIS_IPSEC_OFFLOAD_V2 into the NDIS
// fields of r; OffloadFlags, Extensions and Limits are left as they are.
// It is strict: the length must be exactly 32, every BOOLEAN must be 0 or 1
// and the padding byte 0. Mask bits are taken as they are; use
// [Record.Validate] to check them. On error r is not changed.
func (r *Record) UnmarshalBinary(data []byte) error {
	if len(data) != BinarySize {
		return invalid("NDIS_IPSEC_OFFLOAD_V2", fmt.Sprintf("has %d bytes", len(data)),
			fmt.Sprintf("it is exactly %d bytes", BinarySize))
	}
	for i, name := range booleanNames {
		if v := data[offFirstBoolean+i]; v > 1 {
			return invalid("NDIS_IPSEC_OFFLOAD_V2."+name, fmt.Sprintf("is 0x%02x at offset %d", v, offFirstBoolean+i),
				"a BOOLEAN is 0 (FALSE) or 1 (TRUE)")
		}
	}
	if data[offPadding] != 0 {
		return invalid("NDIS_IPSEC_OFFLOAD_V2 padding", fmt.Sprintf("is 0x%02x at offset %d", data[offPadding], offPadding),
			"the padding byte must be 0")
	}
	out := *r
	out.Encapsulation = Encapsulation(binary.LittleEndian.Uint32(data[offEncapsulation:]))
	for i, p := range out.booleans() {
		*p = data[offFirstBoolean+i] == 1
	}
	out.UdpEsp = UDPESPTypes(binary.LittleEndian.Uint32(data[offUdpEsp:]))
	out.AuthenticationAlgorithms = AuthenticationAlgorithms(binary.LittleEndian.Uint32(data[offAuthenticationAlgorithms:]))
	out.EncryptionAlgorithms = EncryptionAlgorithms(binary.LittleEndian.Uint32(data[offEncryptionAlgorithms:]))
	out.SaOffloadCapacity = binary.LittleEndian.Uint32(data[offSaOffloadCapacity:])
	*r = out
	return nil
}
