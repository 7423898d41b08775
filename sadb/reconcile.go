package sadb

import (
	"fmt"
	"github.com/secnic/secnic/saspec"
	"reflect"
	"slices"
)

// ReconcileFailure is an entry a reconcile could not apply.
type ReconcileFailure struct {
	// Kind is "sa" or "policy".
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Error string `json:"error"`
	Code  string `json:"code"`
}

// ReconcileChanges lists names by what happened to them.
type ReconcileChanges struct {
	Added     []string `json:"added"`
	Replaced  []string `json:"replaced"`
	Deleted   []string `json:"deleted"`
	Unchanged []string `json:"unchanged"`
}

// ReconcileSummary says what a reconcile did.
type ReconcileSummary struct {
	SAs      ReconcileChanges   `json:"sas"`
	Policies ReconcileChanges   `json:"policies"`
	Failed   []ReconcileFailure `json:"failed,omitempty"`
}

// String is a one-line summary.
func (s ReconcileSummary) String() string {
	return fmt.Sprintf("sas: %d added, %d replaced, %d deleted, %d unchanged; policies: %d added, %d replaced, %d deleted, %d unchanged; %d failed",
		len(s.SAs.Added), len(s.SAs.Replaced), len(s.SAs.Deleted), len(s.SAs.Unchanged),
		len(s.Policies.Added), len(s.Policies.Replaced), len(s.Policies.Deleted), len(s.Policies.Unchanged), len(s.Failed))
}

// Reconcile makes the configuration-declared bundles and policies equal to
// want, for a configuration load or a reload on SIGHUP. Entries are matched
// by name: new names are added, names no longer declared are deleted,
// entries whose (normalized) spec changed are replaced (a replaced bundle
// keeps its handle but gets new SAs, so its counters and sequence numbers
// restart), and unchanged entries are not touched at all, so their
// counters, sequence numbers and anti-replay state survive. Bundles and
// policies added through the API are left alone.
//
// An entry that is invalid or refused (capabilities, capacity, SPI clash)
// is reported in Failed; if it already existed, the old version stays.
// Reconcile returns an error only when want itself is unusable (duplicate
// or missing names); the table is then unchanged. The table changes once,
// atomically.
func (t *Table) Reconcile(want saspec.State) (ReconcileSummary, error) {
	var sum ReconcileSummary
	fail := func(kind, name string, err error) {
		sum.Failed = append(sum.Failed, ReconcileFailure{Kind: kind, Name: name, Error: err.Error(), Code: saspec.ErrorCode(err)})
	}

	bplans := map[string]*saspec.BundlePlan{}
	var border []string
	for i, s := range want.SAs {
		if s.Name == "" {
			return sum, saspec.Invalidf(fmt.Sprintf("sas[%d].name", i), "is missing: every bundle in the configuration needs a name, which identifies it across reloads")
		}
		if _, dup := bplans[s.Name]; dup || slices.Contains(border, s.Name) {
			return sum, saspec.Invalidf(fmt.Sprintf("sas[%d].name", i), "%q is declared twice; bundle names must be unique", s.Name)
		}
		border = append(border, s.Name)
		p, err := s.Plan()
		if err != nil {
			fail("sa", s.Name, saspec.WrapField(fmt.Sprintf("sas[%d]", i), err))
			continue
		}
		bplans[s.Name] = p
	}
	pplans := map[string]*saspec.PolicyPlan{}
	var porder []string
	for i, s := range want.Policies {
		if s.Name == "" {
			return sum, saspec.Invalidf(fmt.Sprintf("policies[%d].name", i), "is missing: every policy in the configuration needs a name, which identifies it across reloads")
		}
		if slices.Contains(porder, s.Name) {
			return sum, saspec.Invalidf(fmt.Sprintf("policies[%d].name", i), "%q is declared twice; policy names must be unique", s.Name)
		}
		porder = append(porder, s.Name)
		p, err := s.Plan()
		if err != nil {
			fail("policy", s.Name, saspec.WrapField(fmt.Sprintf("policies[%d]", i), err))
			continue
		}
		pplans[s.Name] = p
	}
	declaredB := map[string]bool{}
	for _, n := range border {
		declaredB[n] = true
	}
	declaredP := map[string]bool{}
	for _, n := range porder {
		declaredP[n] = true
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	x := t.begin()
	x.batch = true // the summary is logged at the end

	// Policies no longer declared.
	for _, pe := range t.sortedPolicies() {
		if pe.origin == OriginConfig && !declaredP[pe.p.Name] {
			t.deletePolicyLocked(x, pe)
			sum.Policies.Deleted = append(sum.Policies.Deleted, pe.p.Name)
		}
	}
	// Bundles no longer declared.
	for _, be := range t.sortedBundles() {
		if be.origin == OriginConfig && !declaredB[be.b.Name] {
			t.deleteLocked(x, be)
			sum.SAs.Deleted = append(sum.SAs.Deleted, be.b.Name)
		}
	}
	// Bundles: add or replace.
	for _, name := range border {
		p := bplans[name]
		if p == nil {
			continue
		}
		h, exists := t.names[name]
		if !exists {
			if _, err := t.addLocked(x, p, OriginConfig, 0); err != nil {
				fail("sa", name, err)
				continue
			}
			sum.SAs.Added = append(sum.SAs.Added, name)
			continue
		}
		old := t.bundles[h]
		if old.origin != OriginConfig {
			fail("sa", name, &saspec.Error{Kind: saspec.ErrConflict, Field: "name", Msg: fmt.Sprintf("bundle name %q is used by bundle %d, which was added through the API; delete it or rename the configured bundle", name, h)})
			continue
		}
		if reflect.DeepEqual(old.spec, p.Spec) {
			sum.SAs.Unchanged = append(sum.SAs.Unchanged, name)
			continue
		}
		t.removeLocked(x, old)
		if _, err := t.addLocked(x, p, OriginConfig, h); err != nil {
			t.insertLocked(x, old) // addLocked queues no event on failure
			fail("sa", name, err)
			continue
		}
		// addLocked queued sa_added; report a replacement instead.
		x.events[len(x.events)-1].Type = EventSAReplaced
		x.closing = append(x.closing, old)
		sum.SAs.Replaced = append(sum.SAs.Replaced, name)
	}
	// Policies: add or replace.
	for _, name := range porder {
		p := pplans[name]
		if p == nil {
			continue
		}
		id, exists := t.polNames[name]
		if !exists {
			if _, err := t.addPolicyLocked(x, p, OriginConfig, 0); err != nil {
				fail("policy", name, err)
				continue
			}
			sum.Policies.Added = append(sum.Policies.Added, name)
			continue
		}
		old := t.policies[id]
		if old.origin != OriginConfig {
			fail("policy", name, &saspec.Error{Kind: saspec.ErrConflict, Field: "name", Msg: fmt.Sprintf("policy name %q is used by policy %d, which was added through the API; delete it or rename the configured policy", name, id)})
			continue
		}
		want := p.Spec
		if want.ID == 0 {
			want.ID = id
		}
		if reflect.DeepEqual(old.spec, want) {
			sum.Policies.Unchanged = append(sum.Policies.Unchanged, name)
			continue
		}
		t.removePolicyLocked(x, old)
		newID := p.Spec.ID
		if newID == 0 {
			newID = id
		}
		if _, err := t.addPolicyLocked(x, p, OriginConfig, newID); err != nil {
			t.insertPolicyLocked(x, old)
			fail("policy", name, err)
			continue
		}
		x.events[len(x.events)-1].Type = EventPolicyReplaced
		sum.Policies.Replaced = append(sum.Policies.Replaced, name)
	}
	x.events = append(x.events, Event{Type: EventReconciled, Summary: &sum})
	if err := x.commit(); err != nil {
		return ReconcileSummary{}, err
	}
	t.log.Info("configuration reconciled", "summary", sum.String())
	return sum, nil
}

func (t *Table) sortedBundles() []*bundleEntry {
	out := make([]*bundleEntry, 0, len(t.bundles))
	for _, be := range t.bundles {
		out = append(out, be)
	}
	slices.SortFunc(out, func(a, b *bundleEntry) int { return cmpHandle(a.b.Handle, b.b.Handle) })
	return out
}

func (t *Table) sortedPolicies() []*polEntry {
	out := make([]*polEntry, 0, len(t.policies))
	for _, pe := range t.policies {
		out = append(out, pe)
	}
	slices.SortFunc(out, func(a, b *polEntry) int { return int(a.p.ID) - int(b.p.ID) })
	return out
}
