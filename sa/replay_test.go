package sa

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// replayTestSizes are the window sizes exercised by most tests. 100 and 1000
// are not multiples of the 64-bit block, to check the window is used exactly.
var replayTestSizes = []int{MinReplayWindow, 64, 100, 1000, 1024, 4096, MaxReplayWindow}

// replayLo converts a possibly negative constant expression to its low 32 bits.
func replayLo(x int64) uint32 { return uint32(x) }

func replayNew(t testing.TB, size int) *ReplayWindow {
	t.Helper()
	w := new(ReplayWindow)
	if err := w.Init(size); err != nil {
		t.Fatalf("Init(%d): %v", size, err)
	}
	return w
}

// replayRef is the reference model: a plain set of received sequence numbers.
type replayRef struct {
	size uint64
	top  uint64
	seen map[uint64]bool
}

func replayNewRef(size int) *replayRef {
	return &replayRef{size: uint64(size), seen: map[uint64]bool{}}
}

func (r *replayRef) check(seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case r.size == 0 || seq > r.top:
		return true
	case r.top-seq >= r.size: // seq <= top-size (here seq <= top)
		return false
	}
	return !r.seen[seq]
}

func (r *replayRef) accept(seq uint64) bool {
	if !r.check(seq) {
		return false
	}
	if seq > r.top {
		r.top = seq
	}
	if r.size != 0 {
		r.seen[seq] = true
	}
	if len(r.seen) > int(4*r.size)+1024 {
		for s := range r.seen {
			if r.top-s >= r.size { // every recorded s is <= top
				delete(r.seen, s)
			}
		}
	}
	return true
}

func (r *replayRef) setTop(seq uint64) {
	r.top = seq
	clear(r.seen)
}

// replayRefInfer reconstructs the ESN independently of RFC 4303's case
// analysis: the result is the unique value with low bits lo in
// [L, L+2^32), L = top-W+1 being the window's left edge, computed in
// unbounded integers and then pulled back into [0, 2^64) by one subspace.
func replayRefInfer(top uint64, size int, lo uint32) uint64 {
	w := int64(size)
	if size == 0 {
		w = 1 << 31
	}
	two32 := new(big.Int).Lsh(big.NewInt(1), 32)
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	left := new(big.Int).SetUint64(top)
	left.Sub(left, big.NewInt(w-1))
	d := new(big.Int).SetUint64(uint64(lo))
	d.Sub(d, left)
	d.Mod(d, two32) // Euclidean: 0 <= d < 2^32
	v := d.Add(d, left)
	if v.Sign() < 0 {
		v.Add(v, two32) // no subspace below 0
	}
	if v.Cmp(two64) >= 0 {
		v.Sub(v, two32) // no subspace above 2^32-1
	}
	return v.Uint64()
}

func TestReplayInit(t *testing.T) {
	tests := []struct {
		size    int
		wantErr bool
	}{
		{-1, true},
		{0, false},
		{1, true},
		{MinReplayWindow - 1, true},
		{MinReplayWindow, false},
		{64, false},
		{65, false},
		{1000, false},
		{MaxReplayWindow, false},
		{MaxReplayWindow + 1, true},
		{math.MaxInt, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			var w ReplayWindow
			err := w.Init(tt.size)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Init(%d) error = %v, want error %v", tt.size, err, tt.wantErr)
			}
			if err != nil {
				if w.Check(1) || w.Accept(1) {
					t.Errorf("window accepted a packet after a failed Init")
				}
				return
			}
			if got := w.Size(); got != tt.size {
				t.Errorf("Size() = %d, want %d", got, tt.size)
			}
			if got := w.Top(); got != 0 {
				t.Errorf("Top() = %d, want 0", got)
			}
		})
	}
}

func TestReplayZeroValueRejects(t *testing.T) {
	var w ReplayWindow
	for _, seq := range []uint64{0, 1, 2, 1 << 40, math.MaxUint64} {
		if w.Check(seq) {
			t.Errorf("zero ReplayWindow: Check(%d) = true, want false", seq)
		}
		if w.Accept(seq) {
			t.Errorf("zero ReplayWindow: Accept(%d) = true, want false", seq)
		}
	}
	w.SetTop(5)
	if w.Check(6) || w.Accept(6) {
		t.Errorf("zero ReplayWindow accepted a packet after SetTop")
	}
}

func TestReplayReinitClearsState(t *testing.T) {
	w := replayNew(t, 64)
	for seq := uint64(1); seq <= 10; seq++ {
		w.Accept(seq)
	}
	if err := w.Init(128); err != nil {
		t.Fatal(err)
	}
	if w.Top() != 0 || w.Size() != 128 {
		t.Fatalf("after re-Init: Top()=%d Size()=%d, want 0 and 128", w.Top(), w.Size())
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if !w.Accept(seq) {
			t.Errorf("after re-Init: Accept(%d) = false, want true", seq)
		}
	}
}

// replayOp is one step of a scripted scenario.
type replayOp struct {
	op   string // "check", "accept", "settop"
	seq  uint64
	want bool // result of check/accept
}

func TestReplayScenarios(t *testing.T) {
	c := func(seq uint64, want bool) replayOp { return replayOp{"check", seq, want} }
	a := func(seq uint64, want bool) replayOp { return replayOp{"accept", seq, want} }
	st := func(seq uint64) replayOp { return replayOp{op: "settop", seq: seq} }
	tests := []struct {
		name    string
		size    int
		ops     []replayOp
		wantTop uint64
	}{
		{"seq 0 never valid", 64, []replayOp{c(0, false), a(0, false), a(1, true), c(0, false), a(0, false)}, 1},
		{"first packet", 64, []replayOp{c(1, true), a(1, true), c(1, false), a(1, false)}, 1},
		{"first packet far ahead", 64, []replayOp{a(1000, true), c(937, true), c(936, false), c(1, false)}, 1000},
		{"check does not mark", 64, []replayOp{c(5, true), c(5, true), a(5, true), c(5, false)}, 5},
		{"in order", 32, []replayOp{a(1, true), a(2, true), a(3, true), a(4, true), c(1, false), c(4, false), c(5, true)}, 4},
		{"duplicates", 64, []replayOp{a(7, true), a(7, false), a(3, true), a(3, false), a(7, false)}, 7},
		{"out of order within window", 64, []replayOp{
			a(10, true), a(8, true), a(9, true), a(5, true), a(1, true), a(2, true),
			c(3, true), c(4, true), c(6, true), c(7, true), a(8, false), a(1, false),
		}, 10},
		{"left edge size 64", 64, []replayOp{a(100, true), c(37, true), c(36, false), a(36, false), a(37, true), a(37, false)}, 100},
		{"left edge size 32", 32, []replayOp{a(100, true), c(69, true), c(68, false), a(69, true)}, 100},
		{"left edge size 100", 100, []replayOp{a(1000, true), c(901, true), c(900, false), a(901, true), a(900, false)}, 1000},
		{"top below size", 64, []replayOp{a(10, true), c(1, true), a(1, true), c(1, false)}, 10},
		{"older packet does not move top", 64, []replayOp{a(50, true), a(20, true)}, 50},
		{"failed ICV leaves window", 64, []replayOp{c(500, true) /* no accept */, c(500, true), a(2, true), c(1, true)}, 2},
		{"top at max uint64", 64, []replayOp{
			a(math.MaxUint64, true), a(math.MaxUint64, false),
			c(math.MaxUint64-63, true), c(math.MaxUint64-64, false), a(math.MaxUint64-1, true),
		}, math.MaxUint64},
		{"settop empties bitmap", 64, []replayOp{
			a(1, true), a(2, true), a(3, true), st(3),
			c(3, true), a(3, true), a(3, false), a(2, true), c(0, false),
		}, 3},
		{"settop initial esn high bits", 64, []replayOp{
			st(5 << 32), c(5<<32-63, true), c(5<<32-64, false), a(5<<32+1, true), a(5<<32+1, false),
		}, 5<<32 + 1},
		{"settop backwards", 64, []replayOp{a(1000, true), st(10), a(11, true), a(1, true), a(10, true)}, 11},
		{"disabled accepts all non-zero", 0, []replayOp{
			c(0, false), a(0, false), a(5, true), a(5, true), a(1, true), a(1<<40, true), a(3, true), a(1<<40, true),
		}, 1 << 40},
		{"disabled settop", 0, []replayOp{a(9, true), st(2), a(1, true), c(2, true)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := replayNew(t, tt.size)
			for i, op := range tt.ops {
				var got bool
				switch op.op {
				case "check":
					got = w.Check(op.seq)
				case "accept":
					got = w.Accept(op.seq)
				case "settop":
					w.SetTop(op.seq)
					if w.Top() != op.seq {
						t.Fatalf("step %d: after SetTop(%d) Top() = %d", i, op.seq, w.Top())
					}
					continue
				}
				if got != op.want {
					t.Fatalf("step %d: %s(%d) = %v, want %v", i, op.op, op.seq, got, op.want)
				}
			}
			if got := w.Top(); got != tt.wantTop {
				t.Errorf("Top() = %d, want %d", got, tt.wantTop)
			}
		})
	}
}

// TestReplayLeftEdge checks top-size+1 (accepted) and top-size (refused) for
// every size and for tops at various positions within a 64-bit block.
func TestReplayLeftEdge(t *testing.T) {
	for _, size := range replayTestSizes {
		s := uint64(size)
		tops := []uint64{s, s + 1, s + 63, 64 * (s/64 + 3), 64*(s/64+3) - 1, 64*(s/64+3) + 1, 1 << 32, 1<<32 + 31, math.MaxUint64}
		for _, top := range tops {
			t.Run(fmt.Sprintf("size=%d/top=%d", size, top), func(t *testing.T) {
				w := replayNew(t, size)
				if !w.Accept(top) {
					t.Fatalf("Accept(%d) on a fresh window = false", top)
				}
				type probe struct {
					seq  uint64
					want bool
				}
				probes := []probe{
					{top, false},
					{top - 1, true},
					{top - s + 1, true},
					{top - s, false},
					{0, false},
				}
				if top > s {
					probes = append(probes, probe{top - s - 1, false})
				}
				if top < math.MaxUint64 {
					probes = append(probes, probe{top + 1, true})
				}
				for _, p := range probes {
					if got := w.Check(p.seq); got != p.want {
						t.Errorf("Check(%d) with top %d = %v, want %v", p.seq, top, got, p.want)
					}
				}
				if !w.Accept(top - s + 1) {
					t.Errorf("Accept(top-size+1 = %d) = false, want true", top-s+1)
				}
				if w.Accept(top - s + 1) {
					t.Errorf("second Accept(top-size+1 = %d) = true, want false", top-s+1)
				}
				if w.Accept(top - s) {
					t.Errorf("Accept(top-size = %d) = true, want false", top-s)
				}
			})
		}
	}
}

// TestReplayFillWindow receives a whole window in reverse order, then checks
// each sequence number is a duplicate and the one below is too old.
func TestReplayFillWindow(t *testing.T) {
	for _, size := range replayTestSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			w := replayNew(t, size)
			base := uint64(7 * 64) // window = [base+1, base+size]
			for seq := base + uint64(size); seq > base; seq-- {
				if !w.Accept(seq) {
					t.Fatalf("Accept(%d) = false, want true", seq)
				}
			}
			for seq := base + 1; seq <= base+uint64(size); seq++ {
				if w.Check(seq) {
					t.Fatalf("Check(%d) = true after it was accepted", seq)
				}
			}
			if w.Check(base) {
				t.Errorf("Check(%d) = true, but it is left of the window", base)
			}
			if !w.Check(base + uint64(size) + 1) {
				t.Errorf("Check(%d) = false, want true (next packet)", base+uint64(size)+1)
			}
		})
	}
}

// TestReplaySlidingInOrder accepts 3 windows of packets in order and probes
// the edges after every step.
func TestReplaySlidingInOrder(t *testing.T) {
	for _, size := range replayTestSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			w := replayNew(t, size)
			s := uint64(size)
			for seq := uint64(1); seq <= 3*s; seq++ {
				if !w.Accept(seq) {
					t.Fatalf("Accept(%d) = false", seq)
				}
				if w.Check(seq) {
					t.Fatalf("Check(%d) = true right after Accept", seq)
				}
				if seq > s && w.Check(seq-s) {
					t.Fatalf("Check(%d) = true with top %d: too old", seq-s, seq)
				}
				if seq >= s && w.Check(seq-s+1) {
					t.Fatalf("Check(%d) = true with top %d: already accepted", seq-s+1, seq)
				}
				if !w.Check(seq + 1) {
					t.Fatalf("Check(%d) = false with top %d", seq+1, seq)
				}
			}
		})
	}
}

// TestReplayJumps fills a window, jumps the top forward by various distances
// (less than, exactly, and more than one block; more than the whole ring) and
// verifies every sequence number of the new window against the expectation:
// duplicates are exactly the old accepted ones still inside and the new top.
func TestReplayJumps(t *testing.T) {
	for _, size := range replayTestSizes {
		s := uint64(size)
		blocks := uint64(replayPow2((size+63)/64 + 1))
		ringBits := blocks * 64
		jumps := []uint64{1, 63, 64, 65, 128, s - 1, s, s + 1, ringBits - 64, ringBits - 1, ringBits, ringBits + 1, 3*ringBits + 17, 1 << 40}
		for _, off := range []uint64{0, 1, 32, 63} {
			for _, jump := range jumps {
				t.Run(fmt.Sprintf("size=%d/off=%d/jump=%d", size, off, jump), func(t *testing.T) {
					w := replayNew(t, size)
					oldTop := 64*(2*blocks) + off
					for seq := oldTop - s + 1; seq <= oldTop; seq++ {
						if !w.Accept(seq) {
							t.Fatalf("fill: Accept(%d) = false", seq)
						}
					}
					newTop := oldTop + jump
					if !w.Accept(newTop) {
						t.Fatalf("Accept(%d) = false after filling the window", newTop)
					}
					if w.Top() != newTop {
						t.Fatalf("Top() = %d, want %d", w.Top(), newTop)
					}
					if w.Check(newTop - s) {
						t.Errorf("Check(%d) = true, it is left of the new window", newTop-s)
					}
					for seq := newTop - s + 1; seq <= newTop; seq++ {
						want := seq > oldTop && seq != newTop
						if got := w.Check(seq); got != want {
							t.Fatalf("Check(%d) = %v, want %v (old top %d, new top %d)", seq, got, want, oldTop, newTop)
						}
					}
				})
			}
		}
	}
}

// TestReplayAcceptRechecks models two receive queues that both pass Check for
// the same packet before either has verified the ICV.
func TestReplayAcceptRechecks(t *testing.T) {
	tests := []struct {
		name     string
		size     int
		prior    []uint64 // accepted before the race
		seq      uint64
		advance  uint64 // accepted between the Checks and the Accepts (0 = none)
		wantAcc1 bool
	}{
		{"duplicate new top", 64, nil, 10, 0, true},
		{"duplicate inside window", 64, []uint64{100}, 60, 0, true},
		{"duplicate at left edge", 64, []uint64{100}, 37, 0, true},
		{"window moved past it", 64, []uint64{100}, 60, 200, false},
		{"large window duplicate", MaxReplayWindow, []uint64{50000}, 42000, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := replayNew(t, tt.size)
			for _, s := range tt.prior {
				if !w.Accept(s) {
					t.Fatalf("prior Accept(%d) = false", s)
				}
			}
			// Two packets with the same number both pass Check before
			// either is accepted, as concurrent receivers would.
			first, second := w.Check(tt.seq), w.Check(tt.seq)
			if !first || !second {
				t.Fatalf("Check(%d) = false before the race", tt.seq)
			}
			if tt.advance != 0 && !w.Accept(tt.advance) {
				t.Fatalf("Accept(%d) = false", tt.advance)
			}
			if got := w.Accept(tt.seq); got != tt.wantAcc1 {
				t.Fatalf("first Accept(%d) = %v, want %v", tt.seq, got, tt.wantAcc1)
			}
			if w.Accept(tt.seq) {
				t.Fatalf("second Accept(%d) = true: replay accepted twice", tt.seq)
			}
		})
	}
}

func TestReplayInfer(t *testing.T) {
	const two32 = uint64(1) << 32
	tests := []struct {
		name string
		size int
		top  uint64
		lo   uint32
		esn  bool
		want uint64
	}{
		{"no esn", 64, 5 * two32, 7, false, 7},
		{"no esn max", 64, 0, math.MaxUint32, false, math.MaxUint32},
		{"first packet", 64, 0, 1, true, 1},
		{"first packet lo 0", 64, 0, 0, true, 0},
		{"A same subspace ahead", 64, 1000, 2000, true, 2000},
		{"A same subspace in window", 64, 1000, 1000 - 63, true, 1000 - 63},
		{"A left edge -1 goes to next subspace", 64, 1000, 1000 - 64, true, two32 + 1000 - 64},
		{"A Tl = W-1 exactly, lo 0", 64, 63, 0, true, 0},
		{"A Tl = W-1 exactly, lo max", 64, 63, math.MaxUint32, true, math.MaxUint32},
		{"A Tl = W, lo 0 goes next", 64, 64, 0, true, two32},
		{"A Tl = W, lo 1", 64, 64, 1, true, 1},
		{"A across 2^32", 64, two32 - 5, 3, true, two32 + 3},
		{"A across 2^32 lo 0", 64, two32 - 5, 0, true, two32},
		{"A high subspace", 64, 7*two32 + 500, 10, true, 8*two32 + 10},
		{"A high subspace in window", 64, 7*two32 + 500, 450, true, 7*two32 + 450},
		{"B back across 2^32", 64, two32 + 3, 0xfffffffe, true, two32 - 2},
		{"B left edge", 64, two32 + 3, replayLo(3 - 63), true, two32 + 3 - 63},
		{"B left edge -1 stays", 64, two32 + 3, replayLo(3 - 64), true, 2*two32 + 3 - 64},
		{"B same subspace", 64, two32 + 3, 2, true, two32 + 2},
		{"B ahead", 64, two32 + 3, 1000, true, two32 + 1000},
		{"B Tl = W-2", 64, 5*two32 + 62, 0xffffffff, true, 5*two32 - 1},
		{"B Tl 0", 64, 3 * two32, 0, true, 3 * two32},
		{"B Tl 0 previous", 64, 3 * two32, 0xffffffff, true, 3*two32 - 1},
		{"B Th=0 bottom: stays in subspace 0", 64, 5, 0xfffffff0, true, 0xfffffff0},
		{"B Th=0 bottom: left edge low bits", 64, 5, replayLo(5 - 63), true, uint64(replayLo(5 - 63))},
		{"B Th=0 bottom: ahead", 64, 5, 7, true, 7},
		{"B Th=0 bottom: nothing received", 64, 0, 0xffffffff, true, 0xffffffff},
		{"A Th=max top: stays", 64, math.MaxUint64 - 10, 3, true, 0xffffffff<<32 | 3},
		{"A Th=max top: in window", 64, math.MaxUint64 - 10, 0xfffffff0, true, math.MaxUint64 - 15},
		{"large window A", MaxReplayWindow, 10*two32 + 100000, 100000 - MaxReplayWindow + 1, true, 10*two32 + 100000 - MaxReplayWindow + 1},
		{"large window A next", MaxReplayWindow, 10*two32 + 100000, 100000 - MaxReplayWindow, true, 11*two32 + 100000 - MaxReplayWindow},
		{"large window B", MaxReplayWindow, 10*two32 + 100, 0xffffffff - 100, true, 10*two32 - 101},
		{"min window B", MinReplayWindow, 2*two32 + 30, replayLo(30 - 31), true, 2*two32 - 1},
		{"min window A", MinReplayWindow, 2*two32 + 31, 0, true, 2 * two32},
		{"disabled nearest ahead", 0, two32 - 5, 3, true, two32 + 3},
		{"disabled nearest behind", 0, two32 + 3, 0xfffffffe, true, two32 - 2},
		{"disabled far behind same subspace", 0, 3 << 31, 1, true, two32 + 1},
		{"disabled half way goes next", 0, 3 << 31, 0, true, 2 * two32},
		{"disabled bottom", 0, 5, 0xfffffff0, true, 0xfffffff0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := replayNew(t, tt.size)
			w.SetTop(tt.top)
			got := w.Infer(tt.lo, tt.esn)
			if got != tt.want {
				t.Fatalf("Infer(%#x, %v) with top %#x size %d = %#x, want %#x", tt.lo, tt.esn, tt.top, tt.size, got, tt.want)
			}
			if tt.esn {
				if ref := replayRefInfer(tt.top, tt.size, tt.lo); ref != got {
					t.Errorf("reference model gives %#x, Infer gives %#x", ref, got)
				}
			}
		})
	}
}

// TestReplayInferEdgesExhaustive crosses edge values of Th, Tl and lo for each
// window size and compares Infer with the reference reconstruction.
func TestReplayInferEdgesExhaustive(t *testing.T) {
	sizes := append([]int{0}, replayTestSizes...)
	for _, size := range sizes {
		w := replayNew(t, size)
		win := uint32(size)
		if size == 0 {
			win = 1 << 31
		}
		ths := []uint32{0, 1, 2, 0x7fffffff, 0x80000000, math.MaxUint32 - 1, math.MaxUint32}
		tls := []uint32{0, 1, win - 2, win - 1, win, win + 1, 0x80000000, math.MaxUint32 - win, math.MaxUint32 - 1, math.MaxUint32}
		for _, th := range ths {
			for _, tl := range tls {
				top := uint64(th)<<32 | uint64(tl)
				w.SetTop(top)
				bottom := tl - (win - 1)
				los := []uint32{0, 1, bottom - 1, bottom, bottom + 1, tl - 1, tl, tl + 1, 0x7fffffff, 0x80000000, math.MaxUint32 - 1, math.MaxUint32}
				for _, lo := range los {
					got := w.Infer(lo, true)
					if uint32(got) != lo {
						t.Fatalf("size %d top %#x lo %#x: Infer = %#x has wrong low bits", size, top, lo, got)
					}
					if want := replayRefInfer(top, size, lo); got != want {
						t.Fatalf("size %d top %#x lo %#x: Infer = %#x, reference %#x", size, top, lo, got, want)
					}
					if got := w.Infer(lo, false); got != uint64(lo) {
						t.Fatalf("Infer(%#x, false) = %#x", lo, got)
					}
				}
			}
		}
	}
}

// TestReplayInferTracksSender simulates an ESN sender crossing several 2^32
// boundaries with reordering inside the window; the receiver must always
// reconstruct the sender's 64-bit counter from the low bits.
func TestReplayInferTracksSender(t *testing.T) {
	for _, size := range []int{0, MinReplayWindow, 64, 1024, MaxReplayWindow} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 99))
			w := replayNew(t, size)
			start := uint64(1)<<32 - 3000
			w.SetTop(start)
			maxBack := uint64(size)
			if size == 0 {
				maxBack = 1 << 20
			}
			next := start + 1
			for i := 0; i < 20000; i++ {
				var seq uint64
				if rng.IntN(4) == 0 && next-1-start > maxBack {
					seq = next - 1 - rng.Uint64N(maxBack) // late packet, still in window
				} else {
					seq = next
					next++
				}
				if target := uint64(2<<32) - 3000; i%2000 == 1999 && next < target {
					// The sender skipped ahead (packets lost), by less than 2^31
					// so the jump is unambiguous even for the disabled window.
					next += min(target-next, 1<<30)
				}
				got := w.Infer(uint32(seq), true)
				if got != seq {
					t.Fatalf("step %d: Infer(%#x) = %#x, want %#x (top %#x)", i, uint32(seq), got, seq, w.Top())
				}
				w.Accept(got)
			}
			if w.Top() < 2<<32 {
				t.Fatalf("Top() = %#x: sender never crossed the second boundary", w.Top())
			}
		})
	}
}

// replayGen produces random test sequences around the current top.
func replayGen(rng *rand.Rand, top uint64, size int, recent []uint64) uint64 {
	s := uint64(size)
	if s == 0 {
		s = 64
	}
	add := func(a, b uint64) uint64 {
		if a > math.MaxUint64-b {
			return math.MaxUint64
		}
		return a + b
	}
	sub := func(a, b uint64) uint64 {
		if b > a {
			return 0
		}
		return a - b
	}
	switch r := rng.IntN(100); {
	case r < 35:
		return add(top, 1+rng.Uint64N(3))
	case r < 60:
		return sub(top, rng.Uint64N(s+s/2+2))
	case r < 70 && len(recent) > 0:
		return recent[rng.IntN(len(recent))]
	case r < 80:
		return add(top, 1+rng.Uint64N(4*s))
	case r < 84:
		return add(top, rng.Uint64N(64*uint64(replayPow2(int(s)/64+2))*4))
	case r < 86:
		return add(top, rng.Uint64N(1<<40))
	case r < 92:
		return sub(top, s-1+rng.Uint64N(3)) // left edge: top-s+1, top-s, top-s-1
	case r < 94:
		return 0
	default:
		return add(top, rng.Uint64N(64))
	}
}

func TestReplayModelRandom(t *testing.T) {
	sizes := append([]int{0}, replayTestSizes...)
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			for run := 0; run < 8; run++ {
				rng := rand.New(rand.NewPCG(uint64(size), uint64(run)))
				w := replayNew(t, size)
				ref := replayNewRef(size)
				if run%4 == 3 {
					// Start near the end of the 64-bit space.
					st := math.MaxUint64 - uint64(rng.IntN(1<<20))
					w.SetTop(st)
					ref.setTop(st)
				}
				var recent []uint64
				for i := 0; i < 6000; i++ {
					if rng.IntN(500) == 0 {
						st := rng.Uint64N(1 << 50)
						w.SetTop(st)
						ref.setTop(st)
						continue
					}
					seq := replayGen(rng, ref.top, size, recent)
					if len(recent) < 64 {
						recent = append(recent, seq)
					} else {
						recent[rng.IntN(64)] = seq
					}
					gotC, wantC := w.Check(seq), ref.check(seq)
					if gotC != wantC {
						t.Fatalf("run %d step %d: Check(%d) = %v, reference %v (top %d)", run, i, seq, gotC, wantC, ref.top)
					}
					icvOK := rng.IntN(5) != 0
					direct := rng.IntN(10) == 0 // Accept without a prior Check
					if (gotC && icvOK) || direct {
						gotA, wantA := w.Accept(seq), ref.accept(seq)
						if gotA != wantA {
							t.Fatalf("run %d step %d: Accept(%d) = %v, reference %v", run, i, seq, gotA, wantA)
						}
					}
					if w.Top() != ref.top {
						t.Fatalf("run %d step %d: Top() = %d, reference %d", run, i, w.Top(), ref.top)
					}
				}
			}
		})
	}
}

// TestReplayConcurrentExactlyOnce lets several goroutines race to receive the
// same set of sequence numbers; each must be accepted exactly once.
func TestReplayConcurrentExactlyOnce(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		n     int  // sequence numbers 1..n
		exact bool // all stay inside the window, so each must be accepted
	}{
		{"all within max window", MaxReplayWindow, MaxReplayWindow, true},
		{"all within 1024", 1024, 1024, true},
		{"sliding small window", 64, 20000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := replayNew(t, tt.size)
			counts := make([]atomic.Int32, tt.n+1)
			const workers = 4
			var wg sync.WaitGroup
			for g := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					order := make([]uint64, tt.n)
					for i := range order {
						order[i] = uint64(i + 1)
					}
					if tt.exact {
						rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
					} else {
						// Mostly increasing with local jitter.
						for i := range order {
							j := min(i+rng.IntN(8), len(order)-1)
							order[i], order[j] = order[j], order[i]
						}
					}
					for _, seq := range order {
						_ = w.Infer(uint32(seq), true)
						if !w.Check(seq) {
							continue
						}
						if w.Accept(seq) {
							counts[seq].Add(1)
						}
					}
				}()
			}
			wg.Wait()
			accepted := 0
			for seq := 1; seq <= tt.n; seq++ {
				c := counts[seq].Load()
				if c > 1 {
					t.Fatalf("seq %d accepted %d times", seq, c)
				}
				if tt.exact && c != 1 {
					t.Fatalf("seq %d accepted %d times, want exactly once", seq, c)
				}
				accepted += int(c)
			}
			if w.Top() != uint64(tt.n) {
				t.Errorf("Top() = %d, want %d", w.Top(), tt.n)
			}
			if accepted == 0 {
				t.Errorf("nothing was accepted")
			}
		})
	}
}

func TestReplayNoAllocs(t *testing.T) {
	w := replayNew(t, 1024)
	seq := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq += 3
		if w.Check(seq) {
			w.Accept(seq)
		}
		w.Accept(seq - 1)
		_ = w.Infer(uint32(seq), true)
		_ = w.Top()
	})
	if allocs != 0 {
		t.Errorf("Check/Accept/Infer allocate %v times per packet, want 0", allocs)
	}
}

// FuzzReplayWindow interprets the input as a window size followed by
// operations of 3 bytes (opcode, 16-bit operand) and compares the window with
// the reference model after each one.
func FuzzReplayWindow(f *testing.F) {
	f.Add([]byte{1, 0x80, 0, 1, 0x80, 0, 1, 0x80, 0, 0, 0x81, 0, 5, 0x81, 0, 70})
	f.Add([]byte{3, 0x82, 1, 0, 0x80, 0, 1, 0x86, 0, 0, 0x86, 0, 1, 0x86, 0, 2})
	f.Add([]byte{0, 0x80, 0, 9, 0x81, 0, 9, 0x44, 0, 0, 0x85, 0xff, 0xf0})
	f.Add([]byte{6, 0x84, 0xff, 0xff, 0x85, 0, 2, 0x85, 0xff, 0xfe, 0x87, 0, 0, 0xc3, 0, 0})
	f.Add([]byte{2, 0x82, 0xff, 0xff, 0x80, 0x10, 0, 0x81, 0x00, 0x64, 0x86, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		sizes := append([]int{0}, replayTestSizes...)
		size := sizes[int(data[0])%len(sizes)]
		data = data[1:]
		w := replayNew(t, size)
		ref := replayNewRef(size)
		add := func(a, b uint64) uint64 {
			if a > math.MaxUint64-b {
				return math.MaxUint64
			}
			return a + b
		}
		sub := func(a, b uint64) uint64 {
			if b > a {
				return 0
			}
			return a - b
		}
		for ops := 0; len(data) >= 3 && ops < 4096; ops++ {
			ctl := data[0]
			v := uint64(binary.BigEndian.Uint16(data[1:3]))
			data = data[3:]
			var seq uint64
			switch ctl & 7 {
			case 0:
				seq = add(ref.top, v)
			case 1:
				seq = sub(ref.top, v)
			case 2:
				seq = add(ref.top, v<<16)
			case 3:
				seq = v
			case 4:
				st := v << 32
				if ctl&0x08 != 0 {
					st = math.MaxUint64 - v
				}
				w.SetTop(st)
				ref.setTop(st)
				if w.Top() != st {
					t.Fatalf("SetTop(%d): Top() = %d", st, w.Top())
				}
				continue
			case 5:
				// ESN receive: low bits near the top's low bits.
				lo := uint32(ref.top) + uint32(int32(int16(v)))
				seq = w.Infer(lo, true)
				if want := replayRefInfer(ref.top, size, lo); seq != want {
					t.Fatalf("Infer(%#x) with top %#x = %#x, reference %#x", lo, ref.top, seq, want)
				}
			case 6:
				seq = sub(add(ref.top, 1), uint64(size)+v%3) // around the left edge
			case 7:
				lo := uint32(v) | uint32(ctl)<<24
				seq = w.Infer(lo, true)
				if want := replayRefInfer(ref.top, size, lo); seq != want {
					t.Fatalf("Infer(%#x) with top %#x = %#x, reference %#x", lo, ref.top, seq, want)
				}
			}
			gotC, wantC := w.Check(seq), ref.check(seq)
			if gotC != wantC {
				t.Fatalf("Check(%d) = %v, reference %v (top %d, size %d)", seq, gotC, wantC, ref.top, size)
			}
			if (gotC && ctl&0x80 != 0) || ctl&0x40 != 0 {
				gotA, wantA := w.Accept(seq), ref.accept(seq)
				if gotA != wantA {
					t.Fatalf("Accept(%d) = %v, reference %v (size %d)", seq, gotA, wantA, size)
				}
			}
			if w.Top() != ref.top {
				t.Fatalf("Top() = %d, reference %d", w.Top(), ref.top)
			}
		}
	})
}

func BenchmarkReplayInOrder(b *testing.B) {
	for _, size := range []int{64, 1024, MaxReplayWindow} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			w := replayNew(b, size)
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				if !w.Check(seq) || !w.Accept(seq) {
					b.Fatalf("in-order seq %d refused", seq)
				}
			}
		})
	}
}

func BenchmarkReplayRandomWithinWindow(b *testing.B) {
	for _, size := range []int{64, 1024, MaxReplayWindow} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			w := replayNew(b, size)
			// Packets arrive in chunks of one window, shuffled within the chunk,
			// so each is new and never more than size-1 below the top.
			rng := rand.New(rand.NewPCG(1, 2))
			perm := make([]uint64, size)
			for i := range perm {
				perm[i] = uint64(i + 1)
			}
			rng.Shuffle(size, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
			b.ReportAllocs()
			var i, base uint64
			for b.Loop() {
				seq := base + perm[i]
				if !w.Check(seq) || !w.Accept(seq) {
					b.Fatalf("seq %d refused (top %d)", seq, w.Top())
				}
				if i++; i == uint64(size) {
					i = 0
					base += uint64(size)
				}
			}
		})
	}
}

// TestReplayAdvanceKeepsHistory: Advance moves the window without
// forgetting the numbers still inside it, so an UPDATE_SA that raises the
// ESN high bits does not re-open the window to replays.
func TestReplayAdvanceKeepsHistory(t *testing.T) {
	w := replayNew(t, 64)
	top := uint64(1)<<32 - 5
	for s := top - 10; s <= top; s++ {
		if !w.Accept(s) {
			t.Fatalf("Accept(%d) = false", s)
		}
	}
	w.Advance(1 << 32)
	if w.Top() != 1<<32 {
		t.Fatalf("Top() = %d, want 2^32", w.Top())
	}
	for s := top - 10; s <= top; s++ {
		if w.Check(s) {
			t.Fatalf("seq %d received before Advance is new again", s)
		}
	}
	if !w.Check(top+1) || !w.Check(1<<32) || !w.Accept(1<<32) || w.Accept(1<<32) {
		t.Fatal("numbers never received must be accepted once")
	}
	w.Advance(5) // backwards: no effect
	if w.Top() != 1<<32 {
		t.Fatalf("Advance moved the window back to %d", w.Top())
	}
}

// TestInferCheckMatchesInferThenCheck drives windows of several sizes,
// with and without ESN, through random traffic and checks that InferCheck
// answers exactly as Infer followed by Check.
func TestInferCheckMatchesInferThenCheck(t *testing.T) {
	for _, size := range []int{0, 32, 64, 1000} {
		for _, esn := range []bool{false, true} {
			var w ReplayWindow
			if err := w.Init(size); err != nil {
				t.Fatal(err)
			}
			if esn {
				w.SetTop(0xfffffff0)
			}
			x := uint64(0xfffffff0)
			for i := range 5000 {
				x += uint64(i%7) - 2 // mostly forward, some reordering
				lo := uint32(x)
				if i%13 == 0 {
					lo -= 100 // old
				}
				seq, ok := w.InferCheck(lo, esn)
				want := w.Infer(lo, esn)
				if seq != want || ok != w.Check(want) {
					t.Fatalf("size %d esn %v, lo %#x: InferCheck = %#x %v, Infer+Check = %#x %v", size, esn, lo, seq, ok, want, w.Check(want))
				}
				if ok {
					w.Accept(seq)
				}
			}
		}
	}
}
