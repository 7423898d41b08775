package nic

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/secnic/secnic/tun"
)

// faultOutcome is what one fault-injection run observed.
type faultOutcome struct {
	sent      int               // packets the host of A sent
	faults    tun.FaultStats    // what the faulty link did
	delivered int               // distinct packets the host of B received
	drops     map[string]uint64 // B's receive drops by reason
	protected uint64            // B's decapsulated packets
}

func (o faultOutcome) String() string {
	keys := make([]string, 0, len(o.drops))
	for k := range o.drops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := fmt.Sprintf("sent %d, link: %v; delivered %d, drops:", o.sent, o.faults, o.delivered)
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%d", k, o.drops[k])
	}
	return s
}

func (o faultOutcome) dropped() uint64 {
	var n uint64
	for _, v := range o.drops {
		n += v
	}
	return n
}

// runFaults moves n packets from A's host to B's host, with A's wire
// output going through a FaultyPort (over the memory cable, or over UDP
// on loopback), and checks what every run must show: nothing corrupted or
// duplicated reaches the host, and every packet the link sent is either
// delivered or counted under a drop reason.
func runFaults(t *testing.T, wire string, cfg tun.FaultConfig, n int) faultOutcome {
	t.Helper()
	var faulty *tun.FaultyPort
	// A corrupted flag or offset can make a packet look like a fragment:
	// it then times out of the reassembly table, and is counted, quickly.
	tp := topo{alg: algGCM, cfg: Config{ReassemblyTimeout: 20 * time.Millisecond}}
	var a, b *side
	switch wire {
	case "memory":
		a, b = build(t, tp)
		// A's wire output reaches B's wire input through the faulty link.
		faulty = tun.NewFaulty(b.tap, cfg)
		go forward(a.tap, faulty)
	case "udp":
		tp.wires = func(t testing.TB) (tun.Port, tun.Port) {
			ua, ub := loopbackPair(t, 1500)
			faulty = tun.NewFaulty(ua, cfg)
			return faulty, ub
		}
		a, b = build(t, tp)
	}
	t.Cleanup(func() { faulty.Close() })
	a.run(t)
	b.run(t)

	src, dst := tp.hosts()
	want := map[string]bool{}
	const batch = 32
	accounted := func() uint64 {
		st := b.nic.Stats().RX
		return st.Protected + st.Bypassed + st.Dropped
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out; link %v, B rx %+v", what, faulty.Stats(), b.nic.Stats().RX)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; i < n; i += batch {
		var pkts [][]byte
		for j := i; j < min(i+batch, n); j++ {
			p := udp(src, dst, 1000, 2000, 100+j%700, uint32(j), false)
			want[string(p)] = true
			pkts = append(pkts, p)
		}
		write(t, a.app, pkts...)
		// Pace the sender so that no queue overflows: every drop is then a
		// fault the link injected and B counted.
		wait("A protecting", func() bool { return faulty.Stats().Written == uint64(min(i+batch, n)) })
		wait("B receiving", func() bool { return accounted() == faulty.Stats().Sent })
	}
	if err := faulty.Flush(); err != nil {
		t.Fatal(err)
	}
	wait("B receiving the held packets", func() bool { return accounted() == faulty.Stats().Sent })
	// B counts a packet as protected when it is decapsulated, before the
	// batch it is in is written to the host: wait for that write too.
	wait("B delivering to its host", func() bool { return uint64(b.app.Queued()) >= b.nic.Stats().RX.Protected })

	got := map[string]bool{}
	for _, p := range drain(t, b.app) {
		if !want[string(p)] {
			t.Fatalf("the host received a packet that was never sent (corrupted?): % x", p[:min(len(p), 48)])
		}
		if got[string(p)] {
			t.Fatalf("the host received a packet twice")
		}
		got[string(p)] = true
	}
	rx := b.nic.Stats().RX
	o := faultOutcome{sent: n, faults: faulty.Stats(), delivered: len(got), drops: rx.Drops, protected: rx.Protected}
	// Every packet is accounted for: what the link sent was delivered or
	// dropped for a named reason, and what the host sent was sent by the
	// link, dropped by it, or duplicated by it.
	if o.faults.Held != 0 || o.faults.Written != uint64(n) || o.faults.Sent != o.faults.Written-o.faults.Dropped+o.faults.Duplicated {
		t.Errorf("link accounting: %v", o.faults)
	}
	if rx.Bypassed != 0 {
		t.Errorf("%d packets bypassed IPsec: a corrupted packet passed as plain traffic", rx.Bypassed)
	}
	if uint64(o.delivered) != o.protected || o.protected+o.dropped() != o.faults.Sent {
		t.Errorf("accounting: delivered %d (decapsulated %d) + dropped %d != %d sent by the link\n%v", o.delivered, o.protected, o.dropped(), o.faults.Sent, o)
	}
	if uint64(n)+o.faults.Duplicated != uint64(o.delivered)+o.faults.Dropped+o.dropped() {
		t.Errorf("accounting: %d sent + %d duplicated != %d delivered + %d lost on the link + %d dropped by B\n%v",
			n, o.faults.Duplicated, o.delivered, o.faults.Dropped, o.dropped(), o)
	}
	t.Logf("%s: %v", wire, o)
	return o
}

// onlyDrops fails unless every drop is one of the reasons.
func onlyDrops(t *testing.T, o faultOutcome, reasons ...string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, r := range reasons {
		allowed[r] = true
	}
	for r, v := range o.drops {
		if !allowed[r] && v > 0 {
			t.Errorf("%d packets dropped as %s; only %v expected\n%v", v, r, reasons, o)
		}
	}
}

func TestFaultInjection(t *testing.T) {
	const n = 2000
	for _, wire := range []string{"memory", "udp"} {
		t.Run(wire+"/drop", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 1, Drop: 0.1}, n)
			onlyDrops(t, o)
			if o.faults.Dropped == 0 || o.delivered != n-int(o.faults.Dropped) {
				t.Errorf("lost %d on the link, delivered %d of %d", o.faults.Dropped, o.delivered, n)
			}
		})
		t.Run(wire+"/duplicate", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 2, Duplicate: 0.1}, n)
			onlyDrops(t, o, "XfrmInStateSeqError")
			if o.faults.Duplicated == 0 || o.delivered != n || o.drops["XfrmInStateSeqError"] != o.faults.Duplicated {
				t.Errorf("duplicated %d, delivered %d of %d, replays dropped %d", o.faults.Duplicated, o.delivered, n, o.drops["XfrmInStateSeqError"])
			}
		})
		t.Run(wire+"/reorder-within-window", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 3, Reorder: 0.1, ReorderDepth: 32}, n)
			onlyDrops(t, o)
			if o.faults.Reordered == 0 || o.delivered != n {
				t.Errorf("reordered %d, delivered %d of %d", o.faults.Reordered, o.delivered, n)
			}
		})
		t.Run(wire+"/reorder-beyond-window", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 4, Reorder: 0.02, ReorderDepth: 100, ReorderHold: time.Second}, n)
			onlyDrops(t, o, "XfrmInStateSeqError")
			if o.drops["XfrmInStateSeqError"] == 0 || o.delivered+int(o.drops["XfrmInStateSeqError"]) != n {
				t.Errorf("packets overtaken by 100 (window 64): %d dropped as too old, %d delivered of %d", o.drops["XfrmInStateSeqError"], o.delivered, n)
			}
		})
		t.Run(wire+"/corrupt", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 5, Corrupt: 0.1}, n)
			// A flipped bit fails the ICV, the IPv4 header checksum or the
			// lengths, or changes the SPI or the destination.
			onlyDrops(t, o, "XfrmInStateProtoError", "XfrmInHdrError", "XfrmInNoStates", "XfrmInNoPols", "SecnicReasmTimeout", "SecnicReasmInvalid", "XfrmInStateMismatch")
			if o.faults.Corrupted == 0 || o.dropped() != o.faults.Corrupted || o.delivered != n-int(o.faults.Corrupted) {
				t.Errorf("corrupted %d, dropped %d, delivered %d of %d", o.faults.Corrupted, o.dropped(), o.delivered, n)
			}
		})
		t.Run(wire+"/delay", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 6, DelayProb: 0.05, Delay: 2 * time.Millisecond}, n)
			// A delayed packet is late, not lost: accepted unless more
			// than a window of packets overtook it.
			onlyDrops(t, o, "XfrmInStateSeqError")
			if o.faults.Delayed == 0 || o.delivered+int(o.drops["XfrmInStateSeqError"]) != n {
				t.Errorf("delayed %d, delivered %d, too old %d of %d", o.faults.Delayed, o.delivered, o.drops["XfrmInStateSeqError"], n)
			}
		})
		t.Run(wire+"/everything", func(t *testing.T) {
			o := runFaults(t, wire, tun.FaultConfig{Seed: 7, Drop: 0.05, Corrupt: 0.05, Duplicate: 0.05, Reorder: 0.05, ReorderDepth: 16, DelayProb: 0.02, Delay: time.Millisecond}, n)
			if o.delivered == 0 || o.delivered > n {
				t.Errorf("delivered %d of %d", o.delivered, n)
			}
		})
	}
}

// TestCorruptIPv4HeaderDropped: a plain packet or a fragment whose IPv4
// header checksum fails is dropped and counted, never bypassed to the host
// or filed for reassembly.
func TestCorruptIPv4HeaderDropped(t *testing.T) {
	_, b := build(t, topo{alg: algGCM})
	other := netip.MustParseAddr("10.9.0.1") // no policy: bypassed by default
	_, dst := topo{}.hosts()
	good := udp(other, dst, 1, 2, 40, 1, false)
	if got := b.stepRX(t, good); len(got) != 1 {
		t.Fatalf("a valid plain packet: %d delivered", len(got))
	}
	bad := append([]byte(nil), good...)
	bad[8]-- // TTL, checksum not updated
	frag := frag4(3, 0, pattern(64), true)
	frag[1] ^= 4 // TOS
	if got := b.stepRX(t, bad, frag); len(got) != 0 {
		t.Fatalf("corrupted headers delivered: %d", len(got))
	}
	if got := b.drops("rx", "XfrmInHdrError"); got != 2 {
		t.Errorf("XfrmInHdrError = %d, want 2 (drops %v)", got, b.nic.Stats().RX.Drops)
	}
}
