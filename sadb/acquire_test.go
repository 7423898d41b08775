package sadb

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// acquireTable returns a started table with the outbound tunnel bundle
// "out" (ESP, 192.0.2.1 → 192.0.2.2) and the protect policy "p" from
// 10.1.0.0/16 to 10.2.0.0/16 over it, and a subscription to its events.
func acquireTable(t *testing.T, period time.Duration, life saspec.LifetimeSpec) (*Table, *Subscription) {
	t.Helper()
	tb, err := NewTable(TableConfig{Caps: newManager(t, "full"), Logger: quietLogger(), AcquirePeriod: period})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	b := cbcSpec("out", "out", 0x1000)
	b.Mode = "tunnel"
	b.Lifetime = life
	mustAdd(t, tb, b)
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "p", Dir: "out", Src: "10.1.0.0/16", Dst: "10.2.0.0/16", Proto: "udp", Bundles: []saspec.Ref{"out"}}); err != nil {
		t.Fatal(err)
	}
	sub := tb.Subscribe(64)
	t.Cleanup(sub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tb.Start(ctx)
	return tb, sub
}

var acqFlow = sa.Flow{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.7"), Proto: 17, SrcPort: 4000, DstPort: 53}

// nextAcquire waits for the next acquire event, skipping others.
func nextAcquire(t *testing.T, sub *Subscription) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Type == EventAcquire {
				return e
			}
		case <-deadline:
			t.Fatal("no acquire event within 10s")
		}
	}
}

// noAcquire fails if an acquire event is waiting once the queue to the
// event goroutine is empty.
func noAcquire(t *testing.T, tb *Table, sub *Subscription) {
	t.Helper()
	for len(tb.acq.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the goroutine finish emitting
	for _, e := range drain(sub) {
		if e.Type == EventAcquire {
			t.Fatalf("unexpected acquire event %+v", *e.Acquire)
		}
	}
}

// expirePeriod moves the policy's last acquire back by one period, as if
// the period had passed.
func expirePeriod(tb *Table, r *Resolved) { r.acq.last.Add(-tb.acq.period) }

func TestAcquireNoState(t *testing.T) {
	tb, sub := acquireTable(t, 0, saspec.LifetimeSpec{})
	h, err := tb.Resolve("out")
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	r := tb.Snapshot().MatchOut(acqFlow)
	if r == nil || r.Action != saspec.Protect || len(r.Bundles) != 0 {
		t.Fatalf("after deleting the bundle the policy resolves to %+v, want protect without bundles", r)
	}
	r.Acquire(acqFlow, sa.OutNoStates)
	e := nextAcquire(t, sub)
	a := e.Acquire
	if e.PolicyName != "p" || e.PolicyID == 0 || e.Dir != "out" {
		t.Errorf("event names policy %d %q %s, want p out", e.PolicyID, e.PolicyName, e.Dir)
	}
	want := AcquireFlow{Src: acqFlow.Src, Dst: acqFlow.Dst, Proto: 17, SrcPort: 4000, DstPort: 53}
	if a.Flow != want {
		t.Errorf("flow %+v, want %+v", a.Flow, want)
	}
	if a.Seq != 1 || a.Reason != AcquireNoState || a.Suppressed != 0 {
		t.Errorf("seq %d reason %q suppressed %d, want 1 no_state 0", a.Seq, a.Reason, a.Suppressed)
	}
	if (a.Selector != AcquireSelector{Src: "10.1.0.0/16", Dst: "10.2.0.0/16", Proto: "udp"}) {
		t.Errorf("selector %+v", a.Selector)
	}
	if len(a.Templates) != 1 || a.Templates[0].Ref != "out" || !a.Templates[0].Missing {
		t.Errorf("templates %+v, want the missing bundle out", a.Templates)
	}
	// The JSON form the API streams.
	js, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"type":"acquire"`, `"policy_name":"p"`, `"flow":{"src":"10.1.0.5","dst":"10.2.0.7","proto":17,"src_port":4000,"dst_port":53}`,
		`"templates":[{"ref":"out","missing":true}]`, `"reason":"no_state"`} {
		if !strings.Contains(string(js), s) {
			t.Errorf("JSON %s lacks %s", js, s)
		}
	}
	if st := tb.AcquireStats(); st.Events != 1 || st.Suppressed != 0 || st.Lost != 0 {
		t.Errorf("stats %+v, want 1 event", st)
	}

	// Adding the bundle back completes the policy; deleting it again
	// raises an acquire at once, within the period of the first.
	h2 := mustAdd(t, tb, func() saspec.BundleSpec { b := cbcSpec("out", "out", 0x1001); b.Mode = "tunnel"; return b }())
	if r := tb.Snapshot().MatchOut(acqFlow); len(r.Bundles) != 1 {
		t.Fatalf("policy not complete after the bundle came back: %+v", r)
	}
	if err := tb.Delete(h2); err != nil {
		t.Fatal(err)
	}
	tb.Snapshot().MatchOut(acqFlow).Acquire(acqFlow, sa.OutNoStates)
	if a := nextAcquire(t, sub).Acquire; a.Seq != 2 {
		t.Errorf("second acquire has seq %d, want 2", a.Seq)
	}
}

func TestAcquireRateLimit(t *testing.T) {
	tb, sub := acquireTable(t, time.Hour, saspec.LifetimeSpec{})
	h, _ := tb.Resolve("out")
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	r := tb.Snapshot().MatchOut(acqFlow)
	for range 1000 {
		r.Acquire(acqFlow, sa.OutNoStates)
	}
	if a := nextAcquire(t, sub).Acquire; a.Seq != 1 || a.Suppressed != 0 {
		t.Errorf("first acquire: seq %d suppressed %d, want 1 and 0", a.Seq, a.Suppressed)
	}
	noAcquire(t, tb, sub)
	if st := tb.AcquireStats(); st.Events != 1 || st.Suppressed != 999 {
		t.Errorf("after 1000 packets in one period: %+v, want 1 event and 999 suppressed", st)
	}
	// Other drop reasons are not about missing SAs.
	r.Acquire(acqFlow, sa.OutPolBlock)
	if st := tb.AcquireStats(); st.Suppressed != 999 {
		t.Errorf("OutPolBlock counted as a suppressed acquire: %+v", st)
	}

	expirePeriod(tb, r)
	r.Acquire(acqFlow, sa.OutNoStates)
	a := nextAcquire(t, sub).Acquire
	if a.Seq != 2 || a.Suppressed != 999 {
		t.Errorf("acquire after the period: seq %d suppressed %d, want 2 and 999", a.Seq, a.Suppressed)
	}
	r.Acquire(acqFlow, sa.OutNoStates)
	noAcquire(t, tb, sub)
	if st := tb.AcquireStats(); st.Events != 2 || st.Suppressed != 1000 || st.Lost != 0 {
		t.Errorf("stats %+v, want 2 events, 1000 suppressed", st)
	}
}

func TestAcquireExpired(t *testing.T) {
	tb, sub := acquireTable(t, 0, saspec.LifetimeSpec{Hard: saspec.LimitSpec{Seconds: 60}})
	r := tb.Snapshot().MatchOut(acqFlow)
	if r == nil || len(r.Bundles) != 1 {
		t.Fatalf("policy resolves to %+v", r)
	}
	// A complete policy with a working SA raises nothing for other reasons.
	r.Acquire(acqFlow, sa.OutError)
	tb.CheckLifetimes(time.Now().Add(2 * time.Minute))
	s := r.Bundles[0].ESP
	if !s.Expired() {
		t.Fatal("SA not expired after its hard lifetime")
	}
	r.Acquire(acqFlow, sa.OutStateExpired)
	e := nextAcquire(t, sub)
	a := e.Acquire
	if a.Reason != AcquireExpired || a.Seq != 1 {
		t.Errorf("reason %q seq %d, want expired 1", a.Reason, a.Seq)
	}
	if len(a.Templates) != 1 {
		t.Fatalf("templates %+v", a.Templates)
	}
	tm := a.Templates[0]
	wantTm := AcquireTemplate{Ref: "out", Handle: r.Bundles[0].Handle, Protos: []string{"esp"}, Mode: "tunnel",
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Expired: []string{"esp/0x00001000"}}
	if tm.Ref != wantTm.Ref || tm.Handle != wantTm.Handle || strings.Join(tm.Protos, ",") != "esp" || tm.Mode != wantTm.Mode ||
		tm.Src != wantTm.Src || tm.Dst != wantTm.Dst || strings.Join(tm.Expired, ",") != "esp/0x00001000" || tm.Missing {
		t.Errorf("template %+v, want %+v", tm, wantTm)
	}
	if st := tb.AcquireStats(); st.Events != 1 {
		t.Errorf("stats %+v, want 1 event (OutError raised none)", st)
	}
}

func TestAcquireOff(t *testing.T) {
	tb, sub := acquireTable(t, -1, saspec.LifetimeSpec{})
	h, _ := tb.Resolve("out")
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	tb.Snapshot().MatchOut(acqFlow).Acquire(acqFlow, sa.OutNoStates)
	time.Sleep(20 * time.Millisecond)
	for _, e := range drain(sub) {
		if e.Type == EventAcquire {
			t.Fatal("acquire event with acquires turned off")
		}
	}
	if st := tb.AcquireStats(); st != (AcquireStats{}) {
		t.Errorf("stats %+v with acquires off", st)
	}
}

// An inbound protect policy never raises an acquire (nothing to ask for:
// the peer sends).
func TestAcquireInboundNone(t *testing.T) {
	tb := newTable(t, "full")
	mustAdd(t, tb, gcmSpec("in", 0x2000, "192.0.2.2"))
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "in", Dir: "in", Bundles: []saspec.Ref{"in"}}); err != nil {
		t.Fatal(err)
	}
	r := tb.Snapshot().MatchIn(acqFlow)
	if r == nil || r.acq != nil {
		t.Fatalf("inbound policy %+v has an acquire state", r)
	}
	r.Acquire(acqFlow, sa.OutNoStates)
	if st := tb.AcquireStats(); st != (AcquireStats{}) {
		t.Errorf("stats %+v after an inbound policy's Acquire", st)
	}
}

// BenchmarkAcquireSuppressed is the cost of a dropped packet whose policy
// raised its acquire already: it must not allocate.
func BenchmarkAcquireSuppressed(b *testing.B) {
	tb, err := NewTable(TableConfig{Caps: newManager(b, "full"), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	bs := cbcSpec("out", "out", 0x1000)
	h := mustAdd(b, tb, bs)
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "p", Dir: "out", Bundles: []saspec.Ref{"out"}}); err != nil {
		b.Fatal(err)
	}
	if err := tb.Delete(h); err != nil {
		b.Fatal(err)
	}
	r := tb.Snapshot().MatchOut(acqFlow)
	r.Acquire(acqFlow, sa.OutNoStates)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Acquire(acqFlow, sa.OutNoStates)
	}
}

func TestAcquireNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	// Not started: the event goroutine (which allocates the event) does
	// not run, and AllocsPerRun counts every goroutine's allocations.
	tb, err := NewTable(TableConfig{Caps: newManager(t, "full"), Logger: quietLogger(), AcquirePeriod: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	h := mustAdd(t, tb, cbcSpec("out", "out", 0x1000))
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "p", Dir: "out", Bundles: []saspec.Ref{"out"}}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	r := tb.Snapshot().MatchOut(acqFlow)
	// The raising call (a channel send; 101 fit the queue) and a
	// suppressed one.
	if n := testing.AllocsPerRun(100, func() {
		expirePeriod(tb, r)
		r.Acquire(acqFlow, sa.OutNoStates)
		r.Acquire(acqFlow, sa.OutNoStates)
	}); n != 0 {
		t.Errorf("%v allocations per acquire", n)
	}
}
