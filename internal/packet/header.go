package packet

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers used by secnic.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoIPv4     = 4 // IP in IP (tunnel-mode inner IPv4)
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoIPv6     = 41 // tunnel-mode inner IPv6
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59 // "no next header": ESP dummy packet
	ProtoDstOpts  = 60
)

// Header lengths.
const (
	IPv4MinLen = 20
	IPv6Len    = 40
	UDPLen     = 8
	TCPMinLen  = 20
)

// Version returns the IP version nibble of b, or 0 if b is empty.
func Version(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return int(b[0] >> 4)
}

// WholeDatagram reports whether b is exactly one IPv4 or IPv6 datagram: a
// valid version, a header that fits and a length field equal to len(b).
func WholeDatagram(b []byte) bool {
	switch Version(b) {
	case 4:
		hl, ok := ValidIPv4(b)
		return ok && hl >= IPv4MinLen && IPv4(b).TotalLen() == len(b)
	case 6:
		return len(b) >= IPv6Len && IPv6Len+int(binary.BigEndian.Uint16(b[4:])) == len(b)
	}
	return false
}

// SetLength sets the IP length field of the datagram pkt to len(pkt) (IPv4
// total length, with the header checksum recomputed, or IPv6 payload length).
func SetLength(pkt []byte) {
	if Version(pkt) == 4 {
		h := IPv4(pkt)
		h.SetTotalLen(len(pkt))
		h.UpdateChecksum()
		return
	}
	IPv6(pkt).SetPayloadLen(len(pkt) - IPv6Len)
}

// IPv4 is a zero-copy view of an IPv4 header. The caller checks the length
// (see ValidIPv4) before using the accessors.
type IPv4 []byte

// ValidIPv4 reports whether b starts with a well-formed IPv4 header whose
// total length fits in b, and returns the header length.
func ValidIPv4(b []byte) (hlen int, ok bool) {
	if len(b) < IPv4MinLen || b[0]>>4 != 4 {
		return 0, false
	}
	hlen = int(b[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if hlen < IPv4MinLen || tl < hlen || tl > len(b) {
		return 0, false
	}
	return hlen, true
}

func (h IPv4) HeaderLen() int        { return int(h[0]&0x0f) * 4 }
func (h IPv4) TOS() uint8            { return h[1] }
func (h IPv4) SetTOS(v uint8)        { h[1] = v }
func (h IPv4) TotalLen() int         { return int(binary.BigEndian.Uint16(h[2:])) }
func (h IPv4) SetTotalLen(n int)     { binary.BigEndian.PutUint16(h[2:], uint16(n)) }
func (h IPv4) ID() uint16            { return binary.BigEndian.Uint16(h[4:]) }
func (h IPv4) SetID(v uint16)        { binary.BigEndian.PutUint16(h[4:], v) }
func (h IPv4) FlagsFrag() uint16     { return binary.BigEndian.Uint16(h[6:]) }
func (h IPv4) SetFlagsFrag(v uint16) { binary.BigEndian.PutUint16(h[6:], v) }
func (h IPv4) DF() bool              { return h[6]&0x40 != 0 }
func (h IPv4) MoreFragments() bool   { return h[6]&0x20 != 0 }
func (h IPv4) FragOffset() int       { return int(binary.BigEndian.Uint16(h[6:])&0x1fff) * 8 }
func (h IPv4) IsFragment() bool      { return h.MoreFragments() || h.FragOffset() != 0 }
func (h IPv4) TTL() uint8            { return h[8] }
func (h IPv4) SetTTL(v uint8)        { h[8] = v }
func (h IPv4) Protocol() uint8       { return h[9] }
func (h IPv4) SetProtocol(v uint8)   { h[9] = v }
func (h IPv4) Checksum() uint16      { return binary.BigEndian.Uint16(h[10:]) }
func (h IPv4) Src() netip.Addr       { return netip.AddrFrom4([4]byte(h[12:16])) }
func (h IPv4) Dst() netip.Addr       { return netip.AddrFrom4([4]byte(h[16:20])) }
func (h IPv4) SetSrc(a netip.Addr)   { b := a.As4(); copy(h[12:16], b[:]) }
func (h IPv4) SetDst(a netip.Addr)   { b := a.As4(); copy(h[16:20], b[:]) }
func (h IPv4) Payload() []byte       { return h[h.HeaderLen():h.TotalLen()] }
func (h IPv4) ChecksumValid() bool   { return Checksum(h[:h.HeaderLen()], 0) == 0 }

// UpdateChecksum recomputes the header checksum.
func (h IPv4) UpdateChecksum() {
	hl := h.HeaderLen()
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], Checksum(h[:hl], 0))
}

// IPv6 is a zero-copy view of an IPv6 fixed header.
type IPv6 []byte

// ValidIPv6 reports whether b starts with an IPv6 header whose payload length
// fits in b.
func ValidIPv6(b []byte) bool {
	if len(b) < IPv6Len || b[0]>>4 != 6 {
		return false
	}
	return IPv6Len+int(binary.BigEndian.Uint16(b[4:])) <= len(b)
}

func (h IPv6) TrafficClass() uint8     { return h[0]<<4 | h[1]>>4 }
func (h IPv6) SetTrafficClass(v uint8) { h[0] = 0x60 | v>>4; h[1] = v<<4 | h[1]&0x0f }
func (h IPv6) FlowLabel() uint32       { return binary.BigEndian.Uint32(h[0:]) & 0xfffff }
func (h IPv6) PayloadLen() int         { return int(binary.BigEndian.Uint16(h[4:])) }
func (h IPv6) SetPayloadLen(n int)     { binary.BigEndian.PutUint16(h[4:], uint16(n)) }
func (h IPv6) NextHeader() uint8       { return h[6] }
func (h IPv6) SetNextHeader(v uint8)   { h[6] = v }
func (h IPv6) HopLimit() uint8         { return h[7] }
func (h IPv6) SetHopLimit(v uint8)     { h[7] = v }
func (h IPv6) Src() netip.Addr         { return netip.AddrFrom16([16]byte(h[8:24])) }
func (h IPv6) Dst() netip.Addr         { return netip.AddrFrom16([16]byte(h[24:40])) }
func (h IPv6) SetSrc(a netip.Addr)     { b := a.As16(); copy(h[8:24], b[:]) }
func (h IPv6) SetDst(a netip.Addr)     { b := a.As16(); copy(h[24:40], b[:]) }
func (h IPv6) Payload() []byte         { return h[IPv6Len : IPv6Len+h.PayloadLen()] }

// UDP is a zero-copy view of a UDP header.
type UDP []byte

func (h UDP) SrcPort() uint16      { return binary.BigEndian.Uint16(h[0:]) }
func (h UDP) DstPort() uint16      { return binary.BigEndian.Uint16(h[2:]) }
func (h UDP) SetSrcPort(v uint16)  { binary.BigEndian.PutUint16(h[0:], v) }
func (h UDP) SetDstPort(v uint16)  { binary.BigEndian.PutUint16(h[2:], v) }
func (h UDP) Length() int          { return int(binary.BigEndian.Uint16(h[4:])) }
func (h UDP) SetLength(n int)      { binary.BigEndian.PutUint16(h[4:], uint16(n)) }
func (h UDP) Checksum() uint16     { return binary.BigEndian.Uint16(h[6:]) }
func (h UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[6:], v) }

// TCP is a zero-copy view of a TCP header.
type TCP []byte

func (h TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(h[0:]) }
func (h TCP) DstPort() uint16      { return binary.BigEndian.Uint16(h[2:]) }
func (h TCP) DataOffset() int      { return int(h[12]>>4) * 4 }
func (h TCP) Checksum() uint16     { return binary.BigEndian.Uint16(h[16:]) }
func (h TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(h[16:], v) }

// IPv4Fields holds the fields of an IPv4 header without options, for
// WriteIPv4. Fields left zero are written as zero (no DF, TTL 0).
type IPv4Fields struct {
	// TOS is the DSCP/ECN byte.
	TOS uint8
	// TotalLen is the datagram length, header included.
	TotalLen int
	// ID is the identification field.
	ID uint16
	// DF sets the don't-fragment flag (the fragment offset is 0).
	DF bool
	// TTL is the time to live.
	TTL uint8
	// Protocol is the upper-layer protocol.
	Protocol uint8
	// Src and Dst are the IPv4 addresses.
	Src, Dst netip.Addr
}

// WriteIPv4 writes a 20-byte IPv4 header without options with the fields f
// into h and computes its checksum.
func WriteIPv4(h []byte, f IPv4Fields) {
	h[0], h[1] = 0x45, f.TOS
	binary.BigEndian.PutUint16(h[2:], uint16(f.TotalLen))
	binary.BigEndian.PutUint16(h[4:], f.ID)
	if f.DF {
		h[6], h[7] = 0x40, 0
	} else {
		h[6], h[7] = 0, 0
	}
	h[8], h[9] = f.TTL, f.Protocol
	h[10], h[11] = 0, 0
	s, d := f.Src.As4(), f.Dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	binary.BigEndian.PutUint16(h[10:], Checksum(h[:IPv4MinLen], 0))
}

// IPv6Fields holds the fields of an IPv6 fixed header, for WriteIPv6. The
// flow label is written as zero.
type IPv6Fields struct {
	// TrafficClass is the DSCP/ECN byte.
	TrafficClass uint8
	// PayloadLen is the length after the 40-byte fixed header.
	PayloadLen int
	// NextHeader is the protocol of the first header after the fixed header.
	NextHeader uint8
	// HopLimit is the hop limit.
	HopLimit uint8
	// Src and Dst are the IPv6 addresses.
	Src, Dst netip.Addr
}

// WriteIPv6 writes a 40-byte IPv6 header with the fields f into h.
func WriteIPv6(h []byte, f IPv6Fields) {
	binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(f.TrafficClass)<<20)
	binary.BigEndian.PutUint16(h[4:], uint16(f.PayloadLen))
	h[6], h[7] = f.NextHeader, f.HopLimit
	s, d := f.Src.As16(), f.Dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
}

// TOS returns the DSCP/ECN byte of an IPv4 header or the traffic class of an
// IPv6 header, and whether an IPv4 header has DF set (true for IPv6, which
// routers never fragment).
func TOS(b []byte) (tos uint8, df bool) {
	if Version(b) == 4 {
		return IPv4(b).TOS(), IPv4(b).DF()
	}
	return IPv6(b).TrafficClass(), true
}

// ECN codepoints (RFC 3168).
const (
	ECNNotECT = 0
	ECNCE     = 3
)

// DecapECN applies RFC 6040 normal-mode decapsulation: a CE mark on the
// outer header is copied to an ECN-capable inner header. It reports false
// if the outer header is CE but the inner is not ECN-capable (the packet
// must then be dropped).
func DecapECN(outerTOS uint8, inner []byte) bool {
	if outerTOS&3 != ECNCE {
		return true
	}
	switch Version(inner) {
	case 4:
		h := IPv4(inner)
		if h.TOS()&3 == ECNNotECT {
			return false
		}
		if h.TOS()&3 != ECNCE {
			h.SetTOS(h.TOS() | ECNCE)
			h.UpdateChecksum()
		}
	case 6:
		h := IPv6(inner)
		if h.TrafficClass()&3 == ECNNotECT {
			return false
		}
		h.SetTrafficClass(h.TrafficClass() | ECNCE)
	}
	return true
}
