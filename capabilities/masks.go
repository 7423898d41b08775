package capabilities

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Encapsulation is the NDIS_ENCAPSULATION_* bit mask of the record's
// Encapsulation field: the MAC framings for which IPsec offload works.
// In JSON it is a list of names ("ieee_802_3", ...).
type Encapsulation uint32

// NDIS_ENCAPSULATION_* values.
const (
	EncapsulationNotSupported       Encapsulation = 0
	EncapsulationNull               Encapsulation = 0x01
	EncapsulationIEEE8023           Encapsulation = 0x02 // mandatory for IPsec offload
	EncapsulationIEEE8023PAndQ      Encapsulation = 0x04
	EncapsulationIEEE8023PAndQInOOB Encapsulation = 0x08
	EncapsulationIEEELLCSNAPRouted  Encapsulation = 0x10
)

// UDPESPTypes is the bit mask of UDP-ESP encapsulation types
// (IPSEC_OFFLOAD_V2_*UDP_ESP*). In a record it lists the types the NIC can
// parse; in a [BundleRequest] it holds at most one type (0 = no UDP
// encapsulation). In JSON it is a list of names ("transport", ...).
type UDPESPTypes uint32

// UDP-ESP encapsulation types.
const (
	// UDPESPNone: no UDP encapsulation (IPSEC_OFFLOAD_V2_UDP_ESP_ENCAPSULATION_NONE).
	UDPESPNone UDPESPTypes = 0
	// UDPESPTransport: UDP-encapsulated transport-mode ESP.
	UDPESPTransport UDPESPTypes = 1
	// UDPESPTunnel: UDP-encapsulated tunnel part; the inner transport part
	// is neither UDP-encapsulated nor ESP.
	UDPESPTunnel UDPESPTypes = 2
	// UDPESPTransportOverUDPTunnel: UDP-encapsulated tunnel part, transport
	// part ESP but not UDP-encapsulated
	// (IPSEC_OFFLOAD_V2_TRANSPORT_OVER_UDP_ESP_ENCAPSULATION_TUNNEL).
	UDPESPTransportOverUDPTunnel UDPESPTypes = 4
	// UDPESPUDPTransportOverTunnel: plain tunnel part, UDP-encapsulated ESP
	// transport part
	// (IPSEC_OFFLOAD_V2_UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL).
	UDPESPUDPTransportOverTunnel UDPESPTypes = 8
)

// AuthenticationAlgorithms is the IPSEC_OFFLOAD_V2_AUTHENTICATION_* bit mask.
// In JSON it is a list of canonical integrity names ("hmac-sha1-96", ...);
// NDIS names ("SHA_1") are accepted too.
type AuthenticationAlgorithms uint32

// IPSEC_OFFLOAD_V2_AUTHENTICATION_* values.
const (
	AuthMD5       AuthenticationAlgorithms = 0x01 // hmac-md5-96
	AuthSHA1      AuthenticationAlgorithms = 0x02 // hmac-sha1-96
	AuthSHA256    AuthenticationAlgorithms = 0x04 // hmac-sha256-128
	AuthAESGCM128 AuthenticationAlgorithms = 0x08 // aes-gmac-128 (AH, and ESP with EncrNone)
	AuthAESGCM192 AuthenticationAlgorithms = 0x10 // aes-gmac-192
	AuthAESGCM256 AuthenticationAlgorithms = 0x20 // aes-gmac-256
)

// EncryptionAlgorithms is the IPSEC_OFFLOAD_V2_ENCRYPTION_* bit mask.
// In JSON it is a list of canonical encryption names ("aes-gcm-128", ...);
// NDIS names ("AES_GCM_128") are accepted too.
type EncryptionAlgorithms uint32

// IPSEC_OFFLOAD_V2_ENCRYPTION_* values.
const (
	EncrNone      EncryptionAlgorithms = 0x001 // null
	EncrDESCBC    EncryptionAlgorithms = 0x002 // des-cbc
	Encr3DESCBC   EncryptionAlgorithms = 0x004 // 3des-cbc
	EncrAESGCM128 EncryptionAlgorithms = 0x008 // aes-gcm-128
	EncrAESGCM192 EncryptionAlgorithms = 0x010 // aes-gcm-192
	EncrAESGCM256 EncryptionAlgorithms = 0x020 // aes-gcm-256
	EncrAESCBC128 EncryptionAlgorithms = 0x040 // aes-cbc-128
	EncrAESCBC192 EncryptionAlgorithms = 0x080 // aes-cbc-192
	EncrAESCBC256 EncryptionAlgorithms = 0x100 // aes-cbc-256
)

// OffloadFlags holds the IPsecOV2 bits of NDIS_OFFLOAD.Flags (not part of
// NDIS_IPSEC_OFFLOAD_V2 itself). In JSON it is a list of names.
type OffloadFlags uint32

// NDIS_OFFLOAD.Flags bits for IPsecOV2.
const (
	// FlagTCPChecksumCoexistence: IPsec offload and TCP checksum offload work
	// together (IPSEC_OFFLOAD_V2_AND_TCP_CHECKSUM_COEXISTENCE).
	FlagTCPChecksumCoexistence OffloadFlags = 0x2
	// FlagUDPChecksumCoexistence: same for UDP
	// (IPSEC_OFFLOAD_V2_AND_UDP_CHECKSUM_COEXISTENCE).
	FlagUDPChecksumCoexistence OffloadFlags = 0x4
)

// ExtEncryption is a secnic bit mask (not NDIS) of encryption algorithms
// NDIS has no bit for. In JSON it is a list of canonical names.
type ExtEncryption uint32

// Secnic extension encryption bits. These values are secnic's own and never
// appear in an NDIS structure.
const (
	ExtChaCha20Poly1305 ExtEncryption = 0x1
	ExtAESCTR128        ExtEncryption = 0x2
	ExtAESCTR192        ExtEncryption = 0x4
	ExtAESCTR256        ExtEncryption = 0x8
)

// ExtIntegrity is a secnic bit mask (not NDIS) of integrity algorithms NDIS
// has no bit for. In JSON it is a list of canonical names.
type ExtIntegrity uint32

// Secnic extension integrity bits (never in an NDIS structure).
const (
	ExtHMACSHA384192 ExtIntegrity = 0x1
	ExtHMACSHA512256 ExtIntegrity = 0x2
)

// ICVLengths is the set of AES-GCM ICV lengths (RFC 4106: 16 bytes, and
// optionally 8 or 12) the SA layer may accept. NDIS carries the ICV length per
// SA (ALGORITHM_INFO.AdditionalInfo) but has no capability bit for it. In JSON
// it is a list of byte counts, e.g. [8, 12, 16].
type ICVLengths uint8

// ICV length bits.
const (
	ICV8  ICVLengths = 0x1
	ICV12 ICVLengths = 0x2
	ICV16 ICVLengths = 0x4
)

// bitName names one bit of a mask: name is the JSON/canonical name, ndis the
// NDIS constant without its prefix (empty for secnic extensions).
type bitName struct {
	bit  uint32
	name string
	ndis string
}

// bitTable describes one mask type.
type bitTable struct {
	field  string // JSON field name, for errors
	prefix string // NDIS constant prefix, "" for extensions
	zero   string // NDIS name of the value 0, "" if none
	bits   []bitName
}

var (
	encapsulationTable = &bitTable{
		field: "encapsulation", prefix: "NDIS_ENCAPSULATION_", zero: "NOT_SUPPORTED",
		bits: []bitName{
			{0x01, "null", "NULL"},
			{0x02, "ieee_802_3", "IEEE_802_3"},
			{0x04, "ieee_802_3_p_and_q", "IEEE_802_3_P_AND_Q"},
			{0x08, "ieee_802_3_p_and_q_in_oob", "IEEE_802_3_P_AND_Q_IN_OOB"},
			{0x10, "ieee_llc_snap_routed", "IEEE_LLC_SNAP_ROUTED"},
		},
	}
	udpESPTable = &bitTable{
		field: "udp_esp", prefix: "IPSEC_OFFLOAD_V2_", zero: "NONE",
		bits: []bitName{
			{1, "transport", "UDP_ESP_ENCAPSULATION_TRANSPORT"},
			{2, "tunnel", "UDP_ESP_ENCAPSULATION_TUNNEL"},
			{4, "transport_over_udp_tunnel", "TRANSPORT_OVER_UDP_ESP_ENCAPSULATION_TUNNEL"},
			{8, "udp_transport_over_tunnel", "UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL"},
		},
	}
	authTable = &bitTable{
		field: "authentication_algorithms", prefix: "IPSEC_OFFLOAD_V2_AUTHENTICATION_",
		bits: []bitName{
			{0x01, IntegHMACMD596, "MD5"},
			{0x02, IntegHMACSHA196, "SHA_1"},
			{0x04, IntegHMACSHA256128, "SHA_256"},
			{0x08, IntegAESGMAC128, "AES_GCM_128"},
			{0x10, IntegAESGMAC192, "AES_GCM_192"},
			{0x20, IntegAESGMAC256, "AES_GCM_256"},
		},
	}
	encrTable = &bitTable{
		field: "encryption_algorithms", prefix: "IPSEC_OFFLOAD_V2_ENCRYPTION_",
		bits: []bitName{
			{0x001, EncNull, "NONE"},
			{0x002, EncDESCBC, "DES_CBC"},
			{0x004, Enc3DESCBC, "3_DES_CBC"},
			{0x008, EncAESGCM128, "AES_GCM_128"},
			{0x010, EncAESGCM192, "AES_GCM_192"},
			{0x020, EncAESGCM256, "AES_GCM_256"},
			{0x040, EncAESCBC128, "AES_CBC_128"},
			{0x080, EncAESCBC192, "AES_CBC_192"},
			{0x100, EncAESCBC256, "AES_CBC_256"},
		},
	}
	flagsTable = &bitTable{
		field: "offload_flags", prefix: "IPSEC_OFFLOAD_V2_AND_",
		bits: []bitName{
			{0x2, "tcp_checksum_coexistence", "TCP_CHECKSUM_COEXISTENCE"},
			{0x4, "udp_checksum_coexistence", "UDP_CHECKSUM_COEXISTENCE"},
		},
	}
	extEncrTable = &bitTable{
		field: "extensions.encryption",
		bits: []bitName{
			{0x1, EncChaCha20Poly1305, ""},
			{0x2, EncAESCTR128, ""},
			{0x4, EncAESCTR192, ""},
			{0x8, EncAESCTR256, ""},
		},
	}
	extIntegTable = &bitTable{
		field: "extensions.integrity",
		bits: []bitName{
			{0x1, IntegHMACSHA384192, ""},
			{0x2, IntegHMACSHA512256, ""},
		},
	}
	icvTable = &bitTable{
		field: "extensions.gcm_icv_lengths",
		bits: []bitName{
			{0x1, "8", ""},
			{0x2, "12", ""},
			{0x4, "16", ""},
		},
	}
)

// known returns the OR of all documented bits.
func (t *bitTable) known() uint32 {
	var all uint32
	for _, b := range t.bits {
		all |= b.bit
	}
	return all
}

// names returns the canonical names of the bits in m, in table order;
// unknown bits come last as one hexadecimal value.
func (t *bitTable) names(m uint32) []string {
	out := []string{}
	for _, b := range t.bits {
		if m&b.bit != 0 {
			out = append(out, b.name)
		}
	}
	if rest := m &^ t.known(); rest != 0 {
		out = append(out, fmt.Sprintf("0x%08x", rest))
	}
	return out
}

// list returns the names of m joined by ", ", or "none".
func (t *bitTable) list(m uint32) string {
	n := t.names(m)
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

// ndisString formats m the NDIS way: "0x00000002 (IEEE_802_3)".
func (t *bitTable) ndisString(m uint32) string {
	var parts []string
	for _, b := range t.bits {
		if m&b.bit != 0 {
			parts = append(parts, b.ndis)
		}
	}
	if rest := m &^ t.known(); rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%08x", rest))
	}
	if len(parts) == 0 {
		if t.zero == "" {
			return fmt.Sprintf("0x%08x", m)
		}
		parts = []string{t.zero}
	}
	return fmt.Sprintf("0x%08x (%s)", m, strings.Join(parts, "|"))
}

// lookup finds a bit by canonical name, NDIS short name or full NDIS
// constant name, ignoring case.
func (t *bitTable) lookup(name string) (uint32, bool) {
	for _, b := range t.bits {
		if strings.EqualFold(name, b.name) {
			return b.bit, true
		}
		if b.ndis != "" && (strings.EqualFold(name, b.ndis) || strings.EqualFold(name, t.prefix+b.ndis)) {
			return b.bit, true
		}
	}
	return 0, false
}

func (t *bitTable) canonicalNames() string {
	n := make([]string, len(t.bits))
	for i, b := range t.bits {
		n[i] = b.name
	}
	return strings.Join(n, ", ")
}

// parseJSON decodes a mask from a JSON list of names (hexadecimal strings
// such as "0x00000200" are taken as raw bits) or from a JSON number.
func (t *bitTable) parseJSON(data []byte) (uint32, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] != '[' {
		var n uint32
		if err := json.Unmarshal(data, &n); err != nil {
			return 0, invalid(t.field, "is neither a list of names nor a number: "+err.Error(),
				fmt.Sprintf("give a list such as [%q]", t.bits[0].name))
		}
		return n, nil
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		return 0, invalid(t.field, "is not a list of names: "+err.Error(),
			fmt.Sprintf("give a list such as [%q]", t.bits[0].name))
	}
	var m uint32
	for _, name := range names {
		name = strings.TrimSpace(name)
		if bit, ok := t.lookup(name); ok {
			m |= bit
			continue
		}
		if hex, ok := strings.CutPrefix(strings.ToLower(name), "0x"); ok {
			v, err := strconv.ParseUint(hex, 16, 32)
			if err == nil {
				m |= uint32(v)
				continue
			}
		}
		return 0, invalid(t.field, fmt.Sprintf("contains the unknown name %q", name),
			"known names: "+t.canonicalNames())
	}
	return m, nil
}

func isJSONNull(data []byte) bool { return string(bytes.TrimSpace(data)) == "null" }

// Has reports whether all bits of b are set in m.
func (m Encapsulation) Has(b Encapsulation) bool { return m&b == b }

// Names returns the JSON names of the set bits.
func (m Encapsulation) Names() []string { return encapsulationTable.names(uint32(m)) }

// String formats m as NDIS does, e.g. "0x00000002 (IEEE_802_3)".
func (m Encapsulation) String() string { return encapsulationTable.ndisString(uint32(m)) }

// MarshalJSON writes the list of names.
func (m Encapsulation) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *Encapsulation) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := encapsulationTable.parseJSON(data)
	if err == nil {
		*m = Encapsulation(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m UDPESPTypes) Has(b UDPESPTypes) bool { return m&b == b }

// Names returns the JSON names of the set bits.
func (m UDPESPTypes) Names() []string { return udpESPTable.names(uint32(m)) }

// String formats m as NDIS does, e.g. "0x00000001 (UDP_ESP_ENCAPSULATION_TRANSPORT)".
func (m UDPESPTypes) String() string { return udpESPTable.ndisString(uint32(m)) }

// MarshalJSON writes the list of names.
func (m UDPESPTypes) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *UDPESPTypes) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := udpESPTable.parseJSON(data)
	if err == nil {
		*m = UDPESPTypes(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m AuthenticationAlgorithms) Has(b AuthenticationAlgorithms) bool { return m&b == b }

// Names returns the canonical integrity names of the set bits.
func (m AuthenticationAlgorithms) Names() []string { return authTable.names(uint32(m)) }

// String formats m as NDIS does, e.g. "0x00000006 (SHA_1|SHA_256)".
func (m AuthenticationAlgorithms) String() string { return authTable.ndisString(uint32(m)) }

// MarshalJSON writes the list of canonical names.
func (m AuthenticationAlgorithms) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *AuthenticationAlgorithms) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := authTable.parseJSON(data)
	if err == nil {
		*m = AuthenticationAlgorithms(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m EncryptionAlgorithms) Has(b EncryptionAlgorithms) bool { return m&b == b }

// Names returns the canonical encryption names of the set bits.
func (m EncryptionAlgorithms) Names() []string { return encrTable.names(uint32(m)) }

// String formats m as NDIS does, e.g. "0x00000008 (AES_GCM_128)".
func (m EncryptionAlgorithms) String() string { return encrTable.ndisString(uint32(m)) }

// MarshalJSON writes the list of canonical names.
func (m EncryptionAlgorithms) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *EncryptionAlgorithms) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := encrTable.parseJSON(data)
	if err == nil {
		*m = EncryptionAlgorithms(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m OffloadFlags) Has(b OffloadFlags) bool { return m&b == b }

// Names returns the JSON names of the set bits.
func (m OffloadFlags) Names() []string { return flagsTable.names(uint32(m)) }

// String formats m as NDIS does.
func (m OffloadFlags) String() string { return flagsTable.ndisString(uint32(m)) }

// MarshalJSON writes the list of names.
func (m OffloadFlags) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *OffloadFlags) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := flagsTable.parseJSON(data)
	if err == nil {
		*m = OffloadFlags(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m ExtEncryption) Has(b ExtEncryption) bool { return m&b == b }

// Names returns the canonical names of the set bits.
func (m ExtEncryption) Names() []string { return extEncrTable.names(uint32(m)) }

// String lists the canonical names, e.g. "chacha20-poly1305, aes-ctr-128".
func (m ExtEncryption) String() string { return extEncrTable.list(uint32(m)) }

// MarshalJSON writes the list of canonical names.
func (m ExtEncryption) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *ExtEncryption) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := extEncrTable.parseJSON(data)
	if err == nil {
		*m = ExtEncryption(v)
	}
	return err
}

// Has reports whether all bits of b are set in m.
func (m ExtIntegrity) Has(b ExtIntegrity) bool { return m&b == b }

// Names returns the canonical names of the set bits.
func (m ExtIntegrity) Names() []string { return extIntegTable.names(uint32(m)) }

// String lists the canonical names.
func (m ExtIntegrity) String() string { return extIntegTable.list(uint32(m)) }

// MarshalJSON writes the list of canonical names.
func (m ExtIntegrity) MarshalJSON() ([]byte, error) { return json.Marshal(m.Names()) }

// UnmarshalJSON reads a list of names or a number.
func (m *ExtIntegrity) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	v, err := extIntegTable.parseJSON(data)
	if err == nil {
		*m = ExtIntegrity(v)
	}
	return err
}

// ICVBit returns the bit for an ICV length in bytes, or 0 if n is not 8, 12
// or 16.
func ICVBit(n int) ICVLengths {
	switch n {
	case 8:
		return ICV8
	case 12:
		return ICV12
	case 16:
		return ICV16
	}
	return 0
}

// Has reports whether all bits of b are set in m.
func (m ICVLengths) Has(b ICVLengths) bool { return m&b == b }

// Allows reports whether an ICV of n bytes is in the set.
func (m ICVLengths) Allows(n int) bool {
	b := ICVBit(n)
	return b != 0 && m&b != 0
}

// Lengths returns the ICV lengths in bytes, ascending.
func (m ICVLengths) Lengths() []int {
	out := []int{}
	for _, n := range []int{8, 12, 16} {
		if m.Allows(n) {
			out = append(out, n)
		}
	}
	return out
}

// String lists the lengths, e.g. "8, 12, 16", or "none".
func (m ICVLengths) String() string { return icvTable.list(uint32(m)) }

// MarshalJSON writes the list of lengths in bytes.
func (m ICVLengths) MarshalJSON() ([]byte, error) {
	if rest := uint32(m) &^ icvTable.known(); rest != 0 {
		return nil, invalid(icvTable.field, fmt.Sprintf("has unknown bits 0x%02x", rest), "")
	}
	return json.Marshal(m.Lengths())
}

// UnmarshalJSON reads a list of lengths in bytes (8, 12, 16).
func (m *ICVLengths) UnmarshalJSON(data []byte) error {
	if isJSONNull(data) {
		return nil
	}
	var ns []int
	if err := json.Unmarshal(data, &ns); err != nil {
		return invalid(icvTable.field, "is not a list of ICV lengths: "+err.Error(),
			"give a list of lengths in bytes, e.g. [16] or [8, 12, 16]")
	}
	var v ICVLengths
	for _, n := range ns {
		b := ICVBit(n)
		if b == 0 {
			return invalid(icvTable.field, fmt.Sprintf("contains %d", n),
				"AES-GCM ICV lengths are 8, 12 or 16 bytes")
		}
		v |= b
	}
	*m = v
	return nil
}
