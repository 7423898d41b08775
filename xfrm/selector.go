package xfrm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/secnic/secnic/saspec"
)

// Selector is an XFRM selector: SELECTOR := [ src ADDR[/PLEN] ] [ dst
// ADDR[/PLEN] ] [ UPSPEC ]. An invalid prefix means "not given" (any
// address). For ICMP and ICMPv6 the ports hold the type and the code.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8
	SrcPort, DstPort uint16
}

// key identifies the selector as XFRM does: the addresses as given, not
// masked (Linux keeps 192.0.2.1/24 and 192.0.2.2/24 apart).
func (s Selector) key() string {
	return fmt.Sprintf("%s|%s|%d|%d|%d", s.Src, s.Dst, s.Proto, s.SrcPort, s.DstPort)
}

// masked returns the selector with its prefixes masked, as secnic stores
// them.
func (s Selector) masked() Selector {
	if s.Src.IsValid() {
		s.Src = s.Src.Masked()
	}
	if s.Dst.IsValid() {
		s.Dst = s.Dst.Masked()
	}
	return s
}

// IsZero reports a selector that matches everything.
func (s Selector) IsZero() bool { return s == Selector{} }

// v6 reports whether the selector is of the IPv6 family.
func (s Selector) v6() bool {
	return (s.Src.IsValid() && s.Src.Addr().Is6()) || (s.Dst.IsValid() && s.Dst.Addr().Is6())
}

// selectorOf reads a secnic policy's selector.
func selectorOf(p saspec.PolicySpec) Selector {
	var s Selector
	s.Src, _ = prefixOf(p.Src)
	s.Dst, _ = prefixOf(p.Dst)
	s.Proto, _ = saspec.ParseProto(string(p.Proto))
	s.SrcPort, s.DstPort = p.SrcPort, p.DstPort
	return s.masked()
}

func prefixOf(s string) (netip.Prefix, error) {
	if s == "" || s == "any" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseAddrPrefix reads ADDR[/PLEN] as iproute2's get_prefix does; "any"
// and "default" are the unspecified prefix of no family.
func parseAddrPrefix(kw, s string) (netip.Prefix, error) {
	switch s {
	case "any", "default", "all":
		return netip.Prefix{}, nil
	}
	p, err := prefixOf(s)
	if err != nil || !p.IsValid() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q after %q is not an address or prefix: give e.g. 10.0.0.0/24, 192.0.2.1 or 2001:db8::/64", s, kw)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q after %q is an IPv4-mapped IPv6 address: write the IPv4 form", s, kw)
	}
	return p, nil
}

// selector protocols that getprotobyname knows and secnic's schema does not.
var extraProtos = map[string]uint8{"dccp": 33, "ipencap": 4, "ipv6-icmp": 58, "mobility-header": 135, "ipv6-mh": 135}

func parseUpperProto(s string) (uint8, error) {
	if s == "any" {
		return 0, nil
	}
	if v, ok := extraProtos[s]; ok {
		return v, nil
	}
	v, err := saspec.ParseProto(s)
	if err != nil {
		return 0, fmt.Errorf("selector proto %q is not a protocol: give tcp, udp, icmp, ipv6-icmp, sctp, udplite, gre, any or a number", s)
	}
	return v, nil
}

// parseSelector reads selector words until one that is not part of a
// selector.
func parseSelector(a *args, ctx string) (Selector, error) {
	var s Selector
	var portWord, icmpWord string
	seen := map[string]bool{}
	for a.more() {
		kw := a.peek()
		switch kw {
		case "src", "dst", "proto", "sport", "dport", "type", "code":
		case "dev":
			a.next()
			return s, unsupported(ctx+" dev", "secnic is one NIC; a selector cannot name an interface: leave dev out")
		case "key":
			a.next()
			return s, unsupported(ctx+" key", "GRE key selectors are not supported: select proto gre without a key")
		default:
			return s, s.check(portWord, icmpWord)
		}
		a.next()
		if seen[kw] {
			return s, fmt.Errorf("%s %q is given twice", ctx, kw)
		}
		seen[kw] = true
		v, err := a.value(kw, "a value")
		if err != nil {
			return s, err
		}
		switch kw {
		case "src", "dst":
			p, err := parseAddrPrefix(kw, v)
			if err != nil {
				return s, err
			}
			if kw == "src" {
				s.Src = p
			} else {
				s.Dst = p
			}
		case "proto":
			if s.Proto, err = parseUpperProto(v); err != nil {
				return s, err
			}
		case "sport", "dport":
			n, err := strconv.ParseUint(v, 0, 16)
			if err != nil {
				return s, fmt.Errorf("%s %q is not a port number (0-65535)", kw, v)
			}
			if kw == "sport" {
				s.SrcPort = uint16(n)
			} else {
				s.DstPort = uint16(n)
			}
			portWord = kw
		case "type", "code":
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil {
				return s, fmt.Errorf("%s %q is not an ICMP %s (0-255)", kw, v, kw)
			}
			if n == 0 {
				return s, unsupported(ctx+" "+kw+" 0", "secnic selects ICMP types and codes as Linux stores them, in the ports, where 0 means any: leave it out to match every "+kw)
			}
			if kw == "type" {
				s.SrcPort = uint16(n)
			} else {
				s.DstPort = uint16(n)
			}
			icmpWord = kw
		}
	}
	return s, s.check(portWord, icmpWord)
}

func (s Selector) check(portWord, icmpWord string) error {
	if s.Src.IsValid() && s.Dst.IsValid() && s.Src.Addr().Is4() != s.Dst.Addr().Is4() {
		return fmt.Errorf("the selector's src %s and dst %s are of different families: give both IPv4 or both IPv6", s.Src, s.Dst)
	}
	if portWord != "" {
		switch s.Proto {
		case 6, 17, 132, 33, 136:
		default:
			return fmt.Errorf("%q is invalid with proto=%s: ports need proto tcp, udp, sctp or udplite", portWord, protoName(s.Proto))
		}
	}
	if icmpWord != "" && s.Proto != 1 && s.Proto != 58 {
		return fmt.Errorf("%q is invalid with proto=%s: type and code need proto icmp or ipv6-icmp", icmpWord, protoName(s.Proto))
	}
	return nil
}

// policyFields writes the selector into a secnic policy.
func (s Selector) policyFields(p *saspec.PolicySpec) {
	if s.Src.IsValid() {
		p.Src = s.Src.String()
	}
	if s.Dst.IsValid() {
		p.Dst = s.Dst.String()
	}
	if s.Proto != 0 {
		p.Proto = saspec.Ref(strconv.Itoa(int(s.Proto)))
	}
	p.SrcPort, p.DstPort = s.SrcPort, s.DstPort
}

// protoName is getprotobynumber's name, as `ip xfrm` prints selectors.
func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 2:
		return "igmp"
	case 4:
		return "ipencap"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 33:
		return "dccp"
	case 41:
		return "ipv6"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 51:
		return "ah"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	case 135:
		return "mobility-header"
	case 136:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

// unsupportedError is a word of the grammar that secnic does not support.
type unsupportedError struct {
	word, why string
}

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("%q is not supported by secnic: %s", e.word, e.why)
}

func unsupported(word, why string) error { return &unsupportedError{word: word, why: why} }

// IsUnsupported reports whether err is a word secnic does not support.
func IsUnsupported(err error) bool {
	_, ok := err.(*unsupportedError)
	return ok
}
