package xfrm

import (
	"context"
	"fmt"
	"io"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
)

// Monitor prints secnic's events as `ip xfrm monitor` prints XFRM's: new
// states and policies as `ip xfrm` lists them, "Deleted ", "Updated " and
// "Expired " (with "hard 0" for a soft limit, "hard 1" for a hard one)
// before the entry. secnic raises no ACQUIRE: a policy whose state is
// missing drops its traffic (XfrmOutNoStates) without asking for one.
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
	}
	return nil
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
