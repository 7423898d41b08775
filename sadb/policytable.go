package sadb

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// Policy is an installed policy. Lower Priority values win (as in Linux
// XFRM); between equal priorities the lower ID wins.
type Policy struct {
	ID       uint32
	Name     string
	Dir      sa.Direction
	Priority int
	Sel      saspec.Selector
	Action   saspec.Action
	// Bundles are the linked bundles. Outbound protect: applied in order,
	// innermost first ([transport, tunnel] = transport over tunnel).
	// Inbound protect: the bundles a packet may have arrived through.
	Bundles []sa.Handle
	// PerCPU: the outbound bundles are alternatives, one per worker (RFC
	// 9611; saspec.PolicySpec.PerCPU).
	PerCPU bool
}

// Resolved is the result of a policy lookup: the policy, its action and its
// bundles. For an outbound Protect policy, an empty Bundles means a linked
// bundle is missing (deleted, or not yet added): drop the packet with
// OutNoStates. For an inbound Protect policy, Bundles lists the linked
// bundles that exist. A Resolved is immutable but for the acquire rate
// limit it shares with the policy's other resolutions (see Acquire).
//
// With PerCPU, Bundles are alternatives: transmit worker i applies
// Bundles[i mod len(Bundles)] alone. A per-CPU policy whose bundles are
// partly missing uses those that exist (RFC 9611's fallback SA), and drops
// with OutNoStates only when none does.
type Resolved struct {
	Policy  *Policy
	Action  saspec.Action
	Bundles []*sa.Bundle
	PerCPU  bool

	acq *acquireState // outbound protect policies: the acquire rate limit
}

// PolicyResult is the outcome of one policy of an add request.
type PolicyResult struct {
	Index int    `json:"index"`
	Name  string `json:"name,omitempty"`
	// ID is the new policy's ID; 0 if it was not added.
	ID    uint32 `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	Err   error  `json:"-"`
}

// PolicyInfo describes an installed policy.
type PolicyInfo struct {
	ID      uint32            `json:"id"`
	Origin  string            `json:"origin"`
	Created time.Time         `json:"created"`
	Spec    saspec.PolicySpec `json:"spec"`
	// Bundles are the handles the spec's bundle references resolve to now.
	Bundles []sa.Handle `json:"bundles,omitempty"`
	// Complete is false when a linked bundle is missing: an outbound
	// protect policy then drops its traffic (XfrmOutNoStates).
	Complete bool `json:"complete"`
}

// AddPolicy installs one policy and returns its ID.
func (t *Table) AddPolicy(spec saspec.PolicySpec) (uint32, error) {
	res, err := t.AddPolicies([]saspec.PolicySpec{spec})
	if err != nil {
		return 0, err
	}
	return res[0].ID, nil
}

// AddPolicies installs several policies in one change. Like AddBundles, it
// succeeds if any policy was added; the results report each one.
func (t *Table) AddPolicies(specs []saspec.PolicySpec) ([]PolicyResult, error) {
	if len(specs) == 0 {
		return nil, saspec.Invalidf("policies", "the request has no policies; give at least one")
	}
	res := make([]PolicyResult, len(specs))
	plans := make([]*saspec.PolicyPlan, len(specs))
	for i, s := range specs {
		res[i] = PolicyResult{Index: i, Name: s.Name}
		p, err := s.Plan()
		if err != nil {
			res[i].Err = err
			continue
		}
		plans[i] = p
	}
	t.mu.Lock()
	x := t.begin()
	ok := 0
	for i, p := range plans {
		if p == nil {
			continue
		}
		id, err := t.addPolicyLocked(x, p, OriginAPI, 0)
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i].ID = id
		ok++
	}
	if ok > 0 {
		_ = x.commit()
	}
	t.mu.Unlock()
	errs := make([]*error, len(res))
	for i := range res {
		errs[i] = &res[i].Err
	}
	_, err := batchOutcome(errs, ok, "policies", "no policy was added")
	for i := range res {
		if e := res[i].Err; e != nil {
			res[i].Error, res[i].Code = e.Error(), saspec.ErrorCode(e)
		}
	}
	return res, err
}

// refLocked finds the bundle a policy reference names.
func (t *Table) refLocked(r saspec.Ref) *bundleEntry {
	s := string(r)
	if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return t.bundles[sa.Handle(n)]
	}
	if h, ok := t.names[s]; ok {
		return t.bundles[h]
	}
	return nil
}

func refKey(r saspec.Ref) string {
	s := string(r)
	if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return "h:" + strconv.FormatUint(n, 10)
	}
	return "n:" + s
}

func selectorFamily(s saspec.Selector) uint8 {
	if s.Src.IsValid() {
		return famOf(s.Src.Addr())
	}
	if s.Dst.IsValid() {
		return famOf(s.Dst.Addr())
	}
	return 0
}

// addPolicyLocked validates pp against the table and installs it. id 0
// means the spec's ID, or a new one.
func (t *Table) addPolicyLocked(x *tx, pp *saspec.PolicyPlan, origin string, id uint32) (uint32, error) {
	s := &pp.Spec
	if id == 0 {
		id = s.ID
	}
	if id != 0 {
		if _, dup := t.policies[id]; dup {
			return 0, &saspec.Error{Kind: saspec.ErrConflict, Field: "id", Msg: fmt.Sprintf("policy ID %d is already in use; choose another ID or leave it out", id)}
		}
	}
	if s.Name != "" {
		if other, dup := t.polNames[s.Name]; dup && other != id {
			return 0, &saspec.Error{Kind: saspec.ErrConflict, Field: "name", Msg: fmt.Sprintf("policy name %q is already used by policy %d; choose another name or delete that policy first", s.Name, other)}
		}
	}
	var linked []*bundleEntry
	for i, r := range s.Bundles {
		f := fmt.Sprintf("bundles[%d]", i)
		be := t.refLocked(r)
		if be == nil {
			return 0, &saspec.Error{Kind: saspec.ErrNotFound, Field: f, Msg: fmt.Sprintf("no bundle has the name or handle %q; add the bundle first (see `secnic sa list`)", r)}
		}
		if be.b.Dir != pp.Dir {
			return 0, saspec.Invalidf(f, "bundle %q is %s but the policy is %s; link bundles of the policy's direction", r, be.b.Dir, pp.Dir)
		}
		linked = append(linked, be)
	}
	if pp.Dir == sa.Out && len(linked) == 2 && !s.PerCPU {
		if linked[0].b.Mode != sa.Transport || linked[1].b.Mode != sa.Tunnel {
			return 0, saspec.Invalidf("bundles", "two outbound bundles mean transport over tunnel: give the transport-mode bundle first, then the tunnel-mode bundle")
		}
		hw, cur := t.caps.Snapshot()
		if !hw.TransportTunnelCombined {
			return 0, &saspec.Error{Kind: capabilities.ErrNotSupported, Field: "bundles", Msg: "transport over tunnel (TransportTunnelCombined) is not in the hardware capabilities of this profile"}
		}
		if !cur.TransportTunnelCombined {
			return 0, &saspec.Error{Kind: capabilities.ErrDisabled, Field: "bundles", Msg: "transport over tunnel is disabled in the current configuration: switch on the feature transport_tunnel_combined"}
		}
	}
	if fam := selectorFamily(pp.Sel); fam != 0 {
		for i, be := range linked {
			if be.b.Mode == sa.Transport && be.b.IPv6 != (fam == 6) {
				return 0, saspec.Invalidf(fmt.Sprintf("bundles[%d]", i), "transport-mode bundle %q is %s but the selector is IPv%d; a transport-mode SA protects packets of its own family", s.Bundles[i], famName(be.b.IPv6), fam)
			}
		}
	}
	if id == 0 {
		for {
			t.nextPolicy++
			if t.nextPolicy == 0 {
				t.nextPolicy = 1
			}
			if _, used := t.policies[t.nextPolicy]; !used {
				break
			}
		}
		id = t.nextPolicy
	}
	s.ID = id
	pe := &polEntry{
		p:       Policy{ID: id, Name: s.Name, Dir: pp.Dir, Priority: s.Priority, Sel: pp.Sel, Action: pp.Action, PerCPU: s.PerCPU},
		spec:    *s,
		origin:  origin,
		created: time.Now(),
	}
	pe.acq = t.newAcquireState(&pe.p)
	t.insertPolicyLocked(x, pe)
	x.events = append(x.events, Event{Type: EventPolicyAdded, PolicyID: id, PolicyName: s.Name, Dir: pp.Dir.String()})
	return id, nil
}

func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func (t *Table) insertPolicyLocked(x *tx, pe *polEntry) {
	x.onUndo(func() { t.removePolicyLocked(x, pe) })
	d := dirIndex(pe.p.Dir)
	desc := shapeOf(pe.p.Sel)
	st := t.shapes[d][desc]
	if st == nil {
		t.nextShape++
		st = &shapeState{id: t.nextShape, desc: desc, prios: map[int]int{}}
		t.shapes[d][desc] = st
	}
	st.n++
	st.prios[pe.p.Priority]++
	x.shapes[d] = true
	pe.key = keyOf(st.id, pe.p.Sel)
	pe.res = t.resolveLocked(pe)
	list := t.byKey[pe.key]
	i, _ := slices.BinarySearchFunc(list, pe, func(a, b *polEntry) int {
		if better(&a.p, &b.p) {
			return -1
		}
		return 1
	})
	list = slices.Insert(list, i, pe)
	t.byKey[pe.key] = list
	if list[0] == pe {
		x.pol[d].Set(pe.key.hash(), pe.key, pe.res)
	}
	t.policies[pe.p.ID] = pe
	if pe.p.Name != "" {
		t.polNames[pe.p.Name] = pe.p.ID
	}
	for _, r := range pe.spec.Bundles {
		k := refKey(r)
		m := t.refs[k]
		if m == nil {
			m = map[uint32]struct{}{}
			t.refs[k] = m
		}
		m[pe.p.ID] = struct{}{}
	}
}

func (t *Table) removePolicyLocked(x *tx, pe *polEntry) {
	x.onUndo(func() { t.insertPolicyLocked(x, pe) })
	d := dirIndex(pe.p.Dir)
	desc := shapeOf(pe.p.Sel)
	if st := t.shapes[d][desc]; st != nil {
		st.n--
		if st.prios[pe.p.Priority]--; st.prios[pe.p.Priority] <= 0 {
			delete(st.prios, pe.p.Priority)
		}
		if st.n <= 0 {
			delete(t.shapes[d], desc)
		}
		x.shapes[d] = true
	}
	list := t.byKey[pe.key]
	wasHead := len(list) > 0 && list[0] == pe
	list = slices.DeleteFunc(list, func(e *polEntry) bool { return e == pe })
	if len(list) == 0 {
		delete(t.byKey, pe.key)
		x.pol[d].Del(pe.key.hash(), pe.key)
	} else {
		t.byKey[pe.key] = list
		if wasHead {
			x.pol[d].Set(pe.key.hash(), pe.key, list[0].res)
		}
	}
	delete(t.policies, pe.p.ID)
	if pe.p.Name != "" && t.polNames[pe.p.Name] == pe.p.ID {
		delete(t.polNames, pe.p.Name)
	}
	for _, r := range pe.spec.Bundles {
		k := refKey(r)
		if m := t.refs[k]; m != nil {
			delete(m, pe.p.ID)
			if len(m) == 0 {
				delete(t.refs, k)
			}
		}
	}
}

// resolveLocked builds the immutable lookup result of a policy from the
// bundles its references name now.
func (t *Table) resolveLocked(pe *polEntry) *Resolved {
	p := pe.p
	res := &Resolved{Action: p.Action, PerCPU: p.PerCPU}
	if p.Action == saspec.Protect {
		complete := true
		var hs []sa.Handle
		var bs []*sa.Bundle
		for _, r := range pe.spec.Bundles {
			be := t.refLocked(r)
			if be == nil || be.b.Dir != p.Dir {
				complete = false
				continue
			}
			hs = append(hs, be.b.Handle)
			bs = append(bs, be.b)
		}
		if p.Dir == sa.Out && !complete && !p.PerCPU {
			bs = nil
		}
		p.Bundles = hs
		res.Bundles = bs
	}
	pe.p.Bundles = p.Bundles
	res.Policy = &p
	if res.acq = pe.acq; res.acq != nil && len(res.Bundles) > 0 {
		// The SAs arrived: the next miss raises an acquire at once.
		res.acq.last.Store(0)
	}
	return res
}

// rebindLocked re-resolves the policies that refer to handle h or name.
func (t *Table) rebindLocked(x *tx, h sa.Handle, name string) {
	keys := []string{"h:" + strconv.FormatUint(uint64(h), 10)}
	if name != "" {
		keys = append(keys, "n:"+name)
	}
	for _, k := range keys {
		for id := range t.refs[k] {
			pe := t.policies[id]
			if pe == nil {
				continue
			}
			pe.res = t.resolveLocked(pe)
			if list := t.byKey[pe.key]; len(list) > 0 && list[0] == pe {
				x.pol[dirIndex(pe.p.Dir)].Set(pe.key.hash(), pe.key, pe.res)
			}
		}
	}
}

// ResolvePolicy finds a policy by ID or name.
func (t *Table) ResolvePolicy(ref string) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, err := t.policyLocked(ref)
	if err != nil {
		return 0, err
	}
	return pe.p.ID, nil
}

func (t *Table) policyLocked(ref string) (*polEntry, error) {
	r := strings.TrimSpace(ref)
	if r == "" {
		return nil, saspec.Invalidf("", "no policy given: give a policy ID or name")
	}
	if n, err := strconv.ParseUint(r, 0, 32); err == nil {
		if pe := t.policies[uint32(n)]; pe != nil {
			return pe, nil
		}
		return nil, &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no policy has ID %d (list them with `secnic policy list`)", n)}
	}
	if id, ok := t.polNames[r]; ok {
		return t.policies[id], nil
	}
	return nil, &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no policy is named %q (list them with `secnic policy list`)", r)}
}

// DeletePolicy deletes the policy with the given ID or name.
func (t *Table) DeletePolicy(ref string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, err := t.policyLocked(ref)
	if err != nil {
		return err
	}
	x := t.begin()
	t.deletePolicyLocked(x, pe)
	_ = x.commit()
	return nil
}

func (t *Table) deletePolicyLocked(x *tx, pe *polEntry) {
	t.removePolicyLocked(x, pe)
	x.events = append(x.events, Event{Type: EventPolicyDeleted, PolicyID: pe.p.ID, PolicyName: pe.p.Name, Dir: pe.p.Dir.String()})
}

func (pe *polEntry) info() PolicyInfo {
	complete := pe.p.Action != saspec.Protect || len(pe.p.Bundles) == len(pe.spec.Bundles)
	return PolicyInfo{ID: pe.p.ID, Origin: pe.origin, Created: pe.created, Spec: pe.spec.Clone(),
		Bundles: append([]sa.Handle(nil), pe.p.Bundles...), Complete: complete}
}

// Policies lists the policies: inbound first, then outbound, each by
// priority and ID (the order in which they win).
func (t *Table) Policies() []PolicyInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	es := make([]*polEntry, 0, len(t.policies))
	for _, pe := range t.policies {
		es = append(es, pe)
	}
	slices.SortFunc(es, func(a, b *polEntry) int {
		if a.p.Dir != b.p.Dir {
			return int(a.p.Dir) - int(b.p.Dir)
		}
		if better(&a.p, &b.p) {
			return -1
		}
		return 1
	})
	out := make([]PolicyInfo, len(es))
	for i, pe := range es {
		out[i] = pe.info()
	}
	return out
}

// Policy returns the installed policy with the given ID or name.
func (t *Table) Policy(ref string) (PolicyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, err := t.policyLocked(ref)
	if err != nil {
		return PolicyInfo{}, err
	}
	return pe.info(), nil
}
