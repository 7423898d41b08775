package sadb

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

func TestReconcile(t *testing.T) {
	tb := newTable(t, "full")
	sub := tb.Subscribe(128)
	defer sub.Close()
	keep := cbcSpec("keep", "out", 0x1000)
	change := cbcSpec("change", "out", 0x1001)
	gone := cbcSpec("gone", "out", 0x1002)
	api := cbcSpec("api", "out", 0x1003)
	pol := saspec.PolicySpec{Name: "web", Dir: "out", Dst: "10.0.0.0/8", Bundles: []saspec.Ref{"keep"}}
	polGone := saspec.PolicySpec{Name: "old", Dir: "out", Dst: "10.9.0.0/16", Action: "bypass"}
	sum, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{keep, change, gone}, Policies: []saspec.PolicySpec{pol, polGone}})
	if err != nil || len(sum.SAs.Added) != 3 || len(sum.Policies.Added) != 2 || len(sum.Failed) != 0 {
		t.Fatalf("first load: %+v, %v", sum, err)
	}
	hAPI := mustAdd(t, tb, api)
	hKeep, _ := tb.Resolve("keep")
	hChange, _ := tb.Resolve("change")
	polID, _ := tb.ResolvePolicy("web")

	// Traffic on the unchanged SA: its counters and sequence number must survive.
	kept := tb.Snapshot().Bundle(hKeep).ESP
	for range 3 {
		if _, err := kept.NextSeq(); err != nil {
			t.Fatal(err)
		}
		kept.Account(100)
	}
	oldChange := tb.Snapshot().Bundle(hChange).ESP
	drain(sub)

	// Reload: keep unchanged (spelled differently), change one key, drop
	// one bundle and one policy, add a bundle and change the policy.
	keep2 := keep.Clone()
	keep2.Dir = "OUT"
	keep2.Mode = "transport"
	change2 := change.Clone()
	change2.ESP.EncKey = testKey(16, 0x77)
	added := cbcSpec("added", "out", 0x1004)
	pol2 := pol
	pol2.Priority = 5
	sum, err = tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{keep2, change2, added}, Policies: []saspec.PolicySpec{pol2}})
	if err != nil {
		t.Fatal(err)
	}
	want := ReconcileSummary{
		SAs:      ReconcileChanges{Added: []string{"added"}, Replaced: []string{"change"}, Deleted: []string{"gone"}, Unchanged: []string{"keep"}},
		Policies: ReconcileChanges{Replaced: []string{"web"}, Deleted: []string{"old"}},
	}
	if sum.String() != want.String() || !slices.Equal(sum.SAs.Replaced, want.SAs.Replaced) || !slices.Equal(sum.SAs.Deleted, want.SAs.Deleted) {
		t.Fatalf("summary = %+v\nwant      %+v", sum, want)
	}
	snap := tb.Snapshot()
	if b := snap.Bundle(hKeep); b == nil || b.ESP != kept || kept.LastSeq() != 3 || kept.Stats.Packets.Load() != 3 {
		t.Errorf("unchanged bundle was touched: same SA %v, seq %d, packets %d", b != nil && b.ESP == kept, kept.LastSeq(), kept.Stats.Packets.Load())
	}
	if b := snap.Bundle(hChange); b == nil || b.ESP == oldChange || !oldChange.Suite.Closed() {
		t.Error("changed bundle was not replaced under its handle, or the old keys were not destroyed")
	}
	if snap.Bundle(hAPI) == nil {
		t.Error("reconcile deleted a bundle added through the API")
	}
	if _, err := tb.Resolve("gone"); saspec.ErrorCode(err) != "not_found" {
		t.Error("bundle removed from the configuration is still there")
	}
	if id, _ := tb.ResolvePolicy("web"); id != polID {
		t.Errorf("replaced policy changed ID %d -> %d", polID, id)
	}
	if info, _ := tb.Policy("web"); info.Spec.Priority != 5 {
		t.Errorf("policy not replaced: %+v", info.Spec)
	}
	r := snap.MatchOut(sa.Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.1.1.1")})
	if r == nil || len(r.Bundles) != 1 || r.Bundles[0].ESP != kept {
		t.Errorf("policy after reconcile resolves to %+v", r)
	}
	evs := types(drain(sub))
	for _, w := range []EventType{EventSADeleted, EventSAReplaced, EventSAAdded, EventPolicyDeleted, EventPolicyReplaced, EventReconciled} {
		if !slices.Contains(evs, w) {
			t.Errorf("events %v lack %s", evs, w)
		}
	}

	// Same config again: nothing changes, nothing is emitted but the summary.
	gen := tb.Snapshot().Gen()
	sum, err = tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{keep2, change2, added}, Policies: []saspec.PolicySpec{pol2}})
	if err != nil || len(sum.SAs.Unchanged) != 3 || len(sum.Policies.Unchanged) != 1 || len(sum.SAs.Replaced)+len(sum.SAs.Added) != 0 {
		t.Errorf("idempotent reload: %+v, %v", sum, err)
	}
	if evs := types(drain(sub)); !slices.Equal(evs, []EventType{EventReconciled}) {
		t.Errorf("idempotent reload emitted %v", evs)
	}
	if tb.Snapshot().Bundle(hKeep).ESP != kept || tb.Snapshot().Gen() != gen+1 {
		t.Error("idempotent reload touched a bundle")
	}
}

func TestReconcileFailures(t *testing.T) {
	tb := newTable(t, "netdevsim")
	good := gcmSpec("good", 0x1000, "192.0.2.2")
	if _, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{good}}); err != nil {
		t.Fatal(err)
	}
	h, _ := tb.Resolve("good")
	old := tb.Snapshot().Bundle(h).ESP

	// A broken new version keeps the old one; an unsupported new bundle fails alone.
	broken := good.Clone()
	broken.ESP.EncKey = testKey(5, 0)
	cbc := cbcSpec("cbc", "in", 0x2000)
	fresh := gcmSpec("fresh", 0x3000, "192.0.2.2")
	sum, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{broken, cbc, fresh}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Failed) != 2 || len(sum.SAs.Added) != 1 {
		t.Fatalf("summary = %+v", sum)
	}
	codes := map[string]string{}
	for _, f := range sum.Failed {
		codes[f.Name] = f.Code
	}
	if codes["good"] != "invalid" || codes["cbc"] != "not_supported" {
		t.Errorf("failures = %+v", sum.Failed)
	}
	if b := tb.Snapshot().Bundle(h); b == nil || b.ESP != old || old.Suite.Closed() {
		t.Error("a failed replacement did not keep the old bundle intact")
	}

	// Unusable input changes nothing.
	gen := tb.Snapshot().Gen()
	for name, st := range map[string]saspec.State{
		"missing name":     {SAs: []saspec.BundleSpec{gcmSpec("", 0x5000, "")}},
		"duplicate name":   {SAs: []saspec.BundleSpec{good, good}},
		"unnamed policy":   {Policies: []saspec.PolicySpec{{Dir: "out", Action: "bypass"}}},
		"duplicate policy": {Policies: []saspec.PolicySpec{{Name: "p", Dir: "out", Action: "bypass"}, {Name: "p", Dir: "in", Action: "bypass"}}},
	} {
		if _, err := tb.Reconcile(st); saspec.ErrorCode(err) != "invalid" {
			t.Errorf("%s: %v", name, err)
		}
	}
	if tb.Snapshot().Gen() != gen {
		t.Error("rejected configuration changed the table")
	}

	// A configured name taken by an API bundle is reported, not stolen.
	mustAdd(t, tb, gcmSpec("taken", 0x6000, "192.0.2.2"))
	sum, _ = tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{good, gcmSpec("taken", 0x6001, "192.0.2.2")}})
	if len(sum.Failed) != 1 || sum.Failed[0].Code != "conflict" {
		t.Errorf("name clash with API bundle: %+v", sum)
	}
}

func TestDecodeState(t *testing.T) {
	yml := `
sas:
  - name: web-out
    dir: out
    mode: tunnel
    src: 198.51.100.1
    dst: 198.51.100.2
    esp:
      spi: 0x1000
      enc: aes-gcm-256
      enc_key: "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
    lifetime:
      soft: {seconds: 3000}
      hard: {seconds: 3600}
policies:
  - name: web
    dir: out
    dst: 10.0.0.0/8
    proto: tcp
    dst_port: 443
    bundles: [web-out]
`
	st, err := saspec.DecodeState([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.SAs) != 1 || st.SAs[0].ESP.EncKey.Len() != 36 || st.Policies[0].Bundles[0] != "web-out" {
		t.Fatalf("decoded %+v", st)
	}
	tb := newTable(t, "full")
	sum, err := tb.Reconcile(st)
	if err != nil || len(sum.Failed) != 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	if _, err := saspec.DecodeState([]byte("sas:\n  - name: x\n    dirr: in\n")); err == nil {
		t.Error("typo in a field name accepted")
	}
}

// TestReconcileKeepsSequenceUnderSameKeys: a replaced outbound bundle whose
// keys did not change goes on from the old sequence number (counter-mode
// IVs are the sequence number; restarting would repeat nonces), while one
// with new keys starts afresh.
func TestReconcileKeepsSequenceUnderSameKeys(t *testing.T) {
	tb := newTable(t, "full")
	same := cbcSpec("same", "out", 0x2000)
	rekeyed := cbcSpec("rekeyed", "out", 0x2001)
	if _, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{same, rekeyed}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"same", "rekeyed"} {
		h, _ := tb.Resolve(name)
		s := tb.Snapshot().Bundle(h).ESP
		for range 5 {
			if _, err := s.NextSeq(); err != nil {
				t.Fatal(err)
			}
		}
	}
	same2 := same.Clone()
	same2.Lifetime.Hard.Packets = 1 << 40 // a change that replaces the bundle but keeps its keys
	rekeyed2 := rekeyed.Clone()
	rekeyed2.ESP.EncKey = testKey(16, 0x5a)
	sum, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{same2, rekeyed2}})
	if err != nil || len(sum.SAs.Replaced) != 2 {
		t.Fatalf("reload: %+v (failed: %+v), %v", sum, sum.Failed, err)
	}
	hs, _ := tb.Resolve("same")
	hr, _ := tb.Resolve("rekeyed")
	if got := tb.Snapshot().Bundle(hs).ESP.LastSeq(); got != 5 {
		t.Errorf("same keys: sequence restarted at %d, want it to go on from 5", got)
	}
	if got := tb.Snapshot().Bundle(hr).ESP.LastSeq(); got != 0 {
		t.Errorf("new keys: sequence %d, want a fresh start", got)
	}
}
