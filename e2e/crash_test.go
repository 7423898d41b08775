//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/nic"
)

// TestCrashRestart is issue 9's end-to-end check: two NICs on a link wire
// (ESP AES-GCM-128 tunnel, static keys, state directories); NIC b runs as
// its own `secnic run` process and is killed with SIGKILL, then restarted
// with the same configuration. Afterwards b's outbound sequence numbers,
// read from a's wire capture, continue above every one sent before the
// crash; a accepts b's traffic (no XfrmInStateSeqError); and the ESP
// packets a sent before the crash, replayed into b, deliver nothing.
func TestCrashRestart(t *testing.T) {
	bin := buildSecnic(t)
	dir := t.TempDir()
	pair, err := netlab.NewPair(netlab.PairConfig{Prefix: nsPrefix})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	sc := twonic.Scenario{CaptureDir: filepath.Join(dir, "cap")}
	os.Mkdir(sc.CaptureDir, 0o700)
	ca, cb, err := twonic.Configs(sc, pair)
	if err != nil {
		t.Fatal(err)
	}
	ca.StateDir, cb.StateDir = filepath.Join(dir, "state-a"), filepath.Join(dir, "state-b")
	cb.Capture = daemon.CaptureConfig{}
	cb.Control = daemon.ControlConfig{Socket: filepath.Join(dir, "b.sock")}
	cfgB, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	pathB := filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(pathB, cfgB, 0o600); err != nil {
		t.Fatal(err)
	}

	a, err := daemon.Start(context.Background(), ca, daemon.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	client := control.NewClient(cb.Control.Socket)
	startB := func(n int) *exec.Cmd {
		t.Helper()
		logf, _ := os.Create(filepath.Join(dir, "b.log"))
		cmd := exec.Command(bin, "run", "-c", pathB)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for try := 0; ; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := client.Health(ctx)
			cancel()
			if err == nil {
				return cmd
			}
			if try > 100 {
				out, _ := os.ReadFile(filepath.Join(dir, "b.log"))
				t.Fatalf("daemon b (start %d) not up: %v\n%s", n, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	statsB := func() nic.Stats {
		t.Helper()
		r, err := client.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var s nic.Stats
		if err := json.Unmarshal(r.NIC, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	ping := func(count int, interval time.Duration) twonic.PingResult {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := twonic.Ping(ctx, pair.A, twonic.AddressesFor("tunnel", "b").Host4.Addr(), twonic.PingOptions{Count: count, Interval: interval, Wait: time.Second})
		if err != nil && r.Received == 0 {
			t.Logf("ping: %v", err)
		}
		return r
	}

	b := startB(1)
	if r := ping(5, 50*time.Millisecond); r.Received != 5 {
		t.Fatalf("before the crash: %d of 5 pings answered", r.Received)
	}
	// Let the reserver of b fit its inbound margin to the (low) rate, as
	// it does within a second on a quiet SA.
	time.Sleep(1500 * time.Millisecond)
	underA := twonic.AddressesFor("tunnel", "a").Under4
	underB := twonic.AddressesFor("tunnel", "b").Under4
	espSeqs := func(src netip.Addr) (seqs []uint32, raws [][]byte) {
		pkts, err := tryReadCapture(filepath.Join(sc.CaptureDir, "a-wire.pcap"), true)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if p.proto == "esp" && p.src == src {
				ihl := int(p.raw[0]&0x0f) * 4
				seqs = append(seqs, binary.BigEndian.Uint32(p.raw[ihl+4:]))
				raws = append(raws, p.raw)
			}
		}
		return seqs, raws
	}
	var beforeB []uint32
	var fromA [][]byte
	for try := 0; try < 100 && (len(beforeB) < 5 || len(fromA) < 5); try++ {
		time.Sleep(20 * time.Millisecond)
		beforeB, _ = espSeqs(underB)
		_, fromA = espSeqs(underA)
	}
	if len(beforeB) < 5 || len(fromA) < 5 {
		t.Fatalf("capture: %d ESP packets from b, %d from a", len(beforeB), len(fromA))
	}
	maxBefore := uint32(0)
	for _, s := range beforeB {
		maxBefore = max(maxBefore, s)
	}
	seqErrA := drops(a.NIC().Stats().RX, "XfrmInStateSeqError")

	// SIGKILL: no shutdown, no final writes.
	if err := b.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.Wait()
	startB(2)

	// b's inbound window starts above what it accepted before the crash:
	// a's next few packets (at most one inbound margin) are refused, then
	// traffic flows again.
	r := ping(60, 20*time.Millisecond)
	if r.Received == 0 {
		out, _ := os.ReadFile(filepath.Join(dir, "b.log"))
		t.Fatalf("after the restart no ping was answered; b's stats %+v\n%s", statsB().RX.Drops, out)
	}
	t.Logf("after the restart: %d of 60 pings answered (the first are lost to b's inbound margin)", r.Received)
	if r := ping(5, 50*time.Millisecond); r.Received != 5 {
		t.Fatalf("after the restart: %d of 5 pings answered", r.Received)
	}
	if got := drops(a.NIC().Stats().RX, "XfrmInStateSeqError"); got != seqErrA {
		t.Errorf("a refused %d of b's packets as replays after b's restart", got-seqErrA)
	}
	var after []uint32
	for try := 0; try < 100; try++ {
		all, _ := espSeqs(underB)
		if len(all) > len(beforeB)+5 {
			after = all[len(beforeB):]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(after) == 0 {
		t.Fatal("no ESP packet from b in a's capture after the restart")
	}
	for _, s := range after {
		if s <= maxBefore {
			t.Fatalf("after the restart b sent sequence number %d; it had sent up to %d before the crash (nonce reuse)", s, maxBefore)
		}
	}
	t.Logf("b sent up to %d before the crash and from %d after it", maxBefore, after[0])

	// Replays of what a sent before the crash deliver nothing.
	before := statsB()
	if err := twonic.InjectIPv4(pair.A, fromA...); err != nil {
		t.Fatal(err)
	}
	want := drops(before.RX, "XfrmInStateSeqError") + uint64(len(fromA))
	if !waitFor(func() bool { return drops(statsB().RX, "XfrmInStateSeqError") >= want }) {
		t.Errorf("b counted %d replays of %d, drops %v", drops(statsB().RX, "XfrmInStateSeqError")-drops(before.RX, "XfrmInStateSeqError"), len(fromA), statsB().RX.Drops)
	}
	if got := statsB().RX.Packets; got != before.RX.Packets {
		t.Errorf("b delivered %d replayed packets to its host", got-before.RX.Packets)
	}
}
