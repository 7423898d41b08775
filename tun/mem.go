package tun

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// Defaults used by NewMemPair and NewMemPairConfig for zero fields.
const (
	DefaultMemBatch = 128
	DefaultMemMTU   = 1500
)

// MemConfig configures an in-memory port pair.
type MemConfig struct {
	// Batch is the BatchSize of both ports; 0 means DefaultMemBatch.
	Batch int
	// MTU is the largest packet each port carries, and the size of every
	// queue slot; 0 means DefaultMemMTU.
	MTU int
	// Depth is the number of packets each direction can hold; it is rounded
	// up to a power of two. 0 means 4 × Batch.
	Depth int
	// DropWhenFull makes Write drop the packets that do not fit in the queue
	// (counted by Dropped) instead of blocking until the reader makes room.
	DropWhenFull bool
}

// MemPort is one end of an in-memory port pair made by NewMemPair: what is
// written to one end is read from the other, in order.
//
// Each direction is a bounded ring of preallocated slots of MTU bytes. Write
// copies packets into free slots and Read copies them out, so neither
// allocates. By default Write blocks until every packet is queued, which gives
// a benchmark backpressure from the slower side; with MemConfig.DropWhenFull
// it queues what fits and counts the rest in Dropped, like a NIC ring.
//
// Any number of goroutines may call Read and Write concurrently. Concurrent
// writers each keep their own packets in order, but a blocking Write that has
// to wait for room may interleave with another writer's packets.
//
// Close closes both ends: pending and later calls on either end return an
// error matching os.ErrClosed, and packets still queued are discarded.
type MemPort struct {
	name      string
	batch     int
	mtu       int
	drop      bool
	in        *memRing // packets written by the peer
	out       *memRing // packets for the peer
	dropped   atomic.Uint64
	errClosed error
	pair      *memPair
}

type memPair struct {
	once sync.Once
	a, b *memRing
}

// memRing is a bounded single-direction packet queue. Writers serialize on
// wmu and own the slots in [tail, head+size); readers serialize on rmu and own
// [head, tail). head and tail only grow; publishing a new tail (or head) with an
// atomic store hands the slots to the other side. mu and the two conditions
// are used only to sleep and wake.
type memRing struct {
	slots [][]byte
	lens  []int
	mask  uint64

	wmu  sync.Mutex
	rmu  sync.Mutex
	head atomic.Uint64
	tail atomic.Uint64

	mu       sync.Mutex
	readable *sync.Cond
	writable *sync.Cond
	closed   atomic.Bool
}

var memPairCount atomic.Uint64

// NewMemPair returns two connected in-memory ports with the given batch size
// and MTU (0 selects DefaultMemBatch and DefaultMemMTU), a queue of 4 × batch
// packets in each direction, and a blocking Write.
func NewMemPair(batch, mtu int) (a, b *MemPort) {
	return NewMemPairConfig(MemConfig{Batch: batch, MTU: mtu})
}

// NewMemPairConfig returns two connected in-memory ports configured by cfg.
// Negative values are treated as zero.
func NewMemPairConfig(cfg MemConfig) (a, b *MemPort) {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultMemBatch
	}
	if cfg.MTU <= 0 {
		cfg.MTU = DefaultMemMTU
	}
	if cfg.Depth <= 0 {
		cfg.Depth = 4 * cfg.Batch
	}
	depth := 1
	for depth < cfg.Depth {
		depth <<= 1
	}
	ab, ba := newMemRing(depth, cfg.MTU), newMemRing(depth, cfg.MTU)
	pair := &memPair{a: ab, b: ba}
	id := memPairCount.Add(1) - 1
	mk := func(side string, in, out *memRing) *MemPort {
		name := fmt.Sprintf("mem%d%s", id, side)
		return &MemPort{
			name: name, batch: cfg.Batch, mtu: cfg.MTU, drop: cfg.DropWhenFull,
			in: in, out: out, pair: pair,
			errClosed: fmt.Errorf("tun: memory port %s is closed: %w", name, os.ErrClosed),
		}
	}
	return mk("a", ba, ab), mk("b", ab, ba)
}

func newMemRing(depth, mtu int) *memRing {
	r := &memRing{
		slots: make([][]byte, depth),
		lens:  make([]int, depth),
		mask:  uint64(depth - 1),
	}
	backing := make([]byte, depth*mtu)
	for i := range r.slots {
		r.slots[i] = backing[i*mtu : (i+1)*mtu : (i+1)*mtu]
	}
	r.readable = sync.NewCond(&r.mu)
	r.writable = sync.NewCond(&r.mu)
	return r
}

// Read copies up to len(bufs) queued packets into bufs[i][offset:], setting
// sizes[i], and returns their count. It blocks until at least one packet is
// queued or the pair is closed. Every buffer must hold MTU() bytes after
// offset, and len(sizes) must be at least len(bufs).
func (p *MemPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if err := checkReadArgs(bufs, sizes, offset, 1, p.mtu); err != nil {
		return 0, err
	}
	r := p.in
	r.rmu.Lock()
	defer r.rmu.Unlock()
	head := r.head.Load()
	tail := r.tail.Load()
	for tail == head {
		if r.closed.Load() {
			return 0, p.errClosed
		}
		r.mu.Lock()
		for tail = r.tail.Load(); tail == head && !r.closed.Load(); tail = r.tail.Load() {
			r.readable.Wait()
		}
		r.mu.Unlock()
	}
	if r.closed.Load() {
		return 0, p.errClosed
	}
	n := min(uint64(len(bufs)), tail-head)
	for i := range n {
		s := (head + i) & r.mask
		sizes[i] = copy(bufs[i][offset:], r.slots[s][:r.lens[s]])
	}
	r.head.Store(head + n)
	r.mu.Lock()
	r.writable.Broadcast()
	r.mu.Unlock()
	return int(n), nil
}

// Write queues bufs[i][offset:] for each i for the peer to read and returns
// the number of packets queued. A packet larger than MTU() is skipped and the
// others are queued; the error then matches ErrPacketTooBig. In blocking mode
// (the default) Write waits until every packet is queued; with DropWhenFull it
// queues what fits, counts the rest in Dropped and returns without error.
// Write does not modify bufs.
func (p *MemPort) Write(bufs [][]byte, offset int) (int, error) {
	if err := checkWriteArgs(bufs, offset, 0); err != nil {
		return 0, err
	}
	var tooBig error
	r := p.out
	r.wmu.Lock()
	defer r.wmu.Unlock()
	size := r.mask + 1
	queued, i := 0, 0
	for i < len(bufs) {
		if r.closed.Load() {
			return queued, p.errClosed
		}
		tail := r.tail.Load()
		free := size - (tail - r.head.Load())
		if free == 0 {
			if p.drop {
				p.dropped.Add(uint64(len(bufs) - i))
				break
			}
			r.mu.Lock()
			for tail-r.head.Load() == size && !r.closed.Load() {
				r.writable.Wait()
			}
			r.mu.Unlock()
			continue
		}
		k := uint64(0)
		for ; k < free && i < len(bufs); i++ {
			b := bufs[i][offset:]
			if len(b) > p.mtu {
				if tooBig == nil {
					tooBig = fmt.Errorf("%w: bufs[%d] holds a %d-byte packet, MTU of %s is %d", ErrPacketTooBig, i, len(b), p.name, p.mtu)
				}
				continue
			}
			s := (tail + k) & r.mask
			r.lens[s] = copy(r.slots[s], b)
			k++
		}
		if k == 0 {
			continue
		}
		r.tail.Store(tail + k)
		queued += int(k)
		r.mu.Lock()
		r.readable.Broadcast()
		r.mu.Unlock()
	}
	return queued, tooBig
}

// Close closes both ends of the pair and wakes every blocked Read and Write.
// It always returns nil; closing again has no effect.
func (p *MemPort) Close() error {
	p.pair.once.Do(func() {
		for _, r := range []*memRing{p.pair.a, p.pair.b} {
			r.mu.Lock()
			r.closed.Store(true)
			r.readable.Broadcast()
			r.writable.Broadcast()
			r.mu.Unlock()
		}
	})
	return nil
}

// BatchSize returns the batch size the pair was made with.
func (p *MemPort) BatchSize() int { return p.batch }

// MTU returns the largest packet the port carries.
func (p *MemPort) MTU() int { return p.mtu }

// Name returns a name of the form "mem<N>a" or "mem<N>b".
func (p *MemPort) Name() string { return p.name }

// MinOffset returns 0: a memory port needs no headroom.
func (p *MemPort) MinOffset() int { return 0 }

// Dropped returns the number of packets written to this end that were
// dropped because the queue toward the peer was full (DropWhenFull only).
func (p *MemPort) Dropped() uint64 { return p.dropped.Load() }

// Queued returns the number of packets waiting to be read from this end.
func (p *MemPort) Queued() int {
	head := p.in.head.Load() // head first: it never passes a later tail
	return int(p.in.tail.Load() - head)
}

// Ready reports whether a Read would return at once (tun.Poller).
func (p *MemPort) Ready() bool { return p.Queued() > 0 || p.in.closed.Load() }

var (
	_ Port   = (*MemPort)(nil)
	_ Poller = (*MemPort)(nil)
)
