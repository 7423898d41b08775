package sadb

import (
	"context"
	"sync"
	"time"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// Start runs the lifetime ticker, turns the datapath's acquires into
// acquire events and forwards capabilities indications to the event stream
// until ctx is done or Stop is called. Calling Start on a running table
// does nothing.
func (t *Table) Start(ctx context.Context) {
	t.runMu.Lock()
	defer t.runMu.Unlock()
	if t.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.cancel, t.done = cancel, done
	sub := t.caps.Subscribe(64)
	var wg sync.WaitGroup
	if t.acq != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.acquireLoop(ctx.Done())
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				sub.Unsubscribe()
				return
			case ind, ok := <-sub.C:
				if !ok {
					return
				}
				ind2 := ind
				t.bus.emit(Event{Type: EventIndication, Indication: &ind2})
			}
		}
	}()
	go func() {
		defer wg.Done()
		tk := time.NewTicker(t.tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				t.CheckLifetimes(now)
			}
		}
	}()
	go func() {
		wg.Wait()
		close(done)
	}()
}

// Stop stops what Start started and waits for it.
func (t *Table) Stop() {
	t.runMu.Lock()
	cancel, done := t.cancel, t.done
	t.cancel, t.done = nil, nil
	t.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Close stops the table and deletes every bundle and policy (keys zeroed),
// as a miniport does when the NIC goes away.
func (t *Table) Close() {
	t.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	x := t.begin()
	x.batch = len(t.bundles) > 1
	if x.batch {
		t.log.Info("SA table closed: deleting every bundle", "count", len(t.bundles))
	}
	for _, be := range t.bundles {
		t.deleteLocked(x, be)
	}
	for _, pe := range t.policies {
		t.deletePolicyLocked(x, pe)
	}
	_ = x.commit()
	if t.res != nil {
		t.res.close()
		t.res = nil
	}
}

// SeqSoftFraction sets when an outbound SA's sequence numbers count as
// running out: once fewer than MaxSeq()/SeqSoftFraction remain, a
// sa_delete_request event (reason "sequence") asks for a rekey; when they
// are used up, an sa_expired event follows.
const SeqSoftFraction = 16

// CheckLifetimes applies time lifetimes and sequence-number exhaustion to
// every SA as of now. Start calls it every tick; tests call it directly.
func (t *Table) CheckLifetimes(now time.Time) {
	t.snap.Load().EachBundle(func(b *sa.Bundle) bool {
		for _, s := range []*sa.SA{b.ESP, b.AH} {
			if s == nil {
				continue
			}
			if s.Soft.Time != 0 || s.Hard.Time != 0 {
				s.CheckTime(now)
			}
			if s.Dir != sa.Out || s.Retired() {
				continue
			}
			last, max := s.LastSeq(), s.MaxSeq()
			if last >= max-max/SeqSoftFraction && s.FireSoftOnce() {
				t.emitExpiry(b, s, false, ReasonSequence)
			}
			if last >= max && s.FireSeqExhaustedOnce() {
				t.emitExpiry(b, s, true, ReasonSequence)
			}
		}
		return true
	})
}

func (t *Table) expireHook(b *sa.Bundle) func(*sa.SA, bool) {
	return func(s *sa.SA, hard bool) { t.emitExpiry(b, s, hard, expiryReason(s, hard)) }
}

func (t *Table) emitExpiry(b *sa.Bundle, s *sa.SA, hard bool, reason string) {
	typ := EventSADeleteRequest
	if hard {
		typ = EventSAExpired
	}
	e := bundleEvent(typ, b)
	e.Proto, e.SPI, e.Reason = s.Proto.String(), saspec.SPI(s.SPI), reason
	t.bus.emit(e)
	t.log.Info("SA lifetime reached", "event", string(typ), "handle", uint64(b.Handle), "proto", e.Proto, "spi", e.SPI.String(), "reason", reason)
}

func expiryReason(s *sa.SA, hard bool) string {
	l := s.Soft
	if hard {
		l = s.Hard
	}
	switch {
	case l.Packets != 0 && s.Stats.Packets.Load() >= l.Packets:
		return ReasonPackets
	case l.Bytes != 0 && s.Stats.Bytes.Load() >= l.Bytes:
		return ReasonBytes
	}
	// Otherwise CheckTime fired it: the time limit.
	return ReasonSeconds
}
