package nic

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

func TestUDPEncapLengthAndStateMismatch(t *testing.T) {
	a, b := build(t, topo{alg: algGCM, encap: true})
	_, plainB := build(t, topo{alg: algGCM}) // same SPIs and keys, no udp_encap
	src, dst := topo{}.hosts()
	send := func() []byte {
		t.Helper()
		wire, _ := a.stepTX(t, udp(src, dst, 1000, 2000, 64, 1, false))
		if len(wire) != 1 {
			t.Fatalf("%d packets on the wire", len(wire))
		}
		if _, err := packet.Locate(wire[0], 4500); err != nil {
			t.Fatalf("not UDP-encapsulated ESP: %v", err)
		}
		return wire[0]
	}
	// A true length is delivered.
	if got := b.stepRX(t, send()); len(got) != 1 {
		t.Fatalf("a good packet: %d delivered", len(got))
	}
	// Lying UDP lengths are dropped and counted, before any SA is looked at.
	lies := []int{0, 8, 9, 100, 65535}
	for _, n := range lies {
		pkt := send()
		packet.UDP(pkt[packet.IPv4MinLen:]).SetLength(n)
		if got := b.stepRX(t, pkt); len(got) != 0 {
			t.Errorf("UDP length %d: delivered", n)
		}
	}
	if got := b.drops("rx", "SecnicUDPLengthError"); got != uint64(len(lies)) {
		t.Errorf("SecnicUDPLengthError = %d, want %d", got, len(lies))
	}
	if got := b.drops("rx", "XfrmInHdrError"); got != 0 {
		t.Errorf("XfrmInHdrError = %d, want 0", got)
	}
	// UDP-encapsulated ESP for an SA without udp_encap: XfrmInStateMismatch, as Linux.
	if got := plainB.stepRX(t, send()); len(got) != 0 {
		t.Errorf("delivered through an SA without udp_encap")
	}
	if got := plainB.drops("rx", "XfrmInStateMismatch"); got != 1 {
		t.Errorf("XfrmInStateMismatch = %d, want 1 (drops %v)", got, plainB.nic.Stats().RX.Drops)
	}
	if got := plainB.drops("rx", "XfrmInHdrError"); got != 0 {
		t.Errorf("XfrmInHdrError = %d, want 0", got)
	}
}
