//go:build linux

// Package e2e holds the end-to-end tests: two secnic NICs back to back in
// network namespaces, real traffic through them (ping(8) and TCP), packets
// injected on the wire, policies, MTU and ICMP. They need root; without it
// they skip, except under CI=true, where they fail.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/nic"
)

// nsPrefix names the namespaces the tests create.
const nsPrefix = "secnic-e2e"

// requireLab skips a test (fails it under CI=true) without what the
// scenarios need: TUN devices in network namespaces, ip(8) and ping(8).
func requireLab(t *testing.T) {
	t.Helper()
	testenv.RequireTUN(t)
	testenv.RequireTool(t, "ip", "Debian: iproute2")
	testenv.RequireTool(t, "ping", "Debian: iputils-ping")
}

func TestMain(m *testing.M) {
	// Namespaces of earlier runs that were killed before their cleanup.
	for _, name := range netlab.StaleNamespaces(nsPrefix) {
		_ = netlab.DeleteNamespace(name)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testLogger writes the daemons' warnings and errors to the test log.
func testLogger(t *testing.T) *slog.Logger {
	lvl := slog.LevelWarn
	if testing.Verbose() && os.Getenv("SECNIC_E2E_LOGS") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

var _ io.Writer = tWriter{}

// startLab starts sc and removes it when the test ends.
func startLab(t *testing.T, sc twonic.Scenario) *twonic.Lab {
	t.Helper()
	requireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := twonic.Start(ctx, sc, nsPrefix, testLogger(t))
	if err != nil {
		t.Fatalf("start %s: %v", sc.Describe(), err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, s := range []netlab.Side{l.Pair.A, l.Pair.B} {
			if _, err := os.Stat(s.Path); err == nil {
				t.Errorf("namespace %s still exists after cleanup", s.Name)
			}
		}
	})
	return l
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ping pings dst from side's namespace and returns the result.
func ping(t *testing.T, l *twonic.Lab, from string, v6 bool, o twonic.PingOptions) twonic.PingResult {
	t.Helper()
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	to := "b"
	if from == "b" {
		to = "a"
	}
	r, err := twonic.Ping(ctxFor(t, 30*time.Second), l.Side(from), l.Addr(to, v6), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustPing fails unless every echo request is answered.
func mustPing(t *testing.T, l *twonic.Lab, from string, v6 bool) {
	t.Helper()
	r := ping(t, l, from, v6, twonic.PingOptions{Count: 3})
	if r.Sent != 3 || r.Received != 3 {
		t.Fatalf("ping from %s (IPv6 %v): %d sent, %d received\n%s\nA: %s\nB: %s", from, v6, r.Sent, r.Received, r.Output,
			statsLine(l.A.NIC().Stats()), statsLine(l.B.NIC().Stats()))
	}
}

// mustTransfer moves n bytes over TCP from a server in B to a client in A
// and checks them.
func mustTransfer(t *testing.T, l *twonic.Lab, v6 bool, n int64) twonic.Transfer {
	t.Helper()
	tr, err := twonic.TCPTransfer(ctxFor(t, 20*time.Second), l.Pair.B, l.Addr("b", v6), l.Pair.A, n)
	if err != nil {
		t.Fatalf("TCP transfer (IPv6 %v): %v\nA: %s\nB: %s", v6, err, statsLine(l.A.NIC().Stats()), statsLine(l.B.NIC().Stats()))
	}
	if !tr.OK() {
		t.Fatalf("TCP transfer (IPv6 %v): SHA-256 mismatch: sent %x received %x", v6, tr.Sent, tr.Received)
	}
	return tr
}

func statsLine(s nic.Stats) string {
	return fmt.Sprintf("tx %+v rx %+v frags out %d in %d reasm %d icmp %d", s.TX, s.RX, s.FragmentsOut, s.FragmentsIn, s.Reassembled, s.ICMPTooBig)
}

// drops returns the named drop counter of a direction.
func drops(d nic.DirStats, reason string) uint64 { return d.Drops[reason] }

func sleepShort() { time.Sleep(10 * time.Millisecond) }

// waitFor polls cond for up to 5 seconds (a watchdog, not a timing
// assertion: counters are updated by the datapath's goroutines).
func waitFor(cond func() bool) bool {
	for range 500 {
		if cond() {
			return true
		}
		sleepShort()
	}
	return cond()
}
