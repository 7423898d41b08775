package tun

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// FaultConfig says what a FaultyPort does to the packets written to it.
// Each probability is per packet, from 0 (never) to 1 (always), and the
// faults are drawn in this order: drop (nothing else happens), corrupt,
// duplicate, then reorder or delay. The same Seed gives the same faults for
// the same packets.
type FaultConfig struct {
	// Seed seeds the pseudo-random choices.
	Seed uint64
	// Drop loses the packet.
	Drop float64
	// Corrupt flips one bit at a random position of the packet.
	Corrupt float64
	// Duplicate sends the packet twice.
	Duplicate float64
	// Reorder holds the packet back until ReorderDepth later packets have
	// been sent (or ReorderHold has passed).
	Reorder float64
	// ReorderDepth is how many packets overtake a reordered one; 0 means 8.
	ReorderDepth int
	// ReorderHold bounds how long a reordered packet waits for the packets
	// that overtake it; 0 means 20 ms.
	ReorderHold time.Duration
	// DelayProb holds the packet for Delay (later packets overtake it).
	DelayProb float64
	// Delay is how long a delayed packet is held.
	Delay time.Duration
}

// FaultStats count what a FaultyPort did. Written counts the packets given
// to Write, Sent those passed on (duplicates included), so Written -
// Dropped + Duplicated = Sent once nothing is held (Held is 0).
type FaultStats struct {
	Written, Sent                                      uint64
	Dropped, Corrupted, Duplicated, Reordered, Delayed uint64
	Held                                               int
}

func (s FaultStats) String() string {
	return fmt.Sprintf("written %d, sent %d: dropped %d, corrupted %d, duplicated %d, reordered %d, delayed %d, held %d",
		s.Written, s.Sent, s.Dropped, s.Corrupted, s.Duplicated, s.Reordered, s.Delayed, s.Held)
}

// FaultyPort wraps a Port and injects faults into the packets written to
// it (Read passes through untouched): a lossy, corrupting, duplicating and
// reordering link for tests. It never modifies the caller's buffers.
type FaultyPort struct {
	Port
	cfg FaultConfig

	room int // headroom left in front of each packet for the port below

	mu   sync.Mutex // guards rng, held, the inner Write
	rng  *rand.Rand
	held []heldPkt
	out  [][]byte

	written, sent, dropped, corrupted, duplicated, reordered, delayed atomic.Uint64

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type heldPkt struct {
	data  []byte
	after int       // packets still to overtake it (reorder)
	at    time.Time // release time
}

// NewFaulty returns p with faults injected on Write as cfg says. Close
// closes p; packets still held are sent first.
func NewFaulty(p Port, cfg FaultConfig) *FaultyPort {
	if cfg.ReorderDepth <= 0 {
		cfg.ReorderDepth = 8
	}
	if cfg.ReorderHold <= 0 {
		cfg.ReorderHold = 20 * time.Millisecond
	}
	f := &FaultyPort{Port: p, cfg: cfg, room: max(MaxMinOffset, MinOffset(p)), rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		stop: make(chan struct{}), done: make(chan struct{})}
	go f.releaseLoop()
	return f
}

func (f *FaultyPort) hit(p float64) bool { return p > 0 && f.rng.Float64() < p }

// Write applies the faults to each packet and passes the survivors on; it
// returns len(bufs) (a lossy link accepts everything) unless the port
// below fails.
func (f *FaultyPort) Write(bufs [][]byte, offset int) (int, error) {
	if err := checkWriteArgs(bufs, offset, 0); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.out = f.out[:0]
	for _, b := range bufs {
		f.written.Add(1)
		if f.hit(f.cfg.Drop) {
			f.dropped.Add(1)
			continue
		}
		// Headroom for the port below (a TUN device needs some).
		pkt := make([]byte, f.room+len(b)-offset)
		copy(pkt[f.room:], b[offset:])
		if len(pkt) > f.room && f.hit(f.cfg.Corrupt) {
			i := f.room + f.rng.IntN(len(pkt)-f.room)
			pkt[i] ^= 1 << f.rng.IntN(8)
			f.corrupted.Add(1)
		}
		copies := 1
		if f.hit(f.cfg.Duplicate) {
			copies = 2
			f.duplicated.Add(1)
		}
		for range copies {
			switch {
			case f.hit(f.cfg.Reorder):
				f.reordered.Add(1)
				f.held = append(f.held, heldPkt{data: pkt, after: f.cfg.ReorderDepth, at: now.Add(f.cfg.ReorderHold)})
			case f.hit(f.cfg.DelayProb):
				f.delayed.Add(1)
				f.held = append(f.held, heldPkt{data: pkt, after: 0, at: now.Add(f.cfg.Delay)})
			default:
				f.out = append(f.out, pkt)
				f.overtake()
			}
		}
	}
	f.releaseDue(now)
	return len(bufs), f.flushLocked()
}

// overtake records that one packet went past the held ones, and releases
// the reordered packets that enough packets have overtaken.
func (f *FaultyPort) overtake() {
	kept := f.held[:0]
	var due [][]byte
	for _, h := range f.held {
		if h.after > 0 {
			h.after--
			if h.after == 0 {
				due = append(due, h.data)
				continue
			}
		}
		kept = append(kept, h)
	}
	f.held = kept
	f.out = append(f.out, due...)
}

// releaseDue moves the held packets whose time has come to the output.
func (f *FaultyPort) releaseDue(now time.Time) {
	kept := f.held[:0]
	for _, h := range f.held {
		if !now.Before(h.at) {
			f.out = append(f.out, h.data)
			continue
		}
		kept = append(kept, h)
	}
	f.held = kept
}

func (f *FaultyPort) flushLocked() error {
	if len(f.out) == 0 {
		return nil
	}
	n, err := f.Port.Write(f.out, f.room)
	f.sent.Add(uint64(n))
	f.out = f.out[:0]
	return err
}

func (f *FaultyPort) releaseLoop() {
	defer close(f.done)
	tk := time.NewTicker(time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-tk.C:
			f.mu.Lock()
			if len(f.held) > 0 {
				f.out = f.out[:0]
				f.releaseDue(now)
				_ = f.flushLocked()
			}
			f.mu.Unlock()
		}
	}
}

// Flush sends every held packet now.
func (f *FaultyPort) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.out = f.out[:0]
	for _, h := range f.held {
		f.out = append(f.out, h.data)
	}
	f.held = f.held[:0]
	return f.flushLocked()
}

// Stats returns what the port did so far.
func (f *FaultyPort) Stats() FaultStats {
	f.mu.Lock()
	held := len(f.held)
	f.mu.Unlock()
	return FaultStats{
		Written: f.written.Load(), Sent: f.sent.Load(), Dropped: f.dropped.Load(), Corrupted: f.corrupted.Load(),
		Duplicated: f.duplicated.Load(), Reordered: f.reordered.Load(), Delayed: f.delayed.Load(), Held: held,
	}
}

// Close sends the held packets, stops the release timer and closes the
// port below.
func (f *FaultyPort) Close() error {
	f.once.Do(func() {
		_ = f.Flush()
		close(f.stop)
		<-f.done
	})
	return f.Port.Close()
}

// MinOffset returns 0: the packets are copied before they are passed on.
func (f *FaultyPort) MinOffset() int { return 0 }

var _ Port = (*FaultyPort)(nil)
