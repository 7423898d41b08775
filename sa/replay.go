package sa

import (
	"fmt"
	"math"
	"sync"
)

// MinReplayWindow and MaxReplayWindow bound the configurable anti-replay
// window, in packets. RFC 4303 §3.4.3 requires a window of at least 32
// packets (64 is the recommended default). The upper bound of 8192 packets
// keeps the ring at 256 blocks (2 KiB) per inbound SA while leaving room for
// heavily reordered multi-queue traffic at high packet rates.
const (
	MinReplayWindow = 32
	MaxReplayWindow = 8192
)

// Ring geometry: each block holds 64 sequence numbers.
const (
	winBlockLog  = 6
	winBlockBits = 1 << winBlockLog
	winBitMask   = winBlockBits - 1
)

// winInferDisabled is the window width Infer uses when anti-replay is
// disabled (size 0): half of the 32-bit space, so the reconstructed sequence
// number is the one nearest to Top().
const winInferDisabled = 1 << 31

// ReplayWindow is an RFC 6479 anti-replay window over 64-bit sequence numbers:
// a ring of 64-bit blocks, no shifting. It is safe for concurrent use.
//
// The window has exactly Size() packets: with T = Top(), a sequence number
// seq is new if seq > T, or if T-Size() < seq <= T and seq has not been
// accepted yet; seq <= T-Size() is too old. Sequence number 0 is never valid.
//
// Intended receive path (RFC 4303 §3.4.3): seq := w.Infer(lo, esn); drop the
// packet unless w.Check(seq); verify the ICV (using the high bits of seq for
// ESN); drop the packet unless w.Accept(seq).
//
// The zero value is not usable: until Init succeeds, Check and Accept reject
// every sequence number.
type ReplayWindow struct {
	mu    sync.Mutex
	ready bool
	size  uint64   // window in packets; 0 = anti-replay disabled
	top   uint64   // highest accepted sequence number (or the SetTop value)
	mask  uint64   // len(ring)-1; len(ring) is a power of two
	ring  []uint64 // bit (seq & 63) of block (seq >> 6) & mask

	// limited: accept reports sequence numbers above limit (the replay
	// state durable in the state directory; see keyuse.go) and a top that
	// reached refillAt, so that the reserver writes the next limit.
	limited         bool
	limit, refillAt uint64
}

// Init (re)initialises the window for size packets and clears all state
// (Top() becomes 0). size 0 disables anti-replay: Check accepts every
// non-zero sequence number, while Accept still tracks Top() for ESN
// reconstruction. Otherwise size must be in [MinReplayWindow,
// MaxReplayWindow]; it is used exactly (no rounding), so Size() == size.
//
// Init allocates; Check, Accept, Infer and SetTop never do.
func (w *ReplayWindow) Init(size int) error {
	if size != 0 && (size < MinReplayWindow || size > MaxReplayWindow) {
		return fmt.Errorf("sa: anti-replay window of %d packets is out of range: use 0 to disable anti-replay or a size from %d to %d packets",
			size, MinReplayWindow, MaxReplayWindow)
	}
	var ring []uint64
	if size > 0 {
		// The block holding Top() may be only partly used, so the ring needs
		// one block more than the window spans: (blocks-1)*64 >= size.
		blocks := replayPow2((size+winBlockBits-1)/winBlockBits + 1)
		ring = make([]uint64, blocks)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.size = uint64(size)
	w.top = 0
	w.limited, w.limit, w.refillAt = false, 0, 0
	w.ring = ring
	w.mask = uint64(len(ring)) - 1
	w.ready = true
	return nil
}

// replayPow2 returns the smallest power of two >= n (n >= 1).
func replayPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// Size returns the effective window in packets; 0 means anti-replay is
// disabled. It equals the size given to Init.
func (w *ReplayWindow) Size() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.size)
}

// Top returns the highest sequence number accepted so far (0 if none), or
// the value given to SetTop if nothing higher has been accepted since.
func (w *ReplayWindow) Top() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.top
}

// Infer returns the full sequence number of a packet whose header carries the
// low 32 bits lo. Without ESN it returns uint64(lo). With ESN it reconstructs
// the high 32 bits per RFC 4303 appendix A2.2 from Top() = Th:Tl and the
// window W = Size():
//
//   - Case A, Tl >= W-1: Seqh = Th if lo >= Tl-W+1, else Th+1.
//   - Case B, Tl < W-1: Seqh = Th-1 if lo >= Tl-W+1 (mod 2^32), else Th.
//
// Equivalently, the result is the unique value with low bits lo in the
// 2^32-wide range that starts at the window's left edge Top()-W+1.
//
// Edges: at the bottom of the space (case B with Th == 0) there is no
// subspace Th-1, so Seqh = 0, meaning the packet is taken as being ahead of
// the window. At the top (case A with Th == 2^32-1) Seqh stays Th, so the
// packet is too old and Check rejects it. With anti-replay disabled (size 0)
// Infer uses W = 2^31, which picks the candidate nearest to Top().
func (w *ReplayWindow) Infer(lo uint32, esn bool) uint64 {
	if !esn {
		return uint64(lo)
	}
	w.mu.Lock()
	top, size := w.top, w.size
	w.mu.Unlock()
	return inferSeq(lo, top, size)
}

// InferCheck is Infer followed by Check under one acquisition of the
// window's lock, for the receive path: it returns the full sequence
// number and whether it may be new.
func (w *ReplayWindow) InferCheck(lo uint32, esn bool) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seq := uint64(lo)
	if esn {
		seq = inferSeq(lo, w.top, w.size)
	}
	return seq, w.winCheckLocked(seq)
}

// inferSeq is Infer for a window with the given top and size.
func inferSeq(lo uint32, top, size uint64) uint64 {
	win := uint32(winInferDisabled)
	if size != 0 {
		win = uint32(size)
	}
	tl, th := uint32(top), uint32(top>>32)
	bottom := tl - (win - 1) // low bits of the window's left edge, mod 2^32
	hi := th
	if tl >= win-1 {
		// Case A: the window lies within subspace Th.
		if lo < bottom && th != ^uint32(0) {
			hi = th + 1
		}
	} else {
		// Case B: the window straddles subspaces Th-1 and Th.
		if lo >= bottom && th != 0 {
			hi = th - 1
		}
	}
	return uint64(hi)<<32 | uint64(lo)
}

// Check reports whether seq may be new: it is not 0, not left of the window,
// and not accepted before. It does not modify the window. Call it before the
// (expensive) ICV check; a true result must be confirmed with Accept once the
// ICV has been verified.
func (w *ReplayWindow) Check(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.winCheckLocked(seq)
}

func (w *ReplayWindow) winCheckLocked(seq uint64) bool {
	switch {
	case !w.ready || seq == 0:
		return false
	case w.size == 0 || seq > w.top:
		return true
	case w.top-seq >= w.size:
		return false // too old: seq <= top-size
	}
	return w.ring[(seq>>winBlockLog)&w.mask]&(1<<(seq&winBitMask)) == 0
}

// Accept marks seq as received. Call it only after the packet's ICV has been
// verified. It repeats the Check under the window's lock and returns false if
// seq is not new after all (for example a duplicate that was verified
// concurrently, or a packet that fell out of the window meanwhile); the
// packet must then be dropped. If seq > Top(), the window advances to seq and
// the ring blocks it skips are zeroed (RFC 6479); nothing is shifted.
//
// With anti-replay disabled, Accept returns true for every seq != 0 and only
// raises Top().
func (w *ReplayWindow) Accept(seq uint64) bool {
	r := w.accept(seq)
	return r == acceptOK || r == acceptLow
}

// Outcomes of accept.
const (
	acceptOK     = iota
	acceptLow    // accepted; the reservation is running low
	acceptReplay // a replay or too old
	acceptBeyond // accepted above the reserved limit
)

func (w *ReplayWindow) accept(seq uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.winCheckLocked(seq) {
		return acceptReplay
	}
	beyond := w.limited && seq > w.limit
	if seq > w.top {
		if w.size != 0 {
			w.winAdvanceLocked(seq)
		}
		w.top = seq
	}
	if w.size != 0 {
		w.ring[(seq>>winBlockLog)&w.mask] |= 1 << (seq & winBitMask)
	}
	switch {
	case beyond:
		return acceptBeyond
	case w.limited && w.top >= w.refillAt:
		return acceptLow
	}
	return acceptOK
}

// Restore repositions the window at seq and marks every sequence number up
// to seq as received, so that only seq' > seq is accepted: the state of a
// window that accepted everything up to seq. Use it to resume a window
// whose history is lost (after a restart, or when an SA is re-added),
// unlike SetTop, which accepts the numbers inside the window once more.
func (w *ReplayWindow) Restore(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.top = seq
	for i := range w.ring {
		w.ring[i] = ^uint64(0)
	}
	if len(w.ring) > 0 {
		// In the block holding seq, only the numbers up to seq.
		if b := seq & winBitMask; b != winBitMask {
			w.ring[(seq>>winBlockLog)&w.mask] = 1<<(b+1) - 1
		}
	}
}

// setLimit sets (or, with on false, removes) the highest sequence number
// Accept may accept, and the top at which it reports acceptLow.
func (w *ReplayWindow) setLimit(on bool, limit, refillAt uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limited, w.limit, w.refillAt = on, limit, refillAt
}

// limits returns what setLimit set.
func (w *ReplayWindow) limits() (on bool, limit, refillAt uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limited, w.limit, w.refillAt
}

// freeze limits the window to what it has accepted and returns that top.
func (w *ReplayWindow) freeze() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limited, w.limit, w.refillAt = true, w.top, math.MaxUint64
	return w.top
}

// winAdvanceLocked zeroes the ring blocks that come into use when the top
// moves from w.top to seq (> w.top).
func (w *ReplayWindow) winAdvanceLocked(seq uint64) {
	cur := w.top >> winBlockLog
	diff := seq>>winBlockLog - cur
	if n := w.mask + 1; diff > n {
		diff = n // every block is stale: clear the whole ring once
	}
	for i := uint64(1); i <= diff; i++ {
		w.ring[(cur+i)&w.mask] = 0
	}
}

// Advance moves the window forward so that Top() is at least seq, keeping
// the history of the sequence numbers still inside it (unlike SetTop); seq
// itself is not marked received. It does nothing if seq <= Top(). Use it on
// a live SA, e.g. when an NDIS UPDATE_SA pushes new ESN high-order bits.
func (w *ReplayWindow) Advance(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if seq <= w.top {
		return
	}
	if w.size != 0 {
		w.winAdvanceLocked(seq)
	}
	w.top = seq
}

// SetTop repositions the window so that Top() == seq and forgets which
// sequence numbers were received: afterwards every seq' > seq, and every
// non-zero seq' with seq-Size() < seq' <= seq (including seq itself), is
// accepted once. Use it when (re)initialising the receive state, for example
// to apply the initial ESN high-order bits of a new SA (SetTop(uint64(hi)<<32))
// or when the stack resynchronises the ESN high bits with an NDIS UPDATE_SA.
// Because the replay history is discarded, calling it on a live SA lets up to
// Size() already received packets be accepted again.
func (w *ReplayWindow) SetTop(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.top = seq
	clear(w.ring)
}
