package sadb

import (
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
)

// reserveTick is how often the reserver adapts margins to packet rates.
const reserveTick = 500 * time.Millisecond

// reserver keeps the sequence-number reservations of SAs bound to a
// persistent ledger ahead of their use, off the per-packet path: the
// datapath only loads an atomic limit and, once per half margin, calls Low,
// which queues the SA here. Each refill is written and synced to the state
// directory before the datapath may use the numbers it covers.
type reserver struct {
	l    *ledger.Ledger
	log  *slog.Logger
	snap func() *Snapshot
	uses *keyUses

	mu      sync.Mutex
	pending []*sa.SA
	kickc   chan struct{}
	stop    chan struct{}
	done    chan struct{}
	failing bool
}

func newReserver(l *ledger.Ledger, log *slog.Logger, snap func() *Snapshot, uses *keyUses) *reserver {
	r := &reserver{l: l, log: log, snap: snap, uses: uses, kickc: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// Low queues s for a refill (sa.Reserver).
func (r *reserver) Low(s *sa.SA) {
	r.mu.Lock()
	r.pending = append(r.pending, s)
	r.mu.Unlock()
	select {
	case r.kickc <- struct{}{}:
	default:
	}
}

func (r *reserver) close() {
	close(r.stop)
	<-r.done
}

func (r *reserver) run() {
	defer close(r.done)
	tk := time.NewTicker(reserveTick)
	defer tk.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case <-r.kickc:
			r.mu.Lock()
			batch := r.pending
			r.pending = nil
			r.mu.Unlock()
			r.refill(batch)
		case now := <-tk.C:
			r.maintain(now.Sub(last))
			last = now
		}
	}
}

// plan is one SA's next reservation.
type plan struct {
	s      *sa.SA
	u      *keyUse
	lim    uint64
	margin uint64
	lower  bool // inbound: the limit was lowered before the record
}

// refill extends the reservations of the SAs in batch.
func (r *reserver) refill(batch []*sa.SA) {
	var plans []plan
	for _, s := range batch {
		u := r.uses.get(s)
		if u == nil {
			s.LowHandled()
			continue
		}
		u.mu.Lock()
		p, ok := r.next(s, u)
		u.mu.Unlock()
		if ok {
			plans = append(plans, p)
		} else {
			s.LowHandled()
		}
	}
	r.apply(plans)
}

// next computes the next limit of s, if it needs one; u.mu is held.
func (r *reserver) next(s *sa.SA, u *keyUse) (plan, bool) {
	if s.Retired() {
		return plan{}, false
	}
	m := u.margin
	cur, lim := s.Progress(), s.Reservation()
	max := uint64(math.MaxUint64)
	if s.Dir == sa.Out {
		max = s.MaxSeq()
		if cur >= lim {
			m = min(m*4, MaxOutMargin) // the datapath hit the wall
		}
	} else if w := s.Wanted(); w > cur {
		cur = w
		if w > lim {
			m = min(m*4, MaxInMargin)
		}
	}
	want := addSat(cur, m, max)
	if want <= lim {
		return plan{}, false
	}
	return plan{s: s, u: u, lim: want, margin: m}, true
}

// apply stages, commits and then publishes plans.
func (r *reserver) apply(plans []plan) {
	if len(plans) == 0 {
		return
	}
	tx := r.l.Begin()
	for _, p := range plans {
		rec := p.u.record()
		rec.Seq = p.lim
		tx.Put(rec)
	}
	if err := tx.Commit(); err != nil {
		if !r.failing {
			r.failing = true
			r.log.Error("cannot reserve sequence numbers in the state directory: SAs stop sending when their reservation runs out; fix the disk and restart secnic", "err", err)
		}
		for _, p := range plans {
			p.s.LowHandled()
		}
		return
	}
	r.failing = false
	for _, p := range plans {
		u := p.u
		u.mu.Lock()
		if p.lower || p.s.SetReservation(p.lim, p.lim-p.margin/2) {
			u.rec.Seq = p.lim
			u.margin = p.margin
		}
		u.mu.Unlock()
		p.s.LowHandled()
	}
}

// maintain adapts every SA's margin to its packet rate over the last
// interval dt: it grows margins of busy SAs (and refills them early), and
// shrinks those of quiet inbound SAs, lowering their limit (memory first,
// then the record), so that a crash refuses at most about one second of
// the peer's traffic.
func (r *reserver) maintain(dt time.Duration) {
	if dt <= 0 {
		dt = reserveTick
	}
	var plans []plan
	r.snap().EachBundle(func(b *sa.Bundle) bool {
		for _, s := range []*sa.SA{b.ESP, b.AH} {
			if s == nil || s.Retired() {
				continue
			}
			u := r.uses.get(s)
			if u == nil || !u.persistent {
				continue
			}
			if p, ok := r.adapt(s, u, dt); ok {
				plans = append(plans, p)
			}
		}
		return true
	})
	r.apply(plans)
}

func (r *reserver) adapt(s *sa.SA, u *keyUse, dt time.Duration) (plan, bool) {
	u.mu.Lock() // margin is read by Table.Update under the same lock
	defer u.mu.Unlock()
	cur := s.Progress()
	adv := uint64(0)
	if cur > u.lastTop {
		adv = cur - u.lastTop
	}
	u.lastTop = cur
	perSec := uint64(float64(adv) / dt.Seconds())
	if s.Dir == sa.Out {
		d := clampPow2(4*perSec, MinOutMargin, MaxOutMargin)
		if d > u.margin || d*4 < u.margin {
			u.margin = d
		}
		return r.next(s, u)
	}
	d := clampPow2(perSec, MinInMargin, MaxInMargin)
	lim := s.Reservation()
	switch {
	case d > u.margin:
		u.margin = d
		if lim < cur || lim-cur < d/2 {
			return r.next(s, u)
		}
	case d*4 < u.margin:
		u.margin = d
		if lim > cur && lim-cur > 2*d {
			// Lower the limit in memory first: from now on the record
			// written next covers everything accepted; until it is
			// durable, the higher one on disk does.
			if nl, ok := s.LowerReservation(d); ok {
				return plan{s: s, u: u, lim: nl, margin: d, lower: true}, true
			}
		}
	}
	return plan{}, false
}

// clampPow2 rounds v up to a power of two within [lo, hi].
func clampPow2(v, lo, hi uint64) uint64 {
	if v <= lo {
		return lo
	}
	if v >= hi {
		return hi
	}
	return 1 << (64 - bits.LeadingZeros64(v-1))
}
