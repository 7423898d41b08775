package nic

import (
	"context"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// acquireSide returns side A with its outbound bundle deleted (the protect
// policy "out" then drops with XfrmOutNoStates), its table started, and a
// subscription to its events.
func acquireSide(t *testing.T) (*side, *sadb.Subscription) {
	t.Helper()
	a, _ := build(t, topo{alg: algGCM})
	h, err := a.table.Resolve("out")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.table.Delete(h); err != nil {
		t.Fatal(err)
	}
	sub := a.table.Subscribe(64)
	t.Cleanup(sub.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a.table.Start(ctx)
	return a, sub
}

func waitAcquire(t *testing.T, sub *sadb.Subscription) *sadb.Acquire {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub.C:
			if e.Type == sadb.EventAcquire {
				if e.PolicyName != "out" || e.Dir != "out" {
					t.Errorf("acquire for policy %q %s, want out", e.PolicyName, e.Dir)
				}
				return e.Acquire
			}
		case <-deadline:
			t.Fatal("no acquire event within 10s")
			return nil
		}
	}
}

// The transmit path raises one acquire for a burst of packets a protect
// policy drops for want of its bundle, with the flow of the first packet.
func TestTransmitAcquireNoStates(t *testing.T) {
	a, sub := acquireSide(t)
	pkts := make([][]byte, 1000)
	for i := range pkts {
		pkts[i] = udp(in4A, in4B, 1000+uint16(i), 2000, 100, uint32(i), false)
	}
	wire, _ := a.stepTX(t, pkts...)
	if len(wire) != 0 {
		t.Fatalf("%d packets reached the wire without an SA", len(wire))
	}
	if d := a.nic.Stats().TX.Drops[sa.OutNoStates.String()]; d != 1000 {
		t.Errorf("XfrmOutNoStates = %d, want 1000", d)
	}
	acq := waitAcquire(t, sub)
	want := sadb.AcquireFlow{Src: in4A, Dst: in4B, Proto: packet.ProtoUDP, SrcPort: 1000, DstPort: 2000}
	if acq.Flow != want || acq.Reason != sadb.AcquireNoState {
		t.Errorf("acquire flow %+v reason %q, want %+v no_state", acq.Flow, acq.Reason, want)
	}
	if len(acq.Templates) != 1 || acq.Templates[0].Ref != "out" || !acq.Templates[0].Missing {
		t.Errorf("templates %+v, want the missing bundle out", acq.Templates)
	}
	if st := a.table.AcquireStats(); st.Events != 1 || st.Suppressed != 999 {
		t.Errorf("acquire stats %+v, want 1 event and 999 suppressed", st)
	}
}

// An SA that reached its hard limit makes the transmit path raise an
// acquire with reason expired.
func TestTransmitAcquireExpired(t *testing.T) {
	a, sub := acquireSide(t)
	tp := topo{alg: algGCM, mode: "tunnel"}
	b := tp.bundle("out", "out", out4A, out4B, 0x3000, 7)
	b.Lifetime = saspec.LifetimeSpec{Hard: saspec.LimitSpec{Packets: 2}}
	if _, err := a.table.Add(b); err != nil {
		t.Fatal(err)
	}
	pkts := make([][]byte, 3)
	for i := range pkts {
		pkts[i] = udp(in4A, in4B, 1000, 2000, 100, uint32(i), false)
	}
	wire, _ := a.stepTX(t, pkts...)
	if len(wire) != 2 {
		t.Fatalf("%d packets reached the wire, want 2 (hard limit)", len(wire))
	}
	acq := waitAcquire(t, sub)
	if acq.Reason != sadb.AcquireExpired || len(acq.Templates) != 1 {
		t.Fatalf("acquire %+v, want reason expired with one template", *acq)
	}
	tm := acq.Templates[0]
	if tm.Missing || tm.Mode != "tunnel" || tm.Src != out4A || tm.Dst != out4B || len(tm.Expired) != 1 || tm.Expired[0] != "esp/0x00003000" {
		t.Errorf("template %+v, want the tunnel 192.0.2.1 → 192.0.2.2 with esp/0x00003000 expired", tm)
	}
}

// BenchmarkTransmitNoStates is the drop path of a protect policy without
// its bundle, acquire included (suppressed after the first packet): one op
// is one packet; allocs/op must be 0.
func BenchmarkTransmitNoStates(b *testing.B) {
	a, _ := build(b, topo{alg: algGCM})
	h, err := a.table.Resolve("out")
	if err != nil {
		b.Fatal(err)
	}
	if err := a.table.Delete(h); err != nil {
		b.Fatal(err)
	}
	pkt := udp(in4A, in4B, 1000, 2000, 100, 0, false)
	n := a.nic
	tx := n.txs
	snap := n.table.Snapshot()
	p := stepBufs(1, n.host.MTU())[0]
	b.ReportAllocs()
	for b.Loop() {
		p.Reset()
		_ = p.SetBytes(pkt)
		n.transmit(tx, snap, p)
	}
	if d := n.Stats().TX.Drops[sa.OutNoStates.String()]; d == 0 {
		b.Fatal("nothing was dropped with XfrmOutNoStates")
	}
}

func TestTransmitNoStatesNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	a, _ := build(t, topo{alg: algGCM})
	h, _ := a.table.Resolve("out")
	if err := a.table.Delete(h); err != nil {
		t.Fatal(err)
	}
	pkt := udp(in4A, in4B, 1000, 2000, 100, 0, false)
	n := a.nic
	tx := n.txs
	snap := n.table.Snapshot()
	p := stepBufs(1, n.host.MTU())[0]
	if allocs := testing.AllocsPerRun(1000, func() {
		p.Reset()
		_ = p.SetBytes(pkt)
		n.transmit(tx, snap, p)
	}); allocs != 0 {
		t.Errorf("%v allocations per dropped packet, want 0", allocs)
	}
}
