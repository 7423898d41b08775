package sadb

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

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

// keyUse is the table's record of one SA's key.
type keyUse struct {
	fp         ledger.Fingerprint
	persistent bool // reservations are written to a state directory

	mu     sync.Mutex
	rec    ledger.Record // identity; Seq = the last committed reservation
	margin uint64

	lastTop uint64 // the reserver's
}

func (u *keyUse) record() ledger.Record {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rec
}

// keyUses maps the table's SAs to their key records; the table and its
// reserver goroutine both use it.
type keyUses struct {
	mu sync.Mutex
	m  map[*sa.SA]*keyUse
}

func (k *keyUses) get(s *sa.SA) *keyUse {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.m[s]
}

func (k *keyUses) set(s *sa.SA, u *keyUse) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[*sa.SA]*keyUse{}
	}
	if u == nil {
		delete(k.m, s)
	} else {
		k.m[s] = u
	}
}

// keyParts returns what identifies an SA's key material in the ledger.
// Outbound: the encryption key (the nonce-bearing key), or the integrity
// key when there is no encryption key; the same key bytes under another
// algorithm count as the same key. Inbound: the SPI, the destination and
// both keys, so that each inbound SA has its own record.
func keyParts(dir sa.Direction, spi uint32, dst []byte, enc, auth []byte) [][]byte {
	if dir == sa.Out {
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

func ledgerDir(d sa.Direction) ledger.Dir {
	if d == sa.In {
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
func (t *Table) claimLocked(x *tx, b *sa.Bundle, p *saspec.BundlePlan, handle sa.Handle) error {
	type claim struct {
		s     *sa.SA
		u     *keyUse
		rec   ledger.Record // Seq: the first reservation (or start, in memory)
		start uint64        // where the SA starts
		known bool          // the ledger knew the key
	}
	var claims []claim
	for _, ps := range planSAs(p) {
		s := b.ESP
		if ps.proto == sa.AH {
			s = b.AH
		}
		var dst []byte
		if p.Dst.IsValid() {
			dst = p.Dst.AsSlice()
		}
		parts := keyParts(b.Dir, s.SPI, dst, ps.spec.EncKey.Bytes(), ps.spec.AuthKey.Bytes())
		if parts == nil {
			continue
		}
		fp := t.ledger.Fingerprint(ledgerDir(b.Dir), parts...)
		rec := ledger.Record{FP: fp, Dir: ledgerDir(b.Dir), Proto: uint8(s.Proto), SPI: s.SPI, Src: p.Src, Dst: p.Dst, Enc: ps.spec.Enc, Auth: ps.spec.Auth}
		old, known := x.ltx.Get(fp)
		u := &keyUse{fp: fp, persistent: t.ledger.Persistent()}
		if b.Dir == sa.Out {
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
				return &saspec.Error{Kind: saspec.ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key is already used by outbound %s; a key serves one outbound SA: give this SA fresh keys", desc)}
			}
			if known && !old.SameSA(rec) {
				return &saspec.Error{Kind: saspec.ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key was already used by outbound %s; counter-mode nonces would repeat: give fresh keys (a rekey), or re-add the same SA (same SPI, algorithms and endpoints) to continue its sequence numbers", old.Describe())}
			}
			start := s.Progress()
			if known && old.Seq > start {
				start = old.Seq
			}
			if start >= s.MaxSeq() {
				return &saspec.Error{Kind: saspec.ErrKeyReuse, Field: field, Msg: fmt.Sprintf("this key has used up its sequence numbers as outbound %s: give fresh keys (a rekey)", rec.Describe())}
			}
			rec.Seq = start
			if u.persistent {
				u.margin = initialOutMargin
				rec.Seq = addSat(start, u.margin, s.MaxSeq())
			}
			claims = append(claims, claim{s, u, rec, start, known})
		} else {
			top := s.Progress()
			if known && old.Seq > top {
				top = old.Seq
			}
			rec.Seq = top
			if u.persistent {
				u.margin = InitialInMargin
				rec.Seq = addSat(top, u.margin, math.MaxUint64)
			}
			claims = append(claims, claim{s, u, rec, top, known && old.Seq > 0})
		}
	}
	for _, c := range claims {
		s, u := c.s, c.u
		if s.Dir == sa.Out || c.known {
			s.StartAt(c.start)
		}
		if u.persistent {
			s.BindReserver(t.res)
			s.SetReservation(c.rec.Seq, c.rec.Seq-u.margin/2)
		}
		u.rec = c.rec
		u.lastTop = s.Progress()
		t.uses.set(s, u)
		x.ltx.Put(c.rec)
		x.durable = true
	}
	return nil
}

// reserveAtLocked makes sure s may use sequence numbers up to seq plus its
// margin before an UPDATE_SA moves it to seq: the reservation is durable
// when it returns.
func (t *Table) reserveAtLocked(s *sa.SA, seq uint64) error {
	u := t.uses.get(s)
	if u == nil || !u.persistent || s.Retired() {
		return nil
	}
	max := uint64(math.MaxUint64)
	if s.Dir == sa.Out {
		max = s.MaxSeq()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	lim := addSat(seq, u.margin, max)
	if lim <= u.rec.Seq {
		return nil
	}
	rec := u.rec
	rec.Seq = lim
	tx := t.ledger.Begin()
	tx.Put(rec)
	if err := tx.Commit(); err != nil {
		return &saspec.Error{Kind: saspec.ErrState, Msg: err.Error() + "; the SA was not updated", Err: err}
	}
	if s.SetReservation(lim, lim-u.margin/2) {
		u.rec = rec
	}
	return nil
}

// retireLocked stops an SA that leaves the table (deleted, replaced, or
// the table closed) and stages its final record: an outbound SA's last
// sequence number (never lower than its reservation), an inbound SA's
// exact window top. unretireLocked undoes it.
func (t *Table) retireLocked(x *tx, s *sa.SA) {
	u := t.uses.get(s)
	if u == nil || s.Retired() {
		return
	}
	last := s.Retire()
	rec := u.record()
	if s.Dir == sa.Out {
		if last > rec.Seq {
			rec.Seq = last
			x.ltx.Put(rec)
		} else if !u.persistent {
			x.ltx.Put(rec)
		}
		return
	}
	rec.Seq = last
	x.ltx.Put(rec)
}

// unretireLocked puts a retired SA back in service (a replacement that
// failed).
func (t *Table) unretireLocked(x *tx, s *sa.SA) {
	u := t.uses.get(s)
	if u == nil || !s.Retired() {
		return
	}
	s.Unretire()
	if s.Dir == sa.In {
		x.ltx.Put(u.record()) // not lowered after all
	}
}

// addSat returns a+b, or max if that is more.
func addSat(a, b, max uint64) uint64 {
	if a > max-b {
		return max
	}
	return a + b
}
