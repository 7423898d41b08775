package xfrm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// Template is one "tmpl" of a policy: TMPL := ID [ mode MODE ] [ reqid
// REQID ] [ level required ]. Zero fields match anything, as in XFRM.
type Template struct {
	Src, Dst netip.Addr
	Proto    string // esp or ah
	SPI      saspec.SPI
	Mode     string // transport (default) or tunnel
	ReqID    uint32
}

// Policy is a parsed "ip xfrm policy add|update" command.
type Policy struct {
	// Dir is in, out or fwd.
	Dir      string
	Sel      Selector
	Priority uint32
	// Block is "action block"; otherwise the policy allows (protects with
	// its templates, or bypasses without).
	Block bool
	Tmpls []Template
}

// policyUnsupported are words of "ip xfrm policy" secnic refuses, and why.
var policyUnsupported = map[string]string{
	"ctx":    "security contexts are not supported: leave ctx out",
	"mark":   "XFRM marks select policies by skb mark, which a NIC does not see: leave mark out",
	"if_id":  "XFRM interfaces are not supported: leave if_id out",
	"flag":   "policy flags (localok, icmp) are not supported: leave flag out",
	"limit":  "secnic policies have no lifetime: put limits on the states",
	"socket": "socket policies are not supported",
}

func parsePolicyDir(v string) (string, error) {
	switch v {
	case "in", "out", "fwd":
		return v, nil
	}
	return "", fmt.Errorf("dir %q is not a direction: give in, out or fwd", v)
}

func parsePtype(v string) error {
	switch v {
	case "main":
		return nil
	case "sub":
		return unsupported("ptype sub", "sub policies are not supported: use ptype main")
	}
	return fmt.Errorf("ptype %q is not a policy type: give main", v)
}

// ParsePolicy reads the words after "ip xfrm policy add" (or update):
//
//	SELECTOR dir DIR [ ptype main ] [ action ACTION ] [ priority PRIORITY ]
//	[ TMPL-LIST ] [ offload packet dev DEV ]
func ParsePolicy(words []string) (Policy, error) {
	a := &args{w: words}
	var (
		p      Policy
		selGot bool
	)
	for a.more() {
		kw := a.peek()
		if why, ok := policyUnsupported[kw]; ok {
			return p, unsupported(kw, why)
		}
		switch kw {
		case "src", "dst", "proto", "sport", "dport", "type", "code", "dev", "key":
			if selGot {
				return p, fmt.Errorf("%q: the selector is given twice (put it in one place, before tmpl)", kw)
			}
			selGot = true
			s, err := parseSelector(a, "selector")
			if err != nil {
				return p, err
			}
			p.Sel = s
			continue
		}
		a.next()
		switch kw {
		case "dir":
			if p.Dir != "" {
				return p, fmt.Errorf("%q is given twice", kw)
			}
			v, err := a.value(kw, "in, out or fwd")
			if err != nil {
				return p, err
			}
			if p.Dir, err = parsePolicyDir(v); err != nil {
				return p, err
			}
		case "index":
			return p, unsupported("index", "secnic chooses policy indexes; leave index out on add (it is accepted by get and delete)")
		case "ptype":
			v, err := a.value(kw, "main")
			if err != nil {
				return p, err
			}
			if err := parsePtype(v); err != nil {
				return p, err
			}
		case "action":
			v, err := a.value(kw, "allow or block")
			if err != nil {
				return p, err
			}
			switch v {
			case "allow":
				p.Block = false
			case "block":
				p.Block = true
			default:
				return p, fmt.Errorf("action %q is not an action: give allow or block", v)
			}
		case "priority":
			v, err := a.value(kw, "a number")
			if err != nil {
				return p, err
			}
			if p.Priority, err = parseU32(kw, v); err != nil {
				return p, err
			}
			if p.Priority > 1<<31-1 {
				return p, fmt.Errorf("priority %d is too large: secnic takes priorities up to %d", p.Priority, 1<<31-1)
			}
		case "tmpl":
			t, err := parseTemplate(a)
			if err != nil {
				return p, err
			}
			p.Tmpls = append(p.Tmpls, t)
		case "offload":
			// Every secnic policy runs on the NIC: "offload packet dev DEV"
			// only has to be well formed.
			for _, want := range []string{"packet", "dev"} {
				v, err := a.value("offload", want)
				if err != nil {
					return p, err
				}
				if v != want {
					return p, fmt.Errorf("offload: %q where %q was expected: write offload packet dev DEV", v, want)
				}
			}
			if _, err := a.value("dev", "a device name"); err != nil {
				return p, err
			}
		default:
			return p, fmt.Errorf("%q is not a word of ip xfrm policy add: see ip-xfrm(8) and docs/xfrm.md for what secnic supports", kw)
		}
	}
	if p.Dir == "" {
		return p, fmt.Errorf("dir is missing: give dir in, out or fwd")
	}
	if p.Block && len(p.Tmpls) > 0 {
		return p, fmt.Errorf("action block with tmpl: a blocking policy uses no states; remove the templates or the action")
	}
	switch {
	case len(p.Tmpls) > 2:
		return p, unsupported("tmpl", fmt.Sprintf("secnic links at most two templates (transport over tunnel), not %d", len(p.Tmpls)))
	case len(p.Tmpls) == 2 && !(p.Tmpls[0].Mode == "transport" && p.Tmpls[1].Mode == "tunnel"):
		return p, unsupported("tmpl", "two templates must be transport then tunnel (transport over tunnel); for AH+ESP in one bundle use secnic sa add --spi ... --ah-spi ...")
	}
	return p, nil
}

func parseTemplate(a *args) (Template, error) {
	t := Template{Mode: "transport"}
	var id ID
	n := 0
loop:
	for a.more() {
		kw := a.peek()
		switch kw {
		case "src", "dst", "proto", "spi":
			a.next()
			if err := parseIDWord(&id, kw, a); err != nil {
				return t, err
			}
		case "mode":
			a.next()
			v, err := a.value(kw, "transport or tunnel")
			if err != nil {
				return t, err
			}
			if t.Mode, err = parseMode(v); err != nil {
				return t, err
			}
		case "reqid":
			a.next()
			v, err := a.value(kw, "a number")
			if err != nil {
				return t, err
			}
			if t.ReqID, err = parseU32(kw, v); err != nil {
				return t, err
			}
		case "level":
			a.next()
			v, err := a.value(kw, "required")
			if err != nil {
				return t, err
			}
			switch v {
			case "required":
			case "use":
				return t, unsupported("level use", "optional templates are not supported: secnic applies every template (level required)")
			default:
				return t, fmt.Errorf("level %q is invalid: give required", v)
			}
		default:
			break loop
		}
		n++
	}
	if n == 0 {
		return t, fmt.Errorf("tmpl needs at least proto esp|ah")
	}
	if id.Proto == "" {
		return t, fmt.Errorf("tmpl needs proto esp or proto ah")
	}
	for _, pr := range []netip.Prefix{id.Src, id.Dst} {
		if pr.IsValid() && pr.Bits() != pr.Addr().BitLen() {
			return t, fmt.Errorf("tmpl address %s is a prefix: give addresses", pr)
		}
	}
	t.Proto, t.SPI = id.Proto, id.SPI
	if id.Src.IsValid() {
		t.Src = id.Src.Addr()
	}
	if id.Dst.IsValid() {
		t.Dst = id.Dst.Addr()
	}
	if t.Mode == "tunnel" && (!t.Src.IsValid() || !t.Dst.IsValid()) {
		return t, fmt.Errorf("a tunnel-mode tmpl needs src and dst (the tunnel endpoints)")
	}
	return t, nil
}

// Name returns the secnic name of the policy.
func (p Policy) Name() string { return PolicyName(p.Dir, p.Sel) }

// Spec returns the secnic policy without its bundles (see
// ResolveTemplates).
func (p Policy) Spec() saspec.PolicySpec {
	s := saspec.PolicySpec{Name: p.Name(), Dir: p.Dir, Priority: int(p.Priority)}
	if p.Dir == "fwd" {
		s.Dir = "in"
	}
	p.Sel.policyFields(&s)
	switch {
	case p.Block:
		s.Action = "discard"
	case len(p.Tmpls) == 0:
		s.Action = "bypass"
	default:
		s.Action = "protect"
	}
	return s
}

// PolicyID selects one policy for get and delete: { SELECTOR | index
// INDEX } dir DIR [ ptype main ].
type PolicyID struct {
	Dir   string
	Sel   Selector
	Index uint32
}

// ParsePolicyID reads the words of "ip xfrm policy get|delete".
func ParsePolicyID(words []string) (PolicyID, error) {
	a := &args{w: words}
	var id PolicyID
	for a.more() {
		kw := a.peek()
		if why, ok := policyUnsupported[kw]; ok {
			return id, unsupported(kw, why)
		}
		switch kw {
		case "src", "dst", "proto", "sport", "dport", "type", "code", "dev", "key":
			s, err := parseSelector(a, "selector")
			if err != nil {
				return id, err
			}
			id.Sel = s
			continue
		}
		a.next()
		v, err := a.value(kw, "a value")
		if err != nil {
			return id, err
		}
		switch kw {
		case "dir":
			if id.Dir, err = parsePolicyDir(v); err != nil {
				return id, err
			}
		case "index":
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil || n == 0 {
				return id, fmt.Errorf("index %q is not a policy index", v)
			}
			id.Index = uint32(n)
		case "ptype":
			if err := parsePtype(v); err != nil {
				return id, err
			}
		default:
			return id, fmt.Errorf("%q is not a word of ip xfrm policy get|delete: give SELECTOR or index INDEX, and dir DIR", kw)
		}
	}
	if id.Dir == "" {
		return id, fmt.Errorf("dir is missing: give dir in, out or fwd")
	}
	return id, nil
}

// PolicyFilter selects policies for list and deleteall: [ SELECTOR ] [ dir
// DIR ] [ index INDEX ] [ action ACTION ] [ priority PRIORITY ].
type PolicyFilter struct {
	Dir         string
	Sel         *Selector
	Index       uint32
	Action      string
	Priority    uint32
	HasPriority bool
}

// ParsePolicyFilter reads the words of "ip xfrm policy list|deleteall".
func ParsePolicyFilter(words []string) (PolicyFilter, error) {
	a := &args{w: words}
	var f PolicyFilter
	for a.more() {
		kw := a.peek()
		switch kw {
		case "src", "dst", "proto", "sport", "dport", "type", "code", "dev", "key":
			s, err := parseSelector(a, "selector")
			if err != nil {
				return f, err
			}
			f.Sel = &s
			continue
		case "nosock":
			a.next()
			continue
		}
		a.next()
		v, err := a.value(kw, "a value")
		if err != nil {
			return f, err
		}
		switch kw {
		case "dir":
			if f.Dir, err = parsePolicyDir(v); err != nil {
				return f, err
			}
		case "index":
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return f, fmt.Errorf("index %q is not a policy index", v)
			}
			f.Index = uint32(n)
		case "ptype":
			if err := parsePtype(v); err != nil {
				return f, err
			}
		case "action":
			if v != "allow" && v != "block" {
				return f, fmt.Errorf("action %q is not an action: give allow or block", v)
			}
			f.Action = v
		case "priority":
			if f.Priority, err = parseU32(kw, v); err != nil {
				return f, err
			}
			f.HasPriority = true
		case "flag":
			return f, unsupported(kw, policyUnsupported[kw])
		default:
			return f, fmt.Errorf("%q is not a word of ip xfrm policy list: give SELECTOR, dir, index, action or priority", kw)
		}
	}
	return f, nil
}

// Matches reports whether the installed policy p is selected by f.
func (f PolicyFilter) Matches(p sadb.PolicyInfo) bool {
	if f.Dir != "" && PolicyDir(p.Spec) != f.Dir {
		return false
	}
	if f.Index != 0 && p.ID != f.Index {
		return false
	}
	if f.Sel != nil && selectorOf(p.Spec) != f.Sel.masked() {
		return false
	}
	if f.Action != "" && linuxAction(p.Spec.Action) != f.Action {
		return false
	}
	if f.HasPriority && p.Spec.Priority != int(f.Priority) {
		return false
	}
	return true
}

// Matches reports whether the installed policy p is the one id names.
func (id PolicyID) Matches(p sadb.PolicyInfo) bool {
	if PolicyDir(p.Spec) != id.Dir {
		return false
	}
	if id.Index != 0 {
		return p.ID == id.Index
	}
	if strings.HasPrefix(p.Spec.Name, "xfrm-") {
		// Made by secnic xfrm: the name holds the selector as given.
		return p.Spec.Name == PolicyName(id.Dir, id.Sel)
	}
	return selectorOf(p.Spec) == id.Sel.masked()
}

func linuxAction(a string) string {
	if a == "discard" {
		return "block"
	}
	return "allow"
}
