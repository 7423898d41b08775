package sadb

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// This file holds the one schema for SA bundles and policies that the
// control API, the CLI and the configuration file share. JSON field names
// are snake_case; YAML (read with sigs.k8s.io/yaml) maps onto the JSON tags.
// docs/config-schema.md documents it with examples.

// Error kinds. Every error the table returns wraps one of these (or a
// capabilities kind: ErrDisabled, ErrNotSupported), so callers such as the
// control API can map them with errors.Is.
var (
	// ErrInvalid: the request is malformed or inconsistent. It is the same
	// value as capabilities.ErrInvalid.
	ErrInvalid = capabilities.ErrInvalid
	// ErrCapacity: the SA offload capacity is used up. It is the same value
	// as capabilities.ErrCapacity.
	ErrCapacity = capabilities.ErrCapacity
	// ErrNotFound: no bundle or policy has that handle, name or ID.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the SPI, name or policy ID is already in use.
	ErrConflict = errors.New("conflict")
)

// Error is a refused request: which field (a JSON path such as
// "esp.enc_key" or "sas[2].dst"), what is wrong and how to fix it.
type Error struct {
	// Kind is ErrInvalid, ErrNotFound, ErrConflict or ErrCapacity.
	Kind error
	// Field is the JSON path of the offending field; may be empty.
	Field string
	// Msg says what is wrong and what to do.
	Msg string
	// Err is the underlying error (from capabilities or suite), if any.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("sa: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the kind and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

func invalidf(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// wrapField returns err with field prefixed to its path.
func wrapField(prefix string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Field == "" {
			c.Field = prefix
		} else {
			c.Field = prefix + "." + c.Field
		}
		return &c
	}
	return &Error{Kind: ErrInvalid, Field: prefix, Msg: err.Error(), Err: err}
}

// SPI is a security parameter index. In JSON it is written as a hex string
// ("0x00001000") and read from a number or from a decimal or 0x-prefixed
// hex string.
type SPI uint32

// String formats the SPI as 0x%08x.
func (s SPI) String() string { return fmt.Sprintf("0x%08x", uint32(s)) }

// MarshalJSON writes the SPI as a hex string.
func (s SPI) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// UnmarshalJSON reads a number or a string.
func (s *SPI) UnmarshalJSON(b []byte) error {
	txt := string(bytes.TrimSpace(b))
	if strings.HasPrefix(txt, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		txt = str
	}
	v, err := ParseSPI(txt)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSPI reads an SPI written in decimal or as 0x-prefixed hex.
func ParseSPI(s string) (SPI, error) {
	t := strings.TrimSpace(s)
	v, err := strconv.ParseUint(t, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("spi %s is not a 32-bit number: write it in decimal or as 0x-prefixed hex, e.g. 0x1000", quoteInput(s))
	}
	return SPI(v), nil
}

// Key is secret key material. In JSON it is a hex string (an optional 0x
// prefix, colons and spaces are ignored). A Key never prints itself: its
// String, Format and LogValue show only its length, so keys do not leak into
// logs; JSON output is redacted by the table unless keys are explicitly asked
// for (see BundleSpec.Redacted).
type Key struct {
	b   []byte
	bad string // decoding problem, reported with the field path by Validate
}

// KeyOf returns a Key holding a copy of b.
func KeyOf(b []byte) Key { return Key{b: append([]byte(nil), b...)} }

// ParseKey decodes a hex key.
func ParseKey(s string) (Key, error) {
	b, err := decodeHex(s)
	if err != nil {
		return Key{}, err
	}
	return Key{b: b}, nil
}

func decodeHex(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	t = strings.NewReplacer(":", "", " ", "", "_", "").Replace(t)
	if len(t)%2 != 0 {
		return nil, fmt.Errorf("has an odd number of hex digits (%d); give whole bytes, two hex digits each", len(t))
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		var ie hex.InvalidByteError
		if errors.As(err, &ie) {
			return nil, fmt.Errorf("is not hexadecimal (found %q): give the key as hex digits, optionally with a 0x prefix", rune(ie))
		}
		return nil, fmt.Errorf("is not hexadecimal: give the key as hex digits, optionally with a 0x prefix")
	}
	return b, nil
}

// Bytes returns the key material (not a copy).
func (k Key) Bytes() []byte { return k.b }

// Len returns the key length in bytes.
func (k Key) Len() int { return len(k.b) }

// IsZero reports an absent key (for omitzero).
func (k Key) IsZero() bool { return len(k.b) == 0 && k.bad == "" }

// Equal compares two keys.
func (k Key) Equal(o Key) bool { return bytes.Equal(k.b, o.b) && k.bad == o.bad }

// Wipe zeroes the key material in place.
func (k *Key) Wipe() {
	clear(k.b)
	k.b = nil
}

// Clone returns a deep copy.
func (k Key) Clone() Key { return Key{b: append([]byte(nil), k.b...), bad: k.bad} }

// Hex returns the key as lowercase hex without prefix. Only for explicit
// key export.
func (k Key) Hex() string { return hex.EncodeToString(k.b) }

// String shows only the length.
func (k Key) String() string { return fmt.Sprintf("[%d-byte key]", len(k.b)) }

// Format shows only the length, whatever the verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue shows only the length.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON writes the key as hex. The table only hands out specs with
// keys when asked to (BundleSpec.Redacted removes them).
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal("0x" + k.Hex()) }

// UnmarshalJSON reads a hex string. Malformed input is remembered and
// reported by Validate, with the field's path.
func (k *Key) UnmarshalJSON(b []byte) error {
	*k = Key{}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		k.bad = "must be a quoted hex string (in YAML quote it, e.g. \"0x0011...\", or the number is read as an integer)"
		return nil
	}
	v, err := decodeHex(s)
	if err != nil {
		k.bad = err.Error()
		return nil
	}
	k.b = v
	return nil
}

// SASpec is one SA of a bundle: the ESP or the AH part.
type SASpec struct {
	// SPI is the security parameter index (256 or more; 1-255 are reserved).
	SPI SPI `json:"spi"`
	// Enc is the ESP encryption algorithm (canonical name, e.g.
	// "aes-gcm-128", "aes-cbc-256", "null"); empty for AH.
	Enc string `json:"enc,omitempty"`
	// Auth is the integrity algorithm (e.g. "hmac-sha256-128"); "none" or
	// empty with a combined-mode Enc (AES-GCM, ChaCha20-Poly1305, AES-GMAC).
	Auth string `json:"auth,omitempty"`
	// ICVLen is the AES-GCM ICV length in bytes (8, 12 or 16; 0 = 16).
	ICVLen int `json:"icv_len,omitempty"`
	// EncKey is the encryption KEYMAT, salt or nonce last (RFC 4106, 3686,
	// 4543, 7634): e.g. 20 bytes for aes-gcm-128.
	EncKey Key `json:"enc_key,omitzero"`
	// AuthKey is the integrity key (AH GMAC: AES key plus 4-byte salt).
	AuthKey Key `json:"auth_key,omitzero"`
	// KeysRedacted is set in output when the keys were left out; a spec
	// with it set cannot be added (export with keys instead).
	KeysRedacted bool `json:"keys_redacted,omitempty"`
}

// UDPEncapSpec is RFC 3948 UDP encapsulation of ESP, with the NDIS UDP-ESP
// encapsulation type.
type UDPEncapSpec struct {
	// Type is the NDIS UDP-ESP type: "none", "transport", "tunnel",
	// "transport-over-udp-tunnel" (NDIS
	// TRANSPORT_OVER_UDP_ESP_ENCAPSULATION_TUNNEL, value 4) or
	// "udp-transport-over-tunnel" (NDIS
	// UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL, value 8). Empty means
	// the bundle's mode ("transport" or "tunnel").
	Type string `json:"type,omitempty"`
	// SrcPort and DstPort are the UDP ports (0 = 4500).
	SrcPort uint16 `json:"src_port,omitempty"`
	DstPort uint16 `json:"dst_port,omitempty"`
}

// LimitSpec is one set of lifetime limits; 0 means unlimited.
type LimitSpec struct {
	Bytes   uint64 `json:"bytes,omitempty"`
	Packets uint64 `json:"packets,omitempty"`
	Seconds uint64 `json:"seconds,omitempty"`
}

// LifetimeSpec holds the soft and hard lifetimes of each SA of a bundle.
// Reaching a soft limit raises an sa_delete_request event (NDIS SaDeleteReq,
// XFRM soft expire); reaching a hard limit stops the SA, which stays in the
// table until deleted.
type LifetimeSpec struct {
	Soft LimitSpec `json:"soft,omitzero"`
	Hard LimitSpec `json:"hard,omitzero"`
}

// Default values of the schema.
const (
	// DefaultReplayWindow is the inbound anti-replay window when none is
	// given (RFC 4303 3.4.3 recommends 64).
	DefaultReplayWindow = 64
	// DefaultEncapPort is the RFC 3948 NAT-T port (the only one NDIS supports).
	DefaultEncapPort = 4500
	// MaxNameLen bounds bundle and policy names.
	MaxNameLen = 64
)

// BundleSpec is an SA bundle as the API, the CLI and the configuration file
// describe it: one direction, ESP, AH or both (ESP applied first on output,
// AH outermost), as in NDIS IPSEC_OFFLOAD_V2_ADD_SA.
type BundleSpec struct {
	// Name optionally identifies the bundle (letters, digits, '.', '_',
	// '-'; at most 64). Policies and the CLI may refer to it by name; the
	// configuration file requires it.
	Name string `json:"name,omitempty"`
	// Dir is "in" or "out".
	Dir string `json:"dir"`
	// Mode is "transport" (default) or "tunnel".
	Mode string `json:"mode,omitempty"`
	// Family is "ipv4" or "ipv6"; derived from Src and Dst when empty.
	Family string `json:"family,omitempty"`
	// Src and Dst are the SA's endpoints (the tunnel endpoints in tunnel
	// mode). An empty or unspecified address ("", "0.0.0.0", "::") is a
	// wildcard, as NDIS says; tunnel mode needs both.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// ESN enables 64-bit extended sequence numbers.
	ESN bool `json:"esn,omitempty"`
	// SeqHigh is the initial high half of the sequence number (NDIS
	// SequenceNumberHighOrder); only with ESN.
	SeqHigh uint32 `json:"seq_high,omitempty"`
	// ReplayWindow is the inbound anti-replay window in packets: nil means
	// 64, 0 disables anti-replay, otherwise 32 to 8192. Outbound bundles
	// take none.
	ReplayWindow *int `json:"replay_window,omitempty"`
	// UDPEncap enables UDP encapsulation (ESP only).
	UDPEncap *UDPEncapSpec `json:"udp_encap,omitempty"`
	// TTL is the outer TTL / hop limit in tunnel mode (0 = 64).
	TTL uint8 `json:"ttl,omitempty"`
	// DF is the outer IPv4 DF bit in tunnel mode: "copy" (default), "set"
	// or "clear".
	DF string `json:"df,omitempty"`
	// TFCPad pads tunnel-mode inner packets to this many bytes (RFC 4303 2.7).
	TFCPad int `json:"tfc_pad,omitempty"`
	// Lifetime is applied to each SA of the bundle.
	Lifetime LifetimeSpec `json:"lifetime,omitzero"`
	// AllowLegacy permits DES, 3DES and HMAC-MD5 (also needed in the
	// current offload configuration).
	AllowLegacy bool `json:"allow_legacy,omitempty"`
	// Offload is "crypto" (default; the NDIS IPsecOV2 split) or "packet"
	// (secnic's packet offload, like XFRM_DEV_OFFLOAD_PACKET).
	Offload string `json:"offload,omitempty"`
	// ESP and AH are the SAs; at least one. With both, the bundle is
	// AH+ESP (NDIS AhEspCombined).
	ESP *SASpec `json:"esp,omitempty"`
	AH  *SASpec `json:"ah,omitempty"`
}

// Clone returns a deep copy, keys included.
func (b BundleSpec) Clone() BundleSpec {
	c := b
	if b.ReplayWindow != nil {
		w := *b.ReplayWindow
		c.ReplayWindow = &w
	}
	if b.UDPEncap != nil {
		u := *b.UDPEncap
		c.UDPEncap = &u
	}
	for _, p := range []**SASpec{&c.ESP, &c.AH} {
		if *p != nil {
			s := **p
			s.EncKey, s.AuthKey = s.EncKey.Clone(), s.AuthKey.Clone()
			*p = &s
		}
	}
	return c
}

// Redacted returns a copy without key material; the SAs say keys_redacted.
func (b BundleSpec) Redacted() BundleSpec {
	c := b
	for _, p := range []**SASpec{&c.ESP, &c.AH} {
		if *p != nil {
			s := **p
			if !s.EncKey.IsZero() || !s.AuthKey.IsZero() {
				s.KeysRedacted = true
			}
			s.EncKey, s.AuthKey = Key{}, Key{}
			*p = &s
		}
	}
	return c
}

// Wipe zeroes the key material of the spec in place.
func (b *BundleSpec) Wipe() {
	for _, s := range []*SASpec{b.ESP, b.AH} {
		if s != nil {
			s.EncKey.Wipe()
			s.AuthKey.Wipe()
		}
	}
}

// String describes the bundle without key material.
func (b BundleSpec) String() string {
	var parts []string
	if b.Name != "" {
		parts = append(parts, b.Name+":")
	}
	parts = append(parts, b.Dir, orDefault(b.Mode, "transport"), orDefault(b.Src, "*")+"->"+orDefault(b.Dst, "*"))
	if b.ESP != nil {
		parts = append(parts, fmt.Sprintf("esp spi=%v enc=%s auth=%s", b.ESP.SPI, b.ESP.Enc, orDefault(b.ESP.Auth, "none")))
	}
	if b.AH != nil {
		parts = append(parts, fmt.Sprintf("ah spi=%v auth=%s", b.AH.SPI, b.AH.Auth))
	}
	if b.ESN {
		parts = append(parts, "esn")
	}
	if b.UDPEncap != nil {
		parts = append(parts, "udp-encap="+orDefault(b.UDPEncap.Type, "auto"))
	}
	return strings.Join(parts, " ")
}

// LogValue describes the bundle without key material.
func (b BundleSpec) LogValue() slog.Value { return slog.StringValue(b.String()) }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// UDP-ESP type names of the schema.
const (
	EncapNone                   = "none"
	EncapTransport              = "transport"
	EncapTunnel                 = "tunnel"
	EncapTransportOverUDPTunnel = "transport-over-udp-tunnel"
	EncapUDPTransportOverTunnel = "udp-transport-over-tunnel"
)

// UDPESPType maps a schema name onto the NDIS UDP-ESP type.
func UDPESPType(name string) (capabilities.UDPESPTypes, bool) {
	switch name {
	case EncapNone:
		return capabilities.UDPESPNone, true
	case EncapTransport:
		return capabilities.UDPESPTransport, true
	case EncapTunnel:
		return capabilities.UDPESPTunnel, true
	case EncapTransportOverUDPTunnel:
		return capabilities.UDPESPTransportOverUDPTunnel, true
	case EncapUDPTransportOverTunnel:
		return capabilities.UDPESPUDPTransportOverTunnel, true
	}
	return 0, false
}

// bundlePlan is a validated BundleSpec turned into what the table needs.
type bundlePlan struct {
	spec    BundleSpec // normalized, keys included
	dir     sa.Direction
	mode    sa.Mode
	ipv6    bool
	src     netip.Addr   // zero = wildcard
	dst     netip.Addr   // zero = wildcard
	encap   *sa.UDPEncap // applied to the ESP SA, or nil
	udpType capabilities.UDPESPTypes
	df      sa.DFMode
	window  int
	packet  bool
	soft    sa.Limits
	hard    sa.Limits
	req     capabilities.BundleRequest
}

var nameOK = func(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	// A name that parses as a number would be ambiguous with a handle.
	if _, err := strconv.ParseUint(s, 0, 64); err == nil {
		return false
	}
	return true
}

func checkName(field, name string) error {
	if name == "" {
		return nil
	}
	if !nameOK(name) {
		return invalidf(field, "%s is not a valid name: use 1 to %d letters, digits, '.', '_' or '-', not a number", quoteInput(name), MaxNameLen)
	}
	return nil
}

// parseEndpoint reads an SA endpoint; "" and the unspecified addresses are
// wildcards. fam is 4, 6, or 0 when unknown ("").
func parseEndpoint(field, s string) (a netip.Addr, fam int, err error) {
	if s == "" {
		return netip.Addr{}, 0, nil
	}
	a, perr := netip.ParseAddr(strings.TrimSpace(s))
	if perr != nil {
		return netip.Addr{}, 0, invalidf(field, "%s is not an IP address: give an IPv4 or IPv6 address without prefix length, or leave it empty for a wildcard", quoteInput(s))
	}
	if a.Zone() != "" {
		return netip.Addr{}, 0, invalidf(field, "%s has a zone; SA endpoints take no zone", quoteInput(s))
	}
	if a.Is4In6() {
		return netip.Addr{}, 0, invalidf(field, "%s is an IPv4-mapped IPv6 address; write the IPv4 address %s", quoteInput(s), a.Unmap())
	}
	if a.IsMulticast() {
		// Multicast destinations are legal in RFC 4301 but not offloaded.
		return netip.Addr{}, 0, invalidf(field, "%s is a multicast address; multicast SAs are not offloaded", quoteInput(s))
	}
	fam = 6
	if a.Is4() {
		fam = 4
	}
	if a.IsUnspecified() {
		return netip.Addr{}, fam, nil
	}
	return a, fam, nil
}

// plan validates the spec and computes everything the table needs, apart
// from checks that depend on the table (names, SPIs, capacity).
func (b BundleSpec) plan() (*bundlePlan, error) {
	p := &bundlePlan{spec: b.Clone()}
	s := &p.spec
	if err := checkName("name", s.Name); err != nil {
		return nil, err
	}
	switch strings.ToLower(s.Dir) {
	case "in", "inbound":
		p.dir, s.Dir = sa.In, "in"
	case "out", "outbound":
		p.dir, s.Dir = sa.Out, "out"
	case "":
		return nil, invalidf("dir", "is missing: give \"in\" or \"out\"")
	default:
		return nil, invalidf("dir", "%s is not a direction: give \"in\" or \"out\"", quoteInput(s.Dir))
	}
	switch strings.ToLower(s.Mode) {
	case "", "transport":
		p.mode, s.Mode = sa.Transport, "transport"
	case "tunnel":
		p.mode, s.Mode = sa.Tunnel, "tunnel"
	default:
		return nil, invalidf("mode", "%s is not a mode: give \"transport\" or \"tunnel\" (transport over tunnel is two bundles linked by one policy)", quoteInput(s.Mode))
	}

	// Endpoints and family.
	src, sf, err := parseEndpoint("src", s.Src)
	if err != nil {
		return nil, err
	}
	dst, df, err := parseEndpoint("dst", s.Dst)
	if err != nil {
		return nil, err
	}
	if sf != 0 && df != 0 && sf != df {
		return nil, invalidf("dst", "%s is IPv%d but src %s is IPv%d: both endpoints must be of one family", s.Dst, df, s.Src, sf)
	}
	fam := max(sf, df)
	switch strings.ToLower(s.Family) {
	case "":
	case "ipv4", "inet", "4":
		if fam == 6 {
			return nil, invalidf("family", "is ipv4 but the endpoints are IPv6")
		}
		fam = 4
	case "ipv6", "inet6", "6":
		if fam == 4 {
			return nil, invalidf("family", "is ipv6 but the endpoints are IPv4")
		}
		fam = 6
	default:
		return nil, invalidf("family", "%s is not a family: give \"ipv4\" or \"ipv6\", or leave it empty to derive it from the addresses", quoteInput(s.Family))
	}
	if fam == 0 {
		fam = 4 // all-wildcard without a family: IPv4, as an NDIS ADD_SA without the IPv6 flag
	}
	p.ipv6 = fam == 6
	s.Family = "ipv4"
	if p.ipv6 {
		s.Family = "ipv6"
	}
	p.src, p.dst = src, dst
	s.Src, s.Dst = canonAddr(s.Src, src), canonAddr(s.Dst, dst)
	if p.mode == sa.Tunnel && (!src.IsValid() || !dst.IsValid()) {
		return nil, invalidf("src", "tunnel mode needs both tunnel endpoints: give src and dst addresses (wildcards are only for transport mode)")
	}

	// Sequence numbers and anti-replay.
	if s.SeqHigh != 0 && !s.ESN {
		return nil, invalidf("seq_high", "needs esn: true (initial high-order sequence bits exist only with extended sequence numbers)")
	}
	if p.dir == sa.In {
		w := DefaultReplayWindow
		if s.ReplayWindow != nil {
			w = *s.ReplayWindow
		}
		if w != 0 && (w < sa.MinReplayWindow || w > sa.MaxReplayWindow) {
			return nil, invalidf("replay_window", "%d is out of range: give 0 to disable anti-replay or %d to %d packets", w, sa.MinReplayWindow, sa.MaxReplayWindow)
		}
		p.window = w
		s.ReplayWindow = &w
	} else if s.ReplayWindow != nil && *s.ReplayWindow != 0 {
		return nil, invalidf("replay_window", "applies to inbound bundles only; remove it from this outbound bundle")
	} else {
		s.ReplayWindow = nil
	}

	// Tunnel-only fields.
	switch strings.ToLower(s.DF) {
	case "", "copy":
		p.df, s.DF = sa.DFCopy, ""
	case "set":
		p.df, s.DF = sa.DFSet, "set"
	case "clear":
		p.df, s.DF = sa.DFClear, "clear"
	default:
		return nil, invalidf("df", "%s is not a DF mode: give \"copy\", \"set\" or \"clear\"", quoteInput(s.DF))
	}
	if p.mode != sa.Tunnel {
		if s.TTL != 0 {
			return nil, invalidf("ttl", "applies to tunnel mode only (transport mode keeps the packet's own TTL)")
		}
		if s.DF != "" {
			return nil, invalidf("df", "applies to tunnel mode only")
		}
	}
	if s.TFCPad < 0 || s.TFCPad > 65535 {
		return nil, invalidf("tfc_pad", "%d is out of range: give 0 to 65535 bytes", s.TFCPad)
	}

	// Offload type.
	switch strings.ToLower(s.Offload) {
	case "", "crypto":
		s.Offload = ""
	case "packet":
		p.packet, s.Offload = true, "packet"
	default:
		return nil, invalidf("offload", "%s is not an offload type: give \"crypto\" or \"packet\"", quoteInput(s.Offload))
	}

	// Lifetimes.
	if err := checkLifetime(s.Lifetime); err != nil {
		return nil, err
	}
	p.soft = limitsOf(s.Lifetime.Soft)
	p.hard = limitsOf(s.Lifetime.Hard)

	// SAs.
	if s.ESP == nil && s.AH == nil {
		return nil, invalidf("esp", "a bundle needs an esp SA, an ah SA or both")
	}
	if s.ESP != nil {
		if err := normalizeESP(s.ESP); err != nil {
			return nil, wrapField("esp", err)
		}
	}
	if s.AH != nil {
		if err := normalizeAH(s.AH); err != nil {
			return nil, wrapField("ah", err)
		}
	}

	// UDP encapsulation.
	if u := s.UDPEncap; u != nil {
		if s.ESP == nil {
			return nil, invalidf("udp_encap", "needs an esp SA: AH cannot be UDP-encapsulated (RFC 3948)")
		}
		if s.AH != nil {
			return nil, invalidf("udp_encap", "cannot be used in an AH+ESP bundle: AH does not traverse NAT (RFC 3948); remove ah or udp_encap")
		}
		typ := strings.ToLower(u.Type)
		if typ == "" {
			typ = s.Mode
		}
		t, ok := UDPESPType(typ)
		if !ok {
			return nil, invalidf("udp_encap.type", "%s is unknown: give none, transport, tunnel, transport-over-udp-tunnel or udp-transport-over-tunnel", quoteInput(u.Type))
		}
		u.Type = typ
		if u.SrcPort == 0 {
			u.SrcPort = DefaultEncapPort
		}
		if u.DstPort == 0 {
			u.DstPort = DefaultEncapPort
		}
		apply := false
		switch t {
		case capabilities.UDPESPNone:
			s.UDPEncap = nil
		case capabilities.UDPESPTransport:
			if p.mode != sa.Transport {
				return nil, invalidf("udp_encap.type", "transport needs mode transport; for a tunnel-mode bundle use type tunnel")
			}
			apply = true
		case capabilities.UDPESPTunnel:
			if p.mode != sa.Tunnel {
				return nil, invalidf("udp_encap.type", "tunnel needs mode tunnel; for a transport-mode bundle use type transport")
			}
			apply = true
		case capabilities.UDPESPTransportOverUDPTunnel:
			// The tunnel part is UDP-encapsulated, the transport part not.
			apply = p.mode == sa.Tunnel
		case capabilities.UDPESPUDPTransportOverTunnel:
			// The transport part is UDP-encapsulated, the tunnel part not.
			apply = p.mode == sa.Transport
		}
		p.udpType = t
		if apply {
			p.encap = &sa.UDPEncap{SrcPort: u.SrcPort, DstPort: u.DstPort}
		}
	}

	// The capabilities request.
	req := capabilities.BundleRequest{
		Mode:          capabilities.ModeTransport,
		IPv6:          p.ipv6,
		ESN:           s.ESN,
		UDPESP:        p.udpType,
		PacketOffload: p.packet,
	}
	if p.mode == sa.Tunnel {
		req.Mode = capabilities.ModeTunnel
	}
	if p.udpType == capabilities.UDPESPTransportOverUDPTunnel || p.udpType == capabilities.UDPESPUDPTransportOverTunnel {
		req.Mode = capabilities.ModeTransportOverTunnel
	}
	if p.dir == sa.In {
		req.ReplayWindow = uint32(p.window)
	}
	switch {
	case s.ESP != nil && s.AH != nil:
		req.Protocols = capabilities.ProtocolAHESP
		req.Encryption, req.Integrity, req.ICVLength = s.ESP.Enc, s.ESP.Auth, s.ESP.ICVLen
		req.AHIntegrity = s.AH.Auth
	case s.ESP != nil:
		req.Protocols = capabilities.ProtocolESP
		req.Encryption, req.Integrity, req.ICVLength = s.ESP.Enc, s.ESP.Auth, s.ESP.ICVLen
	default:
		req.Protocols = capabilities.ProtocolAH
		req.Integrity = s.AH.Auth
	}
	p.req = req
	return p, nil
}

func canonAddr(orig string, a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return strings.TrimSpace(orig) // "", "0.0.0.0" or "::" (kept: it names the family)
}

func secondsDuration(s uint64) time.Duration { return time.Duration(s) * time.Second }

func limitsOf(l LimitSpec) sa.Limits {
	return sa.Limits{Bytes: l.Bytes, Packets: l.Packets, Time: secondsDuration(l.Seconds)}
}

func checkLifetime(l LifetimeSpec) error {
	const maxSeconds = 1 << 33 // ~272 years: keeps time.Duration from overflowing
	for _, c := range []struct {
		name       string
		soft, hard uint64
	}{
		{"bytes", l.Soft.Bytes, l.Hard.Bytes},
		{"packets", l.Soft.Packets, l.Hard.Packets},
		{"seconds", l.Soft.Seconds, l.Hard.Seconds},
	} {
		if c.name == "seconds" && (c.soft > maxSeconds || c.hard > maxSeconds) {
			return invalidf("lifetime", "seconds must be at most %d", uint64(maxSeconds))
		}
		if c.soft != 0 && c.hard != 0 && c.soft >= c.hard {
			return invalidf("lifetime.soft."+c.name, "%d must be below lifetime.hard.%s %d (the soft limit warns before the hard limit stops the SA)", c.soft, c.name, c.hard)
		}
	}
	return nil
}

func checkSPI(s SPI) error {
	if s == 0 {
		return invalidf("spi", "is missing or 0; SPI 0 is never sent (RFC 4303 2.1): give an SPI of 256 (0x100) or more")
	}
	if s < 256 {
		return invalidf("spi", "%v is reserved by IANA (1-255, RFC 4303 2.1): give an SPI of 256 (0x100) or more", s)
	}
	return nil
}

func checkKeys(s *SASpec) error {
	if s.KeysRedacted {
		return invalidf("keys_redacted", "the keys of this SA were redacted on export; export it with keys (CLI --keys, API ?keys=true) or give enc_key/auth_key")
	}
	if s.EncKey.bad != "" {
		return invalidf("enc_key", "%s", s.EncKey.bad)
	}
	if s.AuthKey.bad != "" {
		return invalidf("auth_key", "%s", s.AuthKey.bad)
	}
	return nil
}

func normalizeESP(s *SASpec) error {
	if err := checkSPI(s.SPI); err != nil {
		return err
	}
	if err := checkKeys(s); err != nil {
		return err
	}
	s.Enc, s.Auth = strings.ToLower(strings.TrimSpace(s.Enc)), strings.ToLower(strings.TrimSpace(s.Auth))
	if s.Enc == "" {
		return invalidf("enc", "is missing: give an encryption algorithm (e.g. aes-gcm-128, or null with an auth algorithm for integrity only)")
	}
	e, err := suite.LookupEnc(suite.Enc(s.Enc))
	if err != nil {
		return invalidf("enc", "%s is unknown: known algorithms are %s", quoteInput(s.Enc), encList())
	}
	if s.Auth != "" && s.Auth != string(suite.AuthNone) {
		if _, err := suite.LookupAuth(suite.Auth(s.Auth)); err != nil {
			return invalidf("auth", "%s is unknown: known algorithms are %s", quoteInput(s.Auth), authList())
		}
	}
	// NDIS expresses ESP-GMAC as ENCRYPTION_NONE + AUTHENTICATION_AES_GCM_N;
	// secnic's canonical form is encryption aes-gmac-N with auth none.
	if s.Enc == string(suite.EncNull) && strings.HasPrefix(s.Auth, "aes-gmac-") {
		s.Enc, s.Auth = s.Auth, string(suite.AuthNone)
		if s.EncKey.IsZero() {
			s.EncKey, s.AuthKey = s.AuthKey, Key{}
		}
	}
	e, _ = suite.LookupEnc(suite.Enc(s.Enc))
	if s.Auth == "" {
		if !e.Combined {
			return invalidf("auth", "is missing: %s needs an integrity algorithm (ESP without integrity is refused by NDIS and RFC 4303): e.g. hmac-sha256-128", s.Enc)
		}
		s.Auth = string(suite.AuthNone)
	}
	if s.ICVLen < 0 {
		return invalidf("icv_len", "%d is negative: give 8, 12 or 16 for AES-GCM, or leave it out", s.ICVLen)
	}
	if s.ICVLen == 16 && e.Combined {
		s.ICVLen = 0 // the default: specs that differ only by it are equal
	}
	return nil
}

func normalizeAH(s *SASpec) error {
	if err := checkSPI(s.SPI); err != nil {
		return err
	}
	if err := checkKeys(s); err != nil {
		return err
	}
	s.Enc, s.Auth = strings.ToLower(strings.TrimSpace(s.Enc)), strings.ToLower(strings.TrimSpace(s.Auth))
	if s.Enc != "" {
		return invalidf("enc", "AH does not encrypt: remove enc (use an esp SA for encryption)")
	}
	if !s.EncKey.IsZero() {
		return invalidf("enc_key", "AH takes no encryption key: give the integrity key as auth_key")
	}
	if s.Auth == "" || s.Auth == string(suite.AuthNone) {
		return invalidf("auth", "is missing: AH needs an integrity algorithm, e.g. hmac-sha256-128")
	}
	if _, err := suite.LookupAuth(suite.Auth(s.Auth)); err != nil {
		return invalidf("auth", "%s is unknown: known algorithms are %s", quoteInput(s.Auth), authList())
	}
	if s.ICVLen < 0 {
		return invalidf("icv_len", "%d is negative; leave it out for AH", s.ICVLen)
	}
	return nil
}

func encList() string {
	var names []string
	for _, e := range suite.Encs() {
		names = append(names, string(e.Name))
	}
	return strings.Join(names, ", ")
}

func authList() string {
	var names []string
	for _, a := range suite.Auths() {
		if a.Name != suite.AuthNone {
			names = append(names, string(a.Name))
		}
	}
	return strings.Join(names, ", ")
}

// Validate checks the spec on its own (not against the table or the
// capabilities): it returns nil or an *Error naming the field to fix.
func (b BundleSpec) Validate() error {
	_, err := b.plan()
	return err
}

// Normalized returns the spec with defaults filled in and names in
// canonical form, as the table stores it.
func (b BundleSpec) Normalized() (BundleSpec, error) {
	p, err := b.plan()
	if err != nil {
		return BundleSpec{}, err
	}
	return p.spec, nil
}

// UpdateSpec is an NDIS UPDATE_SA: new high-order 32 bits of the extended
// sequence number for the bundle's ESN SAs.
type UpdateSpec struct {
	// SeqHigh is the new SequenceNumberHighOrder.
	SeqHigh uint32 `json:"seq_high"`
	// Proto ("esp" or "ah") and SPI optionally select one SA of the bundle
	// (NDIS passes Operation and Spi); without them every ESN SA of the
	// bundle is updated.
	Proto string `json:"proto,omitempty"`
	SPI   SPI    `json:"spi,omitempty"`
}
