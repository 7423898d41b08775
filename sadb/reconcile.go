package sadb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// State is the declarative form of SA bundles and policies: the "sas" and
// "policies" sections of the configuration file. In State every bundle and
// every policy needs a name, which identifies it across reloads.
type State struct {
	SAs      []BundleSpec `json:"sas,omitempty"`
	Policies []PolicySpec `json:"policies,omitempty"`
}

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
func (t *Table) Reconcile(want State) (ReconcileSummary, error) {
	var sum ReconcileSummary
	fail := func(kind, name string, err error) {
		sum.Failed = append(sum.Failed, ReconcileFailure{Kind: kind, Name: name, Error: err.Error(), Code: ErrorCode(err)})
	}

	bplans := map[string]*bundlePlan{}
	var border []string
	for i, s := range want.SAs {
		if s.Name == "" {
			return sum, invalidf(fmt.Sprintf("sas[%d].name", i), "is missing: every bundle in the configuration needs a name, which identifies it across reloads")
		}
		if _, dup := bplans[s.Name]; dup || slices.Contains(border, s.Name) {
			return sum, invalidf(fmt.Sprintf("sas[%d].name", i), "%q is declared twice; bundle names must be unique", s.Name)
		}
		border = append(border, s.Name)
		p, err := s.plan()
		if err != nil {
			fail("sa", s.Name, wrapField(fmt.Sprintf("sas[%d]", i), err))
			continue
		}
		bplans[s.Name] = p
	}
	pplans := map[string]*policyPlan{}
	var porder []string
	for i, s := range want.Policies {
		if s.Name == "" {
			return sum, invalidf(fmt.Sprintf("policies[%d].name", i), "is missing: every policy in the configuration needs a name, which identifies it across reloads")
		}
		if slices.Contains(porder, s.Name) {
			return sum, invalidf(fmt.Sprintf("policies[%d].name", i), "%q is declared twice; policy names must be unique", s.Name)
		}
		porder = append(porder, s.Name)
		p, err := s.plan()
		if err != nil {
			fail("policy", s.Name, wrapField(fmt.Sprintf("policies[%d]", i), err))
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
			fail("sa", name, &Error{Kind: ErrConflict, Field: "name", Msg: fmt.Sprintf("bundle name %q is used by bundle %d, which was added through the API; delete it or rename the configured bundle", name, h)})
			continue
		}
		if reflect.DeepEqual(old.spec, p.spec) {
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
			fail("policy", name, &Error{Kind: ErrConflict, Field: "name", Msg: fmt.Sprintf("policy name %q is used by policy %d, which was added through the API; delete it or rename the configured policy", name, id)})
			continue
		}
		want := p.spec
		if want.ID == 0 {
			want.ID = id
		}
		if reflect.DeepEqual(old.spec, want) {
			sum.Policies.Unchanged = append(sum.Policies.Unchanged, name)
			continue
		}
		t.removePolicyLocked(x, old)
		newID := p.spec.ID
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

// DecodeState reads a State from YAML or JSON (JSON is YAML), rejecting
// unknown fields so that typos are reported.
func DecodeState(data []byte) (State, error) {
	var s State
	if err := strictUnmarshal(data, &s); err != nil {
		return State{}, err
	}
	return s, nil
}

// DecodeBundleSpecs reads bundles from YAML or JSON: one bundle object, a
// list of bundles, or an object {"sas": [...]}. Unknown fields are errors.
func DecodeBundleSpecs(data []byte) ([]BundleSpec, error) {
	return decodeSpecs[BundleSpec](data, "sas", "a bundle object, a list of bundles")
}

// DecodePolicySpecs reads policies from YAML or JSON: one policy, a list,
// or {"policies": [...]}.
func DecodePolicySpecs(data []byte) ([]PolicySpec, error) {
	return decodeSpecs[PolicySpec](data, "policies", "a policy object, a list of policies")
}

// decodeSpecs reads one T, a list of T, or {key: [T...]} from YAML or JSON,
// strictly (unknown fields are errors).
func decodeSpecs[T any](data []byte, key, what string) ([]T, error) {
	js, err := toJSON(data)
	if err != nil {
		return nil, err
	}
	switch firstByte(js) {
	case '[':
		var out []T
		if err := decodeJSONStrict(js, &out); err != nil {
			return nil, err
		}
		return out, nil
	case '{':
		var probe map[string]json.RawMessage
		if err := decodeJSONStrict(js, &probe); err != nil {
			return nil, err
		}
		if raw, ok := probe[key]; ok && len(probe) == 1 {
			var out []T
			if err := decodeJSONStrict(raw, &out); err != nil {
				return nil, err
			}
			return out, nil
		}
		var one T
		if err := decodeJSONStrict(js, &one); err != nil {
			return nil, err
		}
		return []T{one}, nil
	}
	return nil, invalidf("", "expected %s, or {%q: [...]}", what, key)
}

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func toJSON(data []byte) ([]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalidf("", "the input is empty")
	}
	if c := firstByte(data); c == '{' || c == '[' {
		// JSON (JSON-looking YAML is parsed as JSON, for its precise errors).
		return data, nil
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, invalidf("", "not valid YAML or JSON: %v", err)
	}
	return js, nil
}

func strictUnmarshal(data []byte, v any) error {
	js, err := toJSON(data)
	if err != nil {
		return err
	}
	return decodeJSONStrict(js, v)
}

// DecodeJSONStrict decodes one JSON value into v, rejecting unknown fields
// and trailing data, with errors that name the field.
func DecodeJSONStrict(data []byte, v any) error { return decodeJSONStrict(data, v) }

func decodeJSONStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalidf("", "%s", jsonErrorText(err))
	}
	if d.More() {
		return invalidf("", "unexpected data after the JSON value; send one object")
	}
	return nil
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		f := te.Field
		if f == "" {
			f = "value"
		}
		hint := ""
		if te.Type.String() == "string" && (te.Value == "bool" || te.Value == "number") {
			hint = " (in YAML, quote values such as y, no, on or 0x12 that would otherwise be read as booleans or numbers)"
		}
		return fmt.Sprintf("%s: expected %s, got JSON %s%s", f, te.Type.String(), te.Value, hint)
	}
	var se *json.SyntaxError
	if asType(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		msg += " (check the spelling; see docs/config-schema.md)"
	}
	return msg
}

func asType[T error](err error, target *T) bool {
	for err != nil {
		if e, ok := err.(T); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
