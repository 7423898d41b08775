package sadb

import (
	"github.com/secnic/secnic/internal/cow"
	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// tx builds the next snapshot; commit publishes it, then closes deleted
// SAs and emits events.
type tx struct {
	t       *Table
	s       *Snapshot
	inExact cow.Writer[inKey, saRef]
	inWild  cow.Writer[wildKey, saRef]
	bundles cow.Writer[sa.Handle, *sa.Bundle]
	pol     [2]cow.Writer[polKey, *Resolved]
	shapes  [2]bool
	// batch: the request changes several bundles; each is logged at
	// Debug and the request once at Info (logBundle).
	batch   bool
	closing []*bundleEntry
	events  []Event

	// The ledger updates of the change; commit makes them durable first.
	ltx *ledger.Tx
	// durable: the change installs SAs whose reservations must be on
	// stable storage before they are published; if that fails, undo
	// reverts the table's indexes and built lists the bundles to close.
	durable bool
	undo    []func()
	undoing bool
	built   []*sa.Bundle
}

func (t *Table) begin() *tx {
	old := t.snap.Load()
	s := new(Snapshot)
	*s = *old
	s.gen = old.gen + 1
	x := &tx{t: t, s: s, ltx: t.ledger.Begin()}
	x.inExact.Init(&s.inExact)
	x.inWild.Init(&s.inWild)
	x.bundles.Init(&s.bundles)
	x.pol[0].Init(&s.pol[0].m)
	x.pol[1].Init(&s.pol[1].m)
	return x
}

// commit makes the change's ledger updates durable, then publishes the
// snapshot, closes deleted SAs and emits events. If the ledger cannot
// record reservations that new SAs need, nothing changes (the indexes are
// reverted) and commit returns an ErrState error.
func (x *tx) commit() error {
	t := x.t
	if err := x.ltx.Commit(); err != nil {
		if x.durable {
			x.abort()
			return &saspec.Error{Kind: saspec.ErrState, Msg: err.Error() + "; nothing was changed", Err: err}
		}
		// Only exact final values (lower inbound records) were lost; the
		// durable records are higher, which is safe.
		t.log.Error("state directory: could not record final sequence numbers", "err", err)
	}
	for d := range 2 {
		if !x.shapes[d] {
			continue
		}
		shapes := make([]shape, 0, len(t.shapes[d]))
		for _, st := range t.shapes[d] {
			if st.n == 0 {
				continue
			}
			minP := 0
			first := true
			for p := range st.prios {
				if first || p < minP {
					minP, first = p, false
				}
			}
			shapes = append(shapes, shape{shapeDesc: st.desc, id: st.id, minPrio: minP})
		}
		sortShapes(shapes)
		x.s.pol[d].shapes = shapes
	}
	t.snap.Store(x.s)
	for _, be := range x.closing {
		for _, s := range be.b.SAs() {
			s.Close()
			t.uses.set(s, nil)
		}
		be.spec.Wipe()
	}
	for _, e := range x.events {
		t.bus.emit(e)
	}
	return nil
}

// abort reverts the indexes changed by x and closes the SAs it built.
func (x *tx) abort() {
	x.undoing = true
	for i := len(x.undo) - 1; i >= 0; i-- {
		x.undo[i]()
	}
	x.ltx.Discard()
	for _, b := range x.built {
		for _, s := range b.SAs() {
			s.Close()
			x.t.uses.set(s, nil)
		}
	}
	x.undo, x.built, x.events, x.closing = nil, nil, nil, nil
}

// onUndo records how to revert a change of the indexes.
func (x *tx) onUndo(f func()) {
	if !x.undoing {
		x.undo = append(x.undo, f)
	}
}
