package saspec

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// BundlePlan is a validated BundleSpec turned into what the table needs.
type BundlePlan struct {
	Spec    BundleSpec // normalized, keys included
	Dir     sa.Direction
	Mode    sa.Mode
	IPv6    bool
	Src     netip.Addr   // zero = wildcard
	Dst     netip.Addr   // zero = wildcard
	Encap   *sa.UDPEncap // applied to the ESP SA, or nil
	UDPType capabilities.UDPESPTypes
	DF      sa.DFMode
	Window  int
	Packet  bool
	Soft    sa.Limits
	Hard    sa.Limits
	Req     capabilities.BundleRequest
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
		return Invalidf(field, "%s is not a valid name: use 1 to %d letters, digits, '.', '_' or '-', not a number", quoteInput(name), MaxNameLen)
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
		return netip.Addr{}, 0, Invalidf(field, "%s is not an IP address: give an IPv4 or IPv6 address without prefix length, or leave it empty for a wildcard", quoteInput(s))
	}
	if a.Zone() != "" {
		return netip.Addr{}, 0, Invalidf(field, "%s has a zone; SA endpoints take no zone", quoteInput(s))
	}
	if a.Is4In6() {
		return netip.Addr{}, 0, Invalidf(field, "%s is an IPv4-mapped IPv6 address; write the IPv4 address %s", quoteInput(s), a.Unmap())
	}
	if a.IsMulticast() {
		// Multicast destinations are legal in RFC 4301 but not offloaded.
		return netip.Addr{}, 0, Invalidf(field, "%s is a multicast address; multicast SAs are not offloaded", quoteInput(s))
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

// Plan validates the spec and computes everything the table needs, apart
// from checks that depend on the table (names, SPIs, capacity).
func (b BundleSpec) Plan() (*BundlePlan, error) {
	p := &BundlePlan{Spec: b.Clone()}
	s := &p.Spec
	if err := checkName("name", s.Name); err != nil {
		return nil, err
	}
	switch strings.ToLower(s.Dir) {
	case "in", "inbound":
		p.Dir, s.Dir = sa.In, "in"
	case "out", "outbound":
		p.Dir, s.Dir = sa.Out, "out"
	case "":
		return nil, Invalidf("dir", "is missing: give \"in\" or \"out\"")
	default:
		return nil, Invalidf("dir", "%s is not a direction: give \"in\" or \"out\"", quoteInput(s.Dir))
	}
	switch strings.ToLower(s.Mode) {
	case "", "transport":
		p.Mode, s.Mode = sa.Transport, "transport"
	case "tunnel":
		p.Mode, s.Mode = sa.Tunnel, "tunnel"
	default:
		return nil, Invalidf("mode", "%s is not a mode: give \"transport\" or \"tunnel\" (transport over tunnel is two bundles linked by one policy)", quoteInput(s.Mode))
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
		return nil, Invalidf("dst", "%s is IPv%d but src %s is IPv%d: both endpoints must be of one family", s.Dst, df, s.Src, sf)
	}
	fam := max(sf, df)
	switch strings.ToLower(s.Family) {
	case "":
	case "ipv4", "inet", "4":
		if fam == 6 {
			return nil, Invalidf("family", "is ipv4 but the endpoints are IPv6")
		}
		fam = 4
	case "ipv6", "inet6", "6":
		if fam == 4 {
			return nil, Invalidf("family", "is ipv6 but the endpoints are IPv4")
		}
		fam = 6
	default:
		return nil, Invalidf("family", "%s is not a family: give \"ipv4\" or \"ipv6\", or leave it empty to derive it from the addresses", quoteInput(s.Family))
	}
	if fam == 0 {
		fam = 4 // all-wildcard without a family: IPv4, as an NDIS ADD_SA without the IPv6 flag
	}
	p.IPv6 = fam == 6
	s.Family = "ipv4"
	if p.IPv6 {
		s.Family = "ipv6"
	}
	p.Src, p.Dst = src, dst
	s.Src, s.Dst = canonAddr(s.Src, src), canonAddr(s.Dst, dst)
	if p.Mode == sa.Tunnel && (!src.IsValid() || !dst.IsValid()) {
		return nil, Invalidf("src", "tunnel mode needs both tunnel endpoints: give src and dst addresses (wildcards are only for transport mode)")
	}

	// Sequence numbers and anti-replay.
	if s.SeqHigh != 0 && !s.ESN {
		return nil, Invalidf("seq_high", "needs esn: true (initial high-order sequence bits exist only with extended sequence numbers)")
	}
	if p.Dir == sa.In {
		w := DefaultReplayWindow
		if s.ReplayWindow != nil {
			w = *s.ReplayWindow
		}
		if w != 0 && (w < sa.MinReplayWindow || w > sa.MaxReplayWindow) {
			return nil, Invalidf("replay_window", "%d is out of range: give 0 to disable anti-replay or %d to %d packets", w, sa.MinReplayWindow, sa.MaxReplayWindow)
		}
		p.Window = w
		s.ReplayWindow = &w
	} else if s.ReplayWindow != nil && *s.ReplayWindow != 0 {
		return nil, Invalidf("replay_window", "applies to inbound bundles only; remove it from this outbound bundle")
	} else {
		s.ReplayWindow = nil
	}

	// Tunnel-only fields.
	switch strings.ToLower(s.DF) {
	case "", "copy":
		p.DF, s.DF = sa.DFCopy, ""
	case "set":
		p.DF, s.DF = sa.DFSet, "set"
	case "clear":
		p.DF, s.DF = sa.DFClear, "clear"
	default:
		return nil, Invalidf("df", "%s is not a DF mode: give \"copy\", \"set\" or \"clear\"", quoteInput(s.DF))
	}
	if p.Mode != sa.Tunnel {
		if s.TTL != 0 {
			return nil, Invalidf("ttl", "applies to tunnel mode only (transport mode keeps the packet's own TTL)")
		}
		if s.DF != "" {
			return nil, Invalidf("df", "applies to tunnel mode only")
		}
	}
	if s.TFCPad < 0 || s.TFCPad > 65535 {
		return nil, Invalidf("tfc_pad", "%d is out of range: give 0 to 65535 bytes", s.TFCPad)
	}

	// Offload type.
	switch strings.ToLower(s.Offload) {
	case "":
	case "crypto":
		s.Offload = "crypto"
	case "packet":
		p.Packet, s.Offload = true, "packet"
	default:
		return nil, Invalidf("offload", "%s is not an offload type: give \"crypto\" or \"packet\"", quoteInput(s.Offload))
	}

	// Lifetimes.
	if err := checkLifetime(s.Lifetime); err != nil {
		return nil, err
	}
	p.Soft = limitsOf(s.Lifetime.Soft)
	p.Hard = limitsOf(s.Lifetime.Hard)

	// SAs.
	if s.ESP == nil && s.AH == nil {
		return nil, Invalidf("esp", "a bundle needs an esp SA, an ah SA or both")
	}
	if s.ESP != nil {
		if err := normalizeESP(s.ESP); err != nil {
			return nil, WrapField("esp", err)
		}
	}
	if s.AH != nil {
		if err := normalizeAH(s.AH); err != nil {
			return nil, WrapField("ah", err)
		}
	}

	// UDP encapsulation.
	if u := s.UDPEncap; u != nil {
		if s.ESP == nil {
			return nil, Invalidf("udp_encap", "needs an esp SA: AH cannot be UDP-encapsulated (RFC 3948)")
		}
		if s.AH != nil {
			return nil, Invalidf("udp_encap", "cannot be used in an AH+ESP bundle: AH does not traverse NAT (RFC 3948); remove ah or udp_encap")
		}
		typ := strings.ToLower(u.Type)
		if typ == "" {
			typ = s.Mode
		}
		t, ok := UDPESPType(typ)
		if !ok {
			return nil, Invalidf("udp_encap.type", "%s is unknown: give none, transport, tunnel, transport-over-udp-tunnel or udp-transport-over-tunnel", quoteInput(u.Type))
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
			if p.Mode != sa.Transport {
				return nil, Invalidf("udp_encap.type", "transport needs mode transport; for a tunnel-mode bundle use type tunnel")
			}
			apply = true
		case capabilities.UDPESPTunnel:
			if p.Mode != sa.Tunnel {
				return nil, Invalidf("udp_encap.type", "tunnel needs mode tunnel; for a transport-mode bundle use type transport")
			}
			apply = true
		case capabilities.UDPESPTransportOverUDPTunnel:
			// The tunnel part is UDP-encapsulated, the transport part not.
			apply = p.Mode == sa.Tunnel
		case capabilities.UDPESPUDPTransportOverTunnel:
			// The transport part is UDP-encapsulated, the tunnel part not.
			apply = p.Mode == sa.Transport
		}
		p.UDPType = t
		if apply {
			p.Encap = &sa.UDPEncap{SrcPort: u.SrcPort, DstPort: u.DstPort}
		}
	}

	// The capabilities request.
	req := capabilities.BundleRequest{
		Mode:          capabilities.ModeTransport,
		IPv6:          p.IPv6,
		ESN:           s.ESN,
		UDPESP:        p.UDPType,
		PacketOffload: p.Packet,
		Offload:       capabilities.OffloadMode(s.Offload),
	}
	if p.Mode == sa.Tunnel {
		req.Mode = capabilities.ModeTunnel
	}
	if p.UDPType == capabilities.UDPESPTransportOverUDPTunnel || p.UDPType == capabilities.UDPESPUDPTransportOverTunnel {
		req.Mode = capabilities.ModeTransportOverTunnel
	}
	if p.Dir == sa.In {
		req.ReplayWindow = uint32(p.Window)
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
	p.Req = req
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
			return Invalidf("lifetime", "seconds must be at most %d", uint64(maxSeconds))
		}
		if c.soft != 0 && c.hard != 0 && c.soft >= c.hard {
			return Invalidf("lifetime.soft."+c.name, "%d must be below lifetime.hard.%s %d (the soft limit warns before the hard limit stops the SA)", c.soft, c.name, c.hard)
		}
	}
	return nil
}

func checkSPI(s SPI) error {
	if s == 0 {
		return Invalidf("spi", "is missing or 0; SPI 0 is never sent (RFC 4303 2.1): give an SPI of 256 (0x100) or more")
	}
	if s < 256 {
		return Invalidf("spi", "%v is reserved by IANA (1-255, RFC 4303 2.1): give an SPI of 256 (0x100) or more", s)
	}
	return nil
}

func checkKeys(s *SASpec) error {
	if s.KeysRedacted {
		return Invalidf("keys_redacted", "the keys of this SA were redacted on export; export it with keys (CLI --keys, API ?keys=true) or give enc_key/auth_key")
	}
	if s.EncKey.bad != "" {
		return Invalidf("enc_key", "%s", s.EncKey.bad)
	}
	if s.AuthKey.bad != "" {
		return Invalidf("auth_key", "%s", s.AuthKey.bad)
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
		return Invalidf("enc", "is missing: give an encryption algorithm (e.g. aes-gcm-128, or null with an auth algorithm for integrity only)")
	}
	e, err := suite.LookupEnc(suite.Enc(s.Enc))
	if err != nil {
		return Invalidf("enc", "%s is unknown: known algorithms are %s", quoteInput(s.Enc), encList())
	}
	if s.Auth != "" && s.Auth != string(suite.AuthNone) {
		if _, err := suite.LookupAuth(suite.Auth(s.Auth)); err != nil {
			return Invalidf("auth", "%s is unknown: known algorithms are %s", quoteInput(s.Auth), authList())
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
			return Invalidf("auth", "is missing: %s needs an integrity algorithm (ESP without integrity is refused by NDIS and RFC 4303): e.g. hmac-sha256-128", s.Enc)
		}
		s.Auth = string(suite.AuthNone)
	}
	if s.ICVLen < 0 {
		return Invalidf("icv_len", "%d is negative: give 8, 12 or 16 for AES-GCM, or leave it out", s.ICVLen)
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
		return Invalidf("enc", "AH does not encrypt: remove enc (use an esp SA for encryption)")
	}
	if !s.EncKey.IsZero() {
		return Invalidf("enc_key", "AH takes no encryption key: give the integrity key as auth_key")
	}
	if s.Auth == "" || s.Auth == string(suite.AuthNone) {
		return Invalidf("auth", "is missing: AH needs an integrity algorithm, e.g. hmac-sha256-128")
	}
	if _, err := suite.LookupAuth(suite.Auth(s.Auth)); err != nil {
		return Invalidf("auth", "%s is unknown: known algorithms are %s", quoteInput(s.Auth), authList())
	}
	if s.ICVLen < 0 {
		return Invalidf("icv_len", "%d is negative; leave it out for AH", s.ICVLen)
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
	_, err := b.Plan()
	return err
}

// Normalized returns the spec with defaults filled in and names in
// canonical form, as the table stores it.
func (b BundleSpec) Normalized() (BundleSpec, error) {
	p, err := b.Plan()
	if err != nil {
		return BundleSpec{}, err
	}
	return p.Spec, nil
}
