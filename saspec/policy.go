package saspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/secnic/secnic/sa"
)

// Action is what a policy does with matching traffic.
type Action uint8

// Policy actions. The zero value is not an action.
const (
	// Protect applies the policy's bundles (outbound) or requires that the
	// packet arrived through one of them (inbound).
	Protect Action = 1
	// Bypass lets the packet through unprotected.
	Bypass Action = 2
	// Discard drops the packet (XfrmOutPolBlock / XfrmInPolBlock).
	Discard Action = 3
)

// String returns "protect", "bypass" or "discard".
func (a Action) String() string {
	switch a {
	case Protect:
		return "protect"
	case Bypass:
		return "bypass"
	case Discard:
		return "discard"
	}
	return "invalid"
}

// ParseAction reads "protect", "bypass" or "discard" (also XFRM's "allow"
// for bypass and "block" for discard).
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "protect", "ipsec":
		return Protect, nil
	case "bypass", "allow", "pass":
		return Bypass, nil
	case "discard", "block", "drop":
		return Discard, nil
	}
	return 0, fmt.Errorf("%s is not an action: give protect, bypass or discard", quoteInput(s))
}

// Selector chooses the traffic of a policy, like an XFRM selector. A zero
// (invalid) prefix matches any address of either family; a prefix /0
// matches any address of its family. Proto 0 matches any protocol, port 0
// any port. For ICMP and ICMPv6 the ports hold the type (SrcPort) and code
// (DstPort), as in Linux XFRM; type or code 0 therefore cannot be selected
// on its own.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8
	SrcPort, DstPort uint16
}

// Matches reports whether the selector matches f (a linear reference
// implementation; the Snapshot uses hash lookups).
func (s Selector) Matches(f sa.Flow) bool {
	if s.Src.IsValid() && !s.Src.Contains(f.Src) {
		return false
	}
	if s.Dst.IsValid() && !s.Dst.Contains(f.Dst) {
		return false
	}
	if s.Proto != 0 && s.Proto != f.Proto {
		return false
	}
	if s.SrcPort != 0 && s.SrcPort != f.SrcPort {
		return false
	}
	if s.DstPort != 0 && s.DstPort != f.DstPort {
		return false
	}
	return true
}

// Ref is a JSON value that may be written as a string or a number: a
// bundle reference (name or handle) or a protocol (name or number).
type Ref string

// UnmarshalJSON accepts a string or a number.
func (r *Ref) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = Ref(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("must be a name or a number, not %s", b)
	}
	*r = Ref(n.String())
	return nil
}

// PolicySpec is a policy in the shared schema.
type PolicySpec struct {
	// ID identifies the policy; 0 lets the table choose one.
	ID uint32 `json:"id,omitempty"`
	// Name optionally identifies the policy; the configuration file
	// requires it.
	Name string `json:"name,omitempty"`
	// Dir is "in" or "out".
	Dir string `json:"dir"`
	// Priority orders overlapping policies: lower wins (Linux XFRM).
	Priority int `json:"priority,omitempty"`
	// Src and Dst are prefixes ("10.0.0.0/24") or addresses (a host
	// prefix); empty matches anything.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// Proto is a protocol name (tcp, udp, icmp, icmpv6, sctp, udplite,
	// gre, esp, ah, ipip, ipv6) or number; empty or "any" matches all.
	Proto Ref `json:"proto,omitempty"`
	// SrcPort and DstPort select TCP, UDP, SCTP or UDP-Lite ports (0 =
	// any); for ICMP and ICMPv6 the type and the code.
	SrcPort uint16 `json:"src_port,omitempty"`
	DstPort uint16 `json:"dst_port,omitempty"`
	// Action is protect (default), bypass or discard.
	Action string `json:"action,omitempty"`
	// Bundles links bundles by name or handle (protect only). Outbound:
	// one bundle, or two for transport over tunnel (transport first).
	// Inbound: the bundles traffic may arrive through.
	Bundles []Ref `json:"bundles,omitempty"`
	// PerCPU makes an outbound protect policy's bundles alternatives, one
	// per CPU (RFC 9611 per-resource SAs, as Linux XFRMA_SA_PCPU and
	// strongSwan's per_cpu_sas): transmit worker i uses bundle i mod
	// len(bundles), so one tunnel runs on every worker with an SA each. Up
	// to MaxPerCPUBundles bundles, each a whole chain of its own (no
	// transport over tunnel). The inbound policy lists every inbound
	// bundle: each SA has its own SPI.
	PerCPU bool `json:"per_cpu,omitempty"`
}

// MaxPerCPUBundles bounds the bundles of a per_cpu policy.
const MaxPerCPUBundles = 256

// String describes the policy.
func (p PolicySpec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s prio=%d %s->%s", p.Dir, p.Priority, orDefault(p.Src, "any"), orDefault(p.Dst, "any"))
	if p.Proto != "" {
		fmt.Fprintf(&b, " proto=%s", p.Proto)
	}
	if p.SrcPort != 0 || p.DstPort != 0 {
		fmt.Fprintf(&b, " ports=%d->%d", p.SrcPort, p.DstPort)
	}
	fmt.Fprintf(&b, " %s", orDefault(p.Action, "protect"))
	if len(p.Bundles) > 0 {
		refs := make([]string, len(p.Bundles))
		for i, r := range p.Bundles {
			refs[i] = string(r)
		}
		fmt.Fprintf(&b, " [%s]", strings.Join(refs, ","))
	}
	if p.PerCPU {
		b.WriteString(" per_cpu")
	}
	return b.String()
}

// Clone returns a deep copy.
func (p PolicySpec) Clone() PolicySpec {
	c := p
	c.Bundles = append([]Ref(nil), p.Bundles...)
	return c
}

var protoNames = map[string]uint8{
	"icmp": 1, "igmp": 2, "ipip": 4, "ipencap": 4, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47,
	"esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136,
}

// ProtoName returns the schema name of an IP protocol number, or the number.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 2:
		return "igmp"
	case 4:
		return "ipip"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 41:
		return "ipv6"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 51:
		return "ah"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

// ParseProto reads a protocol name or number ("" and "any" are 0).
func ParseProto(s string) (uint8, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" || t == "any" {
		return 0, nil
	}
	if v, ok := protoNames[t]; ok {
		return v, nil
	}
	n, err := strconv.ParseUint(t, 0, 8)
	if err != nil {
		return 0, fmt.Errorf("%s is not a protocol: give a name (tcp, udp, icmp, icmpv6, sctp, udplite, gre, esp, ah) or a number 0-255", quoteInput(s))
	}
	return uint8(n), nil
}

// parsePrefix reads a selector prefix: "" or "any" = any address.
func parsePrefix(field, s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if t == "" || strings.EqualFold(t, "any") {
		return netip.Prefix{}, nil
	}
	var p netip.Prefix
	if strings.Contains(t, "/") {
		var err error
		p, err = netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, Invalidf(field, "%s is not a prefix: give e.g. 10.0.0.0/24, 2001:db8::/64 or an address", quoteInput(s))
		}
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil {
			return netip.Prefix{}, Invalidf(field, "%s is not an address or prefix: give e.g. 10.0.0.0/24, 2001:db8::/64 or 192.0.2.1", quoteInput(s))
		}
		if a.Zone() != "" {
			return netip.Prefix{}, Invalidf(field, "%s has a zone; selectors take no zone", quoteInput(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, Invalidf(field, "%s is IPv4-mapped IPv6; write the IPv4 prefix", quoteInput(s))
	}
	return p.Masked(), nil
}

// PolicyPlan is a validated PolicySpec, before bundle references are
// resolved.
type PolicyPlan struct {
	Spec   PolicySpec // normalized
	Dir    sa.Direction
	Sel    Selector
	Action Action
}

func (p PolicySpec) Plan() (*PolicyPlan, error) {
	pp := &PolicyPlan{Spec: p.Clone()}
	s := &pp.Spec
	if err := checkName("name", s.Name); err != nil {
		return nil, err
	}
	switch strings.ToLower(s.Dir) {
	case "in", "inbound":
		pp.Dir, s.Dir = sa.In, "in"
	case "out", "outbound":
		pp.Dir, s.Dir = sa.Out, "out"
	case "":
		return nil, Invalidf("dir", "is missing: give \"in\" or \"out\"")
	default:
		return nil, Invalidf("dir", "%s is not a direction: give \"in\" or \"out\"", quoteInput(s.Dir))
	}
	src, err := parsePrefix("src", s.Src)
	if err != nil {
		return nil, err
	}
	dst, err := parsePrefix("dst", s.Dst)
	if err != nil {
		return nil, err
	}
	if src.IsValid() && dst.IsValid() && src.Addr().Is4() != dst.Addr().Is4() {
		return nil, Invalidf("dst", "%s and src %s are of different families; a selector matches one family", dst, src)
	}
	s.Src, s.Dst = prefixString(src), prefixString(dst)
	proto, err := ParseProto(string(s.Proto))
	if err != nil {
		return nil, Invalidf("proto", "%v", err)
	}
	s.Proto = ""
	if proto != 0 {
		s.Proto = Ref(ProtoName(proto))
	}
	if (s.SrcPort != 0 || s.DstPort != 0) && !sa.HasPorts(proto) {
		f := "src_port"
		if s.SrcPort == 0 {
			f = "dst_port"
		}
		return nil, Invalidf(f, "needs proto tcp, udp, sctp or udplite (or icmp/icmpv6, where src_port is the type and dst_port the code)")
	}
	act := Protect
	if s.Action != "" {
		if act, err = ParseAction(s.Action); err != nil {
			return nil, Invalidf("action", "%v", err)
		}
	}
	s.Action = act.String()
	switch act {
	case Protect:
		if len(s.Bundles) == 0 {
			return nil, Invalidf("bundles", "a protect policy needs at least one bundle (name or handle); or use action bypass or discard")
		}
		if s.PerCPU {
			if pp.Dir != sa.Out {
				return nil, Invalidf("per_cpu", "is for outbound policies; an inbound policy lists every bundle traffic may arrive through already")
			}
			if len(s.Bundles) > MaxPerCPUBundles {
				return nil, Invalidf("bundles", "a per_cpu policy takes at most %d bundles, not %d", MaxPerCPUBundles, len(s.Bundles))
			}
		} else if pp.Dir == sa.Out && len(s.Bundles) > 2 {
			return nil, Invalidf("bundles", "an outbound policy takes one bundle, or two for transport over tunnel (transport first, then tunnel), not %d", len(s.Bundles))
		}
	default:
		if len(s.Bundles) > 0 {
			return nil, Invalidf("bundles", "only protect policies link bundles; remove them or use action protect")
		}
		if s.PerCPU {
			return nil, Invalidf("per_cpu", "is for protect policies; remove it or use action protect")
		}
	}
	for i, r := range s.Bundles {
		if strings.TrimSpace(string(r)) == "" {
			return nil, Invalidf(fmt.Sprintf("bundles[%d]", i), "is empty: give a bundle name or handle")
		}
		s.Bundles[i] = Ref(strings.TrimSpace(string(r)))
	}
	pp.Sel = Selector{Src: src, Dst: dst, Proto: proto, SrcPort: s.SrcPort, DstPort: s.DstPort}
	pp.Action = act
	return pp, nil
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// Validate checks the spec on its own (bundle references are checked when
// the policy is added).
func (p PolicySpec) Validate() error {
	_, err := p.Plan()
	return err
}

// Normalized returns the spec in canonical form.
func (p PolicySpec) Normalized() (PolicySpec, error) {
	pp, err := p.Plan()
	if err != nil {
		return PolicySpec{}, err
	}
	return pp.Spec, nil
}
