//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
)

// TestAcquire deletes A's outbound bundle through the API and pings B
// from A's namespace: the protect policy drops the echo requests
// (XfrmOutNoStates) and raises one acquire event, which `secnic events
// --json` and the control client's event stream both deliver with the
// flow of the ping and the missing bundle; the other requests within the
// acquire period are counted, not reported.
func TestAcquire(t *testing.T) {
	bin := buildSecnic(t)
	l := startLab(t, twonic.Scenario{SocketDir: t.TempDir()})
	mustPing(t, l, "a", false)
	ctx := ctxFor(t, 60*time.Second)
	client := control.NewClient(l.A.ControlSocket())
	if _, err := client.DeleteSAs(ctx, "a-to-b"); err != nil {
		t.Fatal(err)
	}

	// The API stream, through the Go client.
	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	apiEvents := make(chan sadb.Event, 64)
	subscribed := make(chan struct{})
	go func() {
		_ = client.Events(streamCtx, func(e sadb.Event) error {
			if e.Type == sadb.EventSubscribed {
				close(subscribed)
			}
			if e.Type == sadb.EventAcquire {
				apiEvents <- e
			}
			return nil
		})
	}()
	// The CLI, which exits after the first event.
	cli := exec.CommandContext(ctx, bin, "events", "--socket", l.A.ControlSocket(), "--json", "--count", "1")
	stdout, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cli.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer cli.Wait()
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.HasPrefix(line, "following events") {
		t.Fatalf("secnic events: %q %v", line, err)
	}
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("the API event stream did not start")
	}

	r := ping(t, l, "a", false, twonic.PingOptions{Count: 5, Interval: 20 * time.Millisecond, Wait: 300 * time.Millisecond})
	if r.Received != 0 {
		t.Fatalf("%d echo replies without an outbound SA", r.Received)
	}

	check := func(how string, e sadb.Event) {
		t.Helper()
		a := e.Acquire
		if e.Type != sadb.EventAcquire || a == nil {
			t.Fatalf("%s: event %+v, want an acquire", how, e)
		}
		if e.PolicyName != "out-v4" || e.Dir != "out" {
			t.Errorf("%s: policy %q %s, want out-v4 out", how, e.PolicyName, e.Dir)
		}
		if a.Flow.Src != l.Addr("a", false) || a.Flow.Dst != l.Addr("b", false) || a.Flow.Proto != 1 || a.Flow.SrcPort != 8 {
			t.Errorf("%s: flow %+v, want ICMP echo request %s → %s", how, a.Flow, l.Addr("a", false), l.Addr("b", false))
		}
		if a.Reason != sadb.AcquireNoState || len(a.Templates) != 1 || a.Templates[0].Ref != "a-to-b" || !a.Templates[0].Missing {
			t.Errorf("%s: reason %q templates %+v, want no_state and the missing bundle a-to-b", how, a.Reason, a.Templates)
		}
		if a.Seq != 1 {
			t.Errorf("%s: acquire seq %d, want 1", how, a.Seq)
		}
	}

	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("secnic events printed nothing: %v", sc.Err())
	}
	var e sadb.Event
	if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
		t.Fatalf("secnic events --json: %v: %s", err, sc.Bytes())
	}
	check("secnic events", e)
	if err := cli.Wait(); err != nil {
		t.Errorf("secnic events --count 1: %v", err)
	}

	select {
	case e := <-apiEvents:
		check("API stream", e)
	case <-ctx.Done():
		t.Fatal("no acquire on the API stream")
	}
	// One per acquire period (30 s): the other requests were counted.
	time.Sleep(200 * time.Millisecond)
	if n := len(apiEvents); n != 0 {
		t.Errorf("%d more acquire events within the period", n)
	}
	dropped := l.A.NIC().Stats().TX.Drops[sa.OutNoStates.String()]
	st := l.A.Table().AcquireStats()
	if dropped < 5 || st.Events != 1 || st.Events+st.Suppressed != dropped {
		t.Errorf("XfrmOutNoStates %d, acquire stats %+v: want one event and the rest suppressed", dropped, st)
	}
}
