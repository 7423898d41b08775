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
	if got := out.Stats.Drops[sa.OutStateSeqError].Load(); got != 3 {
		t.Fatalf("XfrmOutStateSeqError = %d, want 3", got)
	}
}
