package xfrm

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
)

// Monitor prints secnic's events as `ip xfrm monitor` prints XFRM's: new
// states and policies as `ip xfrm` lists them, "Deleted ", "Updated " and
// "Expired " (with "hard 0" for a soft limit, "hard 1" for a hard one)
// before the entry, and secnic's acquire events (an outbound policy whose
// state is missing or expired) as "acquire proto esp" with the selector of
// the packet and the policy, as ip prints XFRM_MSG_ACQUIRE.
type Monitor struct {
	Backend Backend
	Print   PrintOptions
	Out     io.Writer
	// Objects limits the output to "SA", "policy", "expire" (empty: all).
	Objects map[string]bool

	bundles  map[sa.Handle]sadb.BundleInfo
	policies map[uint32]sadb.PolicyInfo
}

// ParseMonitor reads the words of "ip xfrm monitor": [ nokeys ] [ all |
// LISTofXFRM-OBJECTS ] with objects acquire, expire, SA and policy.
func ParseMonitor(words []string) (map[string]bool, error) {
	objs := map[string]bool{}
	for _, w := range words {
		switch w {
		case "all", "nokeys", "all-nsid":
		case "SA", "policy", "expire", "acquire":
			objs[w] = true
		case "aevent", "report", "mapping":
			return nil, unsupported(w, "secnic raises no "+w+" events; monitor SA, policy, expire or acquire")
		default:
			return nil, fmt.Errorf("%q is not an object of ip xfrm monitor: give all, SA, policy, expire or acquire", w)
		}
	}
	return objs, nil
}

func (m *Monitor) want(obj string) bool { return len(m.Objects) == 0 || m.Objects[obj] }

// Start records the current states and policies, so that deletions can
// be printed in full.
func (m *Monitor) Start(ctx context.Context) error {
	m.bundles = map[sa.Handle]sadb.BundleInfo{}
	m.policies = map[uint32]sadb.PolicyInfo{}
	return m.refresh(ctx)
}

func (m *Monitor) refresh(ctx context.Context) error {
	bs, err := m.Backend.ListBundles(ctx, m.Print.Keys)
	if err != nil {
		return err
	}
	for _, b := range bs {
		m.bundles[b.Handle] = b
	}
	ps, err := m.Backend.ListPolicies(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		m.policies[p.ID] = p
	}
	return nil
}

// Handle prints one event.
func (m *Monitor) Handle(ctx context.Context, e sadb.Event) error {
	switch e.Type {
	case sadb.EventSAAdded, sadb.EventSAUpdated, sadb.EventSAReplaced, sadb.EventPolicyAdded, sadb.EventPolicyReplaced,
		sadb.EventSADeleteRequest, sadb.EventSAExpired:
		if err := m.refresh(ctx); err != nil {
			return err
		}
	}
	switch e.Type {
	case sadb.EventSAAdded:
		m.states(e.Handle, "", "", "SA")
	case sadb.EventSAUpdated, sadb.EventSAReplaced:
		m.states(e.Handle, "Updated ", "", "SA")
	case sadb.EventSADeleted:
		m.states(e.Handle, "Deleted ", "", "SA")
		delete(m.bundles, e.Handle)
	case sadb.EventSADeleteRequest:
		m.expired(e, 0)
	case sadb.EventSAExpired:
		m.expired(e, 1)
	case sadb.EventPolicyAdded:
		m.policy(e.PolicyID, "")
	case sadb.EventPolicyReplaced:
		m.policy(e.PolicyID, "Updated ")
	case sadb.EventPolicyDeleted:
		m.policy(e.PolicyID, "Deleted ")
		delete(m.policies, e.PolicyID)
	case sadb.EventAcquire:
		if _, ok := m.policies[e.PolicyID]; !ok {
			if err := m.refresh(ctx); err != nil {
				return err
			}
		}
		m.acquire(e)
	}
	return nil
}

// acquire prints an acquire event as xfrm_acquire_print does: the
// protocol wanted, the packet's selector ("sel"), the policy with its
// templates, and with -s the sequence number and algorithm masks.
func (m *Monitor) acquire(e sadb.Event) {
	a := e.Acquire
	if a == nil || !m.want("acquire") {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "acquire proto %s \n", acquireProto(a))
	f := a.Flow
	bits := 32
	if f.Src.Is6() {
		bits = 128
	}
	sel := Selector{Src: netip.PrefixFrom(f.Src, bits), Dst: netip.PrefixFrom(f.Dst, bits), Proto: f.Proto, SrcPort: f.SrcPort, DstPort: f.DstPort}
	writeSelector(&b, "  sel ", sel, f.Src.Is6(), PrintOptions{})
	if p, ok := m.policies[e.PolicyID]; ok {
		var vs []sadb.BundleInfo
		for _, x := range m.bundles {
			vs = append(vs, x)
		}
		var pb strings.Builder
		WritePolicy(&pb, p, States(vs), PrintOptions{Loc: m.Print.Loc})
		for i, l := range strings.SplitAfter(pb.String(), "\n") {
			if l == "" {
				continue
			}
			if i == 0 {
				b.WriteString("  policy ")
			} else {
				b.WriteString("    ")
			}
			b.WriteString(l)
		}
	}
	if m.Print.Stats {
		fmt.Fprintf(&b, "  seq 0x%08d enc-mask ffffffff auth-mask ffffffff comp-mask ffffffff", a.Seq)
	}
	b.WriteString("\n")
	io.WriteString(m.Out, b.String())
}

// acquireProto is the protocol of the first template an acquire wants:
// the existing bundle's first protocol, or what a missing bundle's name
// says (secnic xfrm names carry it), else esp.
func acquireProto(a *sadb.Acquire) string {
	if len(a.Templates) > 0 {
		t := a.Templates[0]
		if len(t.Protos) > 0 {
			return t.Protos[0]
		}
		if n, ok := ParseStateName(t.Ref); ok {
			return n.Proto
		}
	}
	return "esp"
}

func (m *Monitor) states(h sa.Handle, prefix, suffix, obj string) {
	b, ok := m.bundles[h]
	if !ok || !m.want(obj) {
		return
	}
	ps := m.policyList()
	for _, v := range States([]sadb.BundleInfo{b}) {
		io.WriteString(m.Out, prefix)
		WriteState(m.Out, v, SelectorFor(v, ps), m.Print)
		io.WriteString(m.Out, suffix)
	}
}

func (m *Monitor) expired(e sadb.Event, hard int) {
	b, ok := m.bundles[e.Handle]
	if !ok || !m.want("expire") {
		return
	}
	ps := m.policyList()
	for _, v := range States([]sadb.BundleInfo{b}) {
		if e.SPI != 0 && (v.Spec.SPI != e.SPI || (e.Proto != "" && v.Proto != e.Proto)) {
			continue
		}
		io.WriteString(m.Out, "Expired ")
		WriteState(m.Out, v, SelectorFor(v, ps), m.Print)
		fmt.Fprintf(m.Out, "\thard %d\n", hard)
	}
}

func (m *Monitor) policy(id uint32, prefix string) {
	p, ok := m.policies[id]
	if !ok || !m.want("policy") {
		return
	}
	var vs []sadb.BundleInfo
	for _, b := range m.bundles {
		vs = append(vs, b)
	}
	io.WriteString(m.Out, prefix)
	WritePolicy(m.Out, p, States(vs), m.Print)
}

func (m *Monitor) policyList() []sadb.PolicyInfo {
	ps := make([]sadb.PolicyInfo, 0, len(m.policies))
	for _, p := range m.policies {
		ps = append(ps, p)
	}
	return ps
}
