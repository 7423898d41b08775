package packettest

import (
	"math"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// BenchOp is the loop of the per-packet benchmarks of esp and ah: each
// round puts a buffer back to pkt (copying its first keep bytes to
// packet.Headroom: what op changes that matters for the next round) and
// calls op, which must return sa.ReasonNone. It reports allocations and
// size bytes per round.
func BenchOp(b *testing.B, size int, pkt []byte, keep int, op func(*packet.Buf) sa.Reason) {
	b.Helper()
	p := Buf(pkt)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		copy(p.B[packet.Headroom:], pkt[:keep])
		p.Off, p.Len = packet.Headroom, len(pkt)
		if r := op(p); r != sa.ReasonNone {
			b.Fatal(r)
		}
	}
}

// CheckSeqNeverWraps is the sequence-number test of esp and ah (RFC 4303
// 3.3.3, RFC 4302 3.3.2): with out's counter one short of its limit
// (2^32-1, or 2^64-1 with esn), encap (which protects one datagram with
// out) succeeds once and then fails three times with sa.OutStateSeqError,
// each counted, without moving the counter past the limit.
func CheckSeqNeverWraps(t testing.TB, out *sa.SA, esn bool, encap func() sa.Reason) {
	t.Helper()
	max := uint64(math.MaxUint32)
	if esn {
		max = math.MaxUint64
	}
	if err := out.SetSeq(max - 1); err != nil {
		t.Fatal(err)
	}
	if err := encap(); err != sa.ReasonNone {
		t.Fatalf("last sequence number refused: %v", err)
	}
	for range 3 {
		if err := encap(); err != sa.OutStateSeqError {
			t.Fatalf("esn=%v: got %v, want XfrmOutStateSeqError", esn, err)
		}
	}
	if out.LastSeq() != max {
		t.Fatalf("counter moved past the limit: %d", out.LastSeq())
	}
	if got := out.Stats.Dropped(sa.OutStateSeqError); got != 3 {
		t.Fatalf("XfrmOutStateSeqError = %d, want 3", got)
	}
}

// CheckReplayWindow is the anti-replay test of esp and ah (RFC 4303
// 3.4.3, RFC 4302 3.4.3) for an inbound SA in with a 64-packet window:
// protect returns the next of 200 packets its outbound twin protects
// (sequence numbers 1, 2, ...); decap verifies one with in. Duplicates,
// packets left of the window and old ones are refused and counted as
// XfrmInStateSeqError; late packets inside the window and jumps pass.
func CheckReplayWindow(t testing.TB, in *sa.SA, protect func() []byte, decap func(*packet.Buf) sa.Reason) {
	t.Helper()
	var pkts [][]byte
	for range 200 {
		pkts = append(pkts, protect())
	}
	steps := []struct {
		seq  int
		want sa.Reason
	}{
		{1, sa.ReasonNone},
		{1, sa.InStateSeqError},   // duplicate
		{3, sa.ReasonNone},        // out of order, ahead
		{2, sa.ReasonNone},        // late but inside the window
		{2, sa.InStateSeqError},   // duplicate
		{100, sa.ReasonNone},      // jump
		{37, sa.ReasonNone},       // left edge: 100-64+1
		{36, sa.InStateSeqError},  // just outside the window
		{3, sa.InStateSeqError},   // old
		{200, sa.ReasonNone},      // jump
		{137, sa.ReasonNone},      // edge again
		{136, sa.InStateSeqError}, // outside
	}
	for _, st := range steps {
		if err := decap(Buf(pkts[st.seq-1])); err != st.want {
			t.Fatalf("seq %d: got %v, want %v", st.seq, err, st.want)
		}
	}
	if got := in.Stats.Dropped(sa.InStateSeqError); got != 5 {
		t.Fatalf("XfrmInStateSeqError = %d, want 5", got)
	}
}

// CheckESNBoundary is the extended-sequence-number test of esp and ah: it
// crosses 2^32 with the ESN SAs out and in (window 128), the wire carrying
// only the low half (wireSeq reads it from a protected packet) and the
// receiver reconstructing the high half. protect protects a fresh datagram
// with out; decap verifies it with in.
func CheckESNBoundary(t testing.TB, out, in *sa.SA, protect func() (*packet.Buf, sa.Reason), wireSeq func([]byte) uint32, decap func(*packet.Buf) sa.Reason) {
	t.Helper()
	start := uint64(math.MaxUint32 - 5)
	if err := out.SetSeq(start); err != nil {
		t.Fatal(err)
	}
	in.Replay.SetTop(start)
	for i := range 12 {
		p, err := protect()
		if err != sa.ReasonNone {
			t.Fatal(err)
		}
		want := start + uint64(i) + 1
		if got := wireSeq(p.Bytes()); got != uint32(want) {
			t.Fatalf("wire seq %d, want the low half of %d", got, want)
		}
		if err := decap(p); err != sa.ReasonNone {
			t.Fatalf("seq %d: %v", want, err)
		}
	}
	if in.Replay.Top() != start+12 {
		t.Fatalf("top %d, want %d", in.Replay.Top(), start+12)
	}
}

// CheckDeletedSARefuses: once the SAs are closed (their keys destroyed),
// the inbound one verifies nothing and the outbound one protects nothing.
// protect protects a fresh datagram with out; decap verifies with in.
func CheckDeletedSARefuses(t testing.TB, out, in *sa.SA, protect func() (*packet.Buf, sa.Reason), decap func(*packet.Buf) sa.Reason) {
	t.Helper()
	p, err := protect()
	if err != sa.ReasonNone {
		t.Fatal(err)
	}
	in.Close()
	out.Close()
	if err := decap(p); err == sa.ReasonNone {
		t.Fatal("deleted inbound SA still accepts a packet")
	}
	if _, err := protect(); err == sa.ReasonNone {
		t.Fatal("deleted outbound SA still protects a packet")
	}
}

// CheckECNDecap is the RFC 6040 test of esp and ah in tunnel mode over an
// IPv4 outer header, for IPv4 and IPv6 inner datagrams (Datagram between
// the hosts): DSCP and ECN are copied to the outer header, CE on the outer
// header is propagated to an ECT inner datagram (IPv4 checksum updated),
// and CE over a not-ECT inner datagram drops it (XfrmInStateModeError).
// protect protects p with the outbound SA, decap verifies it with the
// inbound one (window disabled).
func CheckECNDecap(t testing.TB, protect, decap func(*packet.Buf) sa.Reason) {
	t.Helper()
	setCE := func(p *packet.Buf) {
		p.Bytes()[1] |= 3 // congestion experienced on the outer header
		packet.IPv4(p.Bytes()).UpdateChecksum()
	}
	for _, inner6 := range []bool{false, true} {
		src, dst := HostA4, HostB4
		if inner6 {
			src, dst = HostA6, HostB6
		}
		orig := Datagram(src, dst, 10) // DSCP 10, not-ECT
		if inner6 {
			packet.IPv6(orig).SetTrafficClass(0x2a)
		} else {
			orig[1] = 0x2a // ECT(0)
			packet.IPv4(orig).UpdateChecksum()
		}
		p := Buf(orig)
		if err := protect(p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		if p.Bytes()[1] != 0x2a {
			t.Fatalf("inner IPv6 %v: outer TOS 0x%x, want DSCP and ECN copied (0x2a)", inner6, p.Bytes()[1])
		}
		setCE(p)
		if err := decap(p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		if tos, _ := packet.TOS(p.Bytes()); tos != 0x2b {
			t.Fatalf("inner IPv6 %v: inner TOS 0x%x, want CE propagated (0x2b)", inner6, tos)
		}
		if !inner6 && !packet.IPv4(p.Bytes()).ChecksumValid() {
			t.Fatal("inner checksum not updated")
		}
		q := Buf(Datagram(src, dst, 10))
		if err := protect(q); err != sa.ReasonNone {
			t.Fatal(err)
		}
		setCE(q)
		if err := decap(q); err != sa.InStateModeError {
			t.Fatalf("inner IPv6 %v: CE over a not-ECT inner datagram: got %v, want XfrmInStateModeError", inner6, err)
		}
	}
}
