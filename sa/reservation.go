package sa

import (
	"math"
	"sync"
	"sync/atomic"
)

// ErrSeqReserve is returned by NextSeq when the SA has used every sequence
// number reserved for it and the next reservation is not on stable storage
// yet; the packet is dropped (SecnicOutSeqReserve).
var ErrSeqReserve = OutSeqReserve

// A Reserver keeps an SA's reservation ahead of its use: the SA calls Low
// (once, until LowHandled) when it has used half of what is reserved, or
// all of it. Low runs on the datapath and must not block. The SA table's
// reserver (package sadb) writes reservations to the state directory.
type Reserver interface {
	Low(s *SA)
}

// reservation is an SA's side of its reservation: the limit itself lives
// in SA.limit (outbound) or the replay window (inbound).
type reservation struct {
	r         Reserver
	mu        sync.Mutex // orders limit changes against Retire
	retired   atomic.Bool
	frozenSeq uint64 // outbound: the counter when retired
	frozenLim uint64 // inbound: the limit when retired
	frozenOn  bool   // inbound: whether the window was limited
	kicked    atomic.Bool
	wanted    atomic.Uint64 // inbound: highest verified number above the limit
}

// BindReserver makes r the SA's reserver. Call it before the SA is in use,
// with the first reservation set by SetReservation.
func (s *SA) BindReserver(r Reserver) { s.resv.r = r }

// lowReserve asks the reserver for more sequence numbers (once until it
// has answered).
func (s *SA) lowReserve() {
	v := &s.resv
	if v.r == nil || v.retired.Load() {
		return
	}
	if v.kicked.CompareAndSwap(false, true) {
		v.r.Low(s)
	}
}

// LowHandled tells the SA that its reserver has answered a Low.
func (s *SA) LowHandled() { s.resv.kicked.Store(false) }

// Wanted returns the highest verified inbound sequence number that arrived
// above the reservation (0 if none).
func (s *SA) Wanted() uint64 { return s.resv.wanted.Load() }

// Progress returns how far the SA has come: the last sequence number sent
// (outbound) or the top of the replay window (inbound).
func (s *SA) Progress() uint64 {
	if s.Dir == Out {
		return s.seq.Load()
	}
	return s.Replay.Top()
}

// Reservation returns the SA's current limit: the highest sequence number
// it may send (outbound) or that is covered by durable replay state
// (inbound); MaxUint64 when unlimited.
func (s *SA) Reservation() uint64 {
	if s.Dir == Out {
		return s.limit.Load()
	}
	on, lim, _ := s.Replay.limits()
	if !on {
		return math.MaxUint64
	}
	return lim
}

// SetReservation sets the SA's limit and the number at which it calls its
// reserver's Low. Outbound, limit only ever grows; inbound it may go down
// (the window accepts nothing above it; see AcceptSeq). It returns false,
// changing nothing, once the SA is retired.
func (s *SA) SetReservation(limit, lowAt uint64) bool {
	v := &s.resv
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.retired.Load() {
		return false
	}
	if s.Dir == Out {
		if limit > s.limit.Load() || s.limit.Load() == math.MaxUint64 {
			s.limit.Store(limit)
		}
		s.refillAt.Store(lowAt)
	} else {
		s.Replay.setLimit(true, limit, lowAt)
	}
	return true
}

// LowerReservation moves an inbound SA's limit down to its window's top
// plus margin, if that is lower than the limit now, and returns the new
// limit. The window accepts nothing above the new limit from now on, so a
// record of it written afterwards covers everything accepted.
func (s *SA) LowerReservation(margin uint64) (uint64, bool) {
	v := &s.resv
	v.mu.Lock()
	defer v.mu.Unlock()
	if s.Dir != In || v.retired.Load() {
		return 0, false
	}
	on, lim, _ := s.Replay.limits()
	nl := satAdd(s.Replay.Top(), margin, math.MaxUint64)
	if on && nl >= lim {
		return 0, false
	}
	s.Replay.setLimit(true, nl, nl-margin/2)
	return nl, true
}

// StartAt continues an SA seen before: an outbound SA sends above seq; an
// inbound SA's window starts at seq with everything up to it taken as
// received (ReplayWindow.Restore). Call it before the SA is in use.
func (s *SA) StartAt(seq uint64) {
	if s.Dir == Out {
		if seq > s.seq.Load() {
			s.seq.Store(seq)
		}
		return
	}
	if seq > s.Replay.Top() {
		s.Replay.Restore(seq)
	} else if seq > 0 {
		s.Replay.Restore(s.Replay.Top())
	}
}

// Retire stops an SA that leaves its table (deleted, replaced, the table
// closed): an outbound SA sends nothing more, an inbound SA accepts nothing
// above what it has accepted. It returns the last sequence number sent
// (outbound) or accepted (inbound), exactly. Unretire undoes it.
func (s *SA) Retire() uint64 {
	v := &s.resv
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.retired.Load() {
		if s.Dir == Out {
			return v.frozenSeq
		}
		return s.Replay.Top()
	}
	v.retired.Store(true)
	if s.Dir == Out {
		v.frozenSeq = s.seq.Swap(math.MaxUint64)
		return v.frozenSeq
	}
	v.frozenOn, v.frozenLim, _ = s.Replay.limits()
	return s.Replay.freeze()
}

// Unretire puts a retired SA back in service (a replacement that failed).
func (s *SA) Unretire() {
	v := &s.resv
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.retired.Load() {
		return
	}
	if s.Dir == Out {
		s.seq.Store(v.frozenSeq)
	} else {
		s.Replay.setLimit(v.frozenOn, v.frozenLim, v.frozenLim)
	}
	v.retired.Store(false)
}

// Retired reports whether Retire was called (and not undone).
func (s *SA) Retired() bool { return s.resv.retired.Load() }

// AcceptSeq marks seq as received once the packet's ICV has verified
// (RFC 4303 3.4.3). It returns ReasonNone, or InStateSeqError for a
// replay or a number left of the window. A packet above the replay state
// already durable is accepted too (dropping it would cost every burst
// after a quiet period a loss), counted in Stats.BeyondReserve, and the
// reserver is asked to catch up at once.
func (s *SA) AcceptSeq(seq uint64) Reason {
	switch s.Replay.accept(seq) {
	case acceptOK:
		return ReasonNone
	case acceptLow:
		s.lowReserve()
		return ReasonNone
	case acceptBeyond:
		s.Stats.BeyondReserve.Add(1)
		v := &s.resv
		for {
			w := v.wanted.Load()
			if seq <= w || v.wanted.CompareAndSwap(w, seq) {
				break
			}
		}
		s.lowReserve()
		return ReasonNone
	}
	return InStateSeqError
}

// FireSoftOnce reports whether this is the first call after the SA reached
// its soft lifetime (or ran low on sequence numbers): its expiry event is
// sent once.
func (s *SA) FireSoftOnce() bool { return !s.softFired.Swap(true) }

// FireSeqExhaustedOnce reports whether this is the first call after the
// SA used up its sequence numbers.
func (s *SA) FireSeqExhaustedOnce() bool { return !s.seqHardFired.Swap(true) }

// satAdd returns a+b, or max if that is more.
func satAdd(a, b, max uint64) uint64 {
	if a > max-b {
		return max
	}
	return a + b
}
