package xfrm

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
)

// TestMonitor drives the monitor with the table's own events: add, delete,
// a policy, and a hard expiry.
func TestMonitor(t *testing.T) {
	g := newRig(t)
	sub := g.tb.Subscribe(64)
	defer sub.Close()
	var out bytes.Buffer
	m := &Monitor{Backend: tableBackend{g.tb}, Out: &out, Print: g.r.Print}
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var types []string
	// drain handles the events of one command, as a live monitor would.
	drain := func(n int) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for i := 0; i < n; i++ {
			select {
			case e := <-sub.C:
				types = append(types, string(e.Type))
				if err := m.Handle(ctx, e); err != nil {
					t.Fatal(err)
				}
			case <-deadline:
				t.Fatalf("events so far: %v\n%s", types, out.String())
			}
		}
	}
	for _, l := range []string{tunnelLines[0], tunnelLines[2],
		`ip xfrm state add src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x7000 mode tunnel aead 'rfc4106(gcm(aes))' ` + k20d + ` 128 limit time-hard 1 dir out`,
		"ip xfrm policy delete src 10.1.0.0/16 dst 10.2.0.0/16 dir out",
		"ip xfrm state delete src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1000001"} {
		g.run(l)
		drain(1)
	}
	// The third state's hard time limit passes.
	g.tb.CheckLifetimes(time.Now().Add(2 * time.Second))
	drain(1)
	if strings.Join(types, ",") != "sa_added,policy_added,sa_added,policy_deleted,sa_deleted,sa_expired" {
		t.Errorf("events %v", types)
	}
	got := out.String()
	for _, want := range []string{
		"src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0xc1000001 reqid 1 mode tunnel\n",
		"src 10.1.0.0/16 dst 10.2.0.0/16 \n\tdir out priority 0 ptype main \n",
		"Deleted src 10.1.0.0/16 dst 10.2.0.0/16 \n",
		"Deleted src 192.0.2.1 dst 192.0.2.2\n",
		"Expired src 192.0.2.1 dst 192.0.2.3\n",
		"\thard 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("monitor output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, k20a[2:]) {
		t.Error("monitor printed a key")
	}
}

func TestParseMonitor(t *testing.T) {
	if o, err := ParseMonitor([]string{"SA", "policy"}); err != nil || !o["SA"] || !o["policy"] {
		t.Errorf("%v %v", o, err)
	}
	if _, err := ParseMonitor([]string{"aevent"}); !IsUnsupported(err) {
		t.Errorf("aevent: %v", err)
	}
	if _, err := ParseMonitor([]string{"bogus"}); err == nil {
		t.Error("bogus accepted")
	}
}

// TestMonitorAcquire prints an acquire event as ip xfrm monitor prints
// XFRM_MSG_ACQUIRE: a policy whose state was deleted asks for it.
func TestMonitorAcquire(t *testing.T) {
	g := newRig(t)
	g.run(tunnelLines[0], tunnelLines[2],
		"ip xfrm state delete src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1000001")
	sub := g.tb.Subscribe(64)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g.tb.Start(ctx)
	var out bytes.Buffer
	m := &Monitor{Backend: tableBackend{g.tb}, Out: &out, Print: g.r.Print}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	flow := sa.Flow{Src: netip.MustParseAddr("10.1.0.5"), Dst: netip.MustParseAddr("10.2.0.7"), Proto: 6, SrcPort: 40000, DstPort: 22}
	r := g.tb.Snapshot().MatchOut(flow)
	if r == nil || len(r.Bundles) != 0 {
		t.Fatalf("the policy resolves to %+v, want protect without its state", r)
	}
	r.Acquire(flow, sa.OutNoStates)
	deadline := time.After(5 * time.Second)
	for {
		var e sadb.Event
		select {
		case e = <-sub.C:
		case <-deadline:
			t.Fatal("no acquire event")
		}
		if err := m.Handle(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Type == sadb.EventAcquire {
			break
		}
	}
	want := "acquire proto esp \n" +
		"  sel src 10.1.0.5/32 dst 10.2.0.7/32 proto tcp sport 40000 dport 22 \n" +
		"  policy src 10.1.0.0/16 dst 10.2.0.0/16 \n" +
		"    \tdir out priority 0 ptype main \n" +
		"    \ttmpl src 0.0.0.0 dst 0.0.0.0\n" +
		"    \t\tproto esp spi 0xc1000001 reqid 1 mode transport\n" +
		"\n"
	if got := out.String(); got != want {
		t.Errorf("monitor printed\n%q\nwant\n%q", got, want)
	}

	// Other objects only: nothing.
	out.Reset()
	m.Objects = map[string]bool{"SA": true}
	m.acquire(sadb.Event{Type: sadb.EventAcquire, PolicyID: r.Policy.ID, Acquire: &sadb.Acquire{Seq: 2}})
	if out.Len() != 0 {
		t.Errorf("monitor SA printed an acquire: %q", out.String())
	}
}
