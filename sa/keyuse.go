package sa

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/secnic/secnic/ledger"
)

// ErrKeyReuse: an outbound SA would use key material that another outbound
// SA uses or used (a repeated (key, nonce) pair).
var ErrKeyReuse = errors.New("key reuse")

// ErrSeqReserve is returned by NextSeq when the SA has used every sequence
// number reserved in the state directory and the next reservation is not
// on stable storage yet; the packet is dropped (SecnicOutSeqReserve).
var ErrSeqReserve = OutSeqReserve

// Reservation margins, in sequence numbers. A new SA starts with the
// initial margin; the reserver then adapts each SA's margin to its packet
// rate (about four seconds of traffic outbound, one second inbound), within
// these bounds. Outbound, the reservation is a hard limit: no number above
// it is sent before it is durable. Inbound, the margin is what a crash may
// cost: after a restart the window starts at the last reserved number, so
// up to one margin of the peer's next packets is refused
// (docs/reliability.md).
const (
	MinOutMargin     = 1 << 12
	MaxOutMargin     = 1 << 24
	MinInMargin      = 1 << 4
	InitialInMargin  = 1 << 10
	MaxInMargin      = 1 << 20
	initialOutMargin = 1 << 16
)

// keyUse ties an SA to its ledger record.
type keyUse struct {
	fp  ledger.Fingerprint
	rec ledger.Record // identity; Seq = the last committed reservation
	res *reserver     // nil: a memory ledger (no reservations)

	mu        sync.Mutex // orders limit changes against freeze
	frozen    atomic.Bool
	frozenSeq uint64 // outbound: the counter when frozen
	frozenLim uint64 // inbound: the limit when frozen
	frozenOn  bool   // inbound: whether the window was limited

	kicked atomic.Bool   // a refill is queued
	wanted atomic.Uint64 // inbound: highest verified number refused over the limit

	// Owned by the reserver goroutine.
	margin  uint64
	lastTop uint64
}

// lowReserve asks the reserver for more sequence numbers (once until it
// has answered).
func (s *SA) lowReserve() {
	u := s.use
	if u == nil || u.res == nil || u.frozen.Load() {
		return
	}
	if u.kicked.CompareAndSwap(false, true) {
		u.res.kick(s)
	}
}

// AcceptSeq marks seq as received once the packet's ICV has verified
// (RFC 4303 3.4.3). It returns ReasonNone, or InStateSeqError for a
// replay or a number left of the window. A packet above the replay state
// already durable in the state directory is accepted too (dropping it
// would cost every burst after a quiet period a loss), counted in
// Stats.BeyondReserve, and the reserver is asked to catch up at once.
func (s *SA) AcceptSeq(seq uint64) Reason {
	switch s.Replay.accept(seq) {
	case acceptOK:
		return ReasonNone
	case acceptLow:
		s.lowReserve()
		return ReasonNone
	case acceptBeyond:
		s.Stats.BeyondReserve.Add(1)
		if u := s.use; u != nil {
			for {
				w := u.wanted.Load()
				if seq <= w || u.wanted.CompareAndSwap(w, seq) {
					break
				}
			}
		}
		s.lowReserve()
		return ReasonNone
	}
	return InStateSeqError
}

// KeyFingerprintParts returns what identifies an SA's key material in the
// ledger. Outbound: the encryption key (the nonce-bearing key), or the
// integrity key when there is no encryption key; the same key bytes under
// another algorithm count as the same key. Inbound: the SPI, the
// destination and both keys, so that each inbound SA has its own record.
func keyParts(dir Direction, spi uint32, dst []byte, enc, auth []byte) [][]byte {
	if dir == Out {
		if len(enc) > 0 {
			return [][]byte{[]byte("enc"), enc}
		}
		if len(auth) > 0 {
			return [][]byte{[]byte("auth"), auth}
		}
		return nil
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	return [][]byte{[]byte("in"), b[:], dst, enc, auth}
}

func ledgerDir(d Direction) ledger.Dir {
	if d == In {
		return ledger.In
	}
	return ledger.Out
}

// claimLocked binds the SAs of a freshly built bundle to the ledger: it
// refuses an outbound key that a live outbound SA uses or that another SA
// used, continues the sequence numbers (outbound) or closes the window
// (inbound) of an SA seen before, and stages the reservations, which
// commit makes durable before the bundle is published. On error nothing
// is staged.
func (t *Table) claimLocked(x *tx, b *Bundle, p *bundlePlan, handle Handle) error {
	type claim struct {
		s   *SA
		u   *keyUse
		rec ledger.Record
	}
	var claims []claim
	for _, ps := range p.sas() {
		s := b.ESP
		if ps.proto == AH {
			s = b.AH
		}
		var dst []byte
		if p.dst.IsValid() {
			dst = p.dst.AsSlice()
		}
		parts := keyParts(b.Dir, s.SPI, dst, ps.spec.EncKey.Bytes(), ps.spec.AuthKey.Bytes())
		if parts == nil {
			continue
		}
		fp := t.ledger.Fingerprint(ledgerDir(b.Dir), parts...)
		rec := ledger.Record{FP: fp, Dir: ledgerDir(b.Dir), Proto: uint8(s.Proto), SPI: s.SPI, Src: p.src, Dst: p.dst, Enc: ps.spec.Enc, Auth: ps.spec.Auth}
		old, known := x.ltx.Get(fp)
		u := &keyUse{fp: fp}
		if t.ledger.Persistent() {
			u.res = t.res
		}
		if b.Dir == Out {
			field := ps.field + ".enc_key"
			if ps.spec.EncKey.Len() == 0 {
				field = ps.field + ".auth_key"
			}
			h, live := t.live[fp]
			for _, c := range claims {
				if c.u.fp == fp {
					h, live = handle, true
				}
			}
			if live {
				desc := fmt.Sprintf("bundle %d", h)
				if be := t.bundles[h]; be != nil && be.b.Name != "" {
					desc = fmt.Sprintf("bundle %d (%q)", h, be.b.Name)
				}
				if known {
					desc = old.Describe() + " of " + desc
				}
				return &Error{Kind: ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key is already used by outbound %s; a key serves one outbound SA: give this SA fresh keys", desc)}
			}
			if known && !old.SameSA(rec) {
				return &Error{Kind: ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key was already used by outbound %s; counter-mode nonces would repeat: give fresh keys (a rekey), or re-add the same SA (same SPI, algorithms and endpoints) to continue its sequence numbers", old.Describe())}
			}
			start := s.seq.Load()
			if known && old.Seq > start {
				start = old.Seq
			}
			max := s.MaxSeq()
			if start >= max {
				return &Error{Kind: ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key has used up its sequence numbers as outbound %s: give fresh keys (a rekey)", rec.Describe())}
			}
			s.seq.Store(start)
			rec.Seq = start
			if u.res != nil {
				u.margin = initialOutMargin
				lim := satAdd(start, u.margin, max)
				s.limit.Store(lim)
				s.refillAt.Store(lim - u.margin/2)
				rec.Seq = lim
			}
		} else {
			top := s.Replay.Top()
			if known && old.Seq > 0 {
				if old.Seq > top {
					top = old.Seq
				}
				s.Replay.Restore(top)
			}
			rec.Seq = top
			if u.res != nil {
				u.margin = InitialInMargin
				lim := satAdd(top, u.margin, math.MaxUint64)
				s.Replay.setLimit(true, lim, lim-u.margin/2)
				rec.Seq = lim
			}
		}
		claims = append(claims, claim{s, u, rec})
	}
	for _, c := range claims {
		c.u.rec = c.rec
		c.u.lastTop = c.rec.Seq
		c.s.use = c.u
		x.ltx.Put(c.rec)
		x.durable = true
	}
	return nil
}

// reserveAtLocked makes sure s may use sequence numbers up to seq plus its
// margin before an UPDATE_SA moves it to seq: the reservation is durable
// when it returns.
func (t *Table) reserveAtLocked(s *SA, seq uint64) error {
	u := s.use
	if u == nil || u.res == nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.frozen.Load() {
		return nil
	}
	max := uint64(math.MaxUint64)
	if s.Dir == Out {
		max = s.MaxSeq()
	}
	lim := satAdd(seq, u.margin, max)
	if lim <= u.rec.Seq {
		return nil
	}
	rec := u.rec
	rec.Seq = lim
	tx := t.ledger.Begin()
	tx.Put(rec)
	if err := tx.Commit(); err != nil {
		return &Error{Kind: ErrState, Msg: err.Error() + "; the SA was not updated", Err: err}
	}
	u.rec = rec
	if s.Dir == Out {
		s.limit.Store(lim)
		s.refillAt.Store(lim - u.margin/2)
	} else {
		s.Replay.setLimit(true, lim, lim-u.margin/2)
	}
	return nil
}

func satAdd(a, b, max uint64) uint64 {
	if a > max-b {
		return max
	}
	return a + b
}

// freeze stops an SA that leaves the table (deleted, replaced, or the
// table closed): an outbound SA sends nothing more and its last sequence
// number is recorded; an inbound SA accepts nothing above what it has
// accepted, and its record is lowered to exactly that. thaw undoes it.
func (s *SA) freeze(x *tx) {
	u := s.use
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.frozen.Load() {
		return
	}
	u.frozen.Store(true)
	rec := u.rec
	if s.Dir == Out {
		u.frozenSeq = s.seq.Swap(math.MaxUint64)
		if u.frozenSeq > rec.Seq {
			rec.Seq = u.frozenSeq
		}
		if rec.Seq != u.rec.Seq || u.res == nil {
			x.ltx.Put(rec)
		}
		return
	}
	u.frozenOn, u.frozenLim, _ = s.Replay.limits()
	rec.Seq = s.Replay.freeze()
	x.ltx.Put(rec)
}

// thaw puts a frozen SA back in service (a replacement that failed).
func (s *SA) thaw(x *tx) {
	u := s.use
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.frozen.Load() {
		return
	}
	if s.Dir == Out {
		s.seq.Store(u.frozenSeq)
	} else {
		s.Replay.setLimit(u.frozenOn, u.frozenLim, u.frozenLim)
		x.ltx.Put(u.rec) // not lowered after all
	}
	u.frozen.Store(false)
}

// retired reports whether the SA was frozen on its way out of the table.
func (s *SA) retired() bool { return s.use != nil && s.use.frozen.Load() }
