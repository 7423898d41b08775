package sadb

import (
	"slices"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// SAInfo describes one SA of a bundle, with its live state.
type SAInfo struct {
	Proto  string     `json:"proto"`
	SPI    saspec.SPI `json:"spi"`
	Enc    string     `json:"enc,omitempty"`
	Auth   string     `json:"auth"`
	ICVLen int        `json:"icv_len"`
	// Seq is the last sequence number sent (outbound) or the highest
	// accepted (inbound), 64 bits with ESN.
	Seq uint64 `json:"seq"`
	// SeqHigh is the high half of Seq (the ESN high-order bits).
	SeqHigh uint32 `json:"seq_high"`
	// ReplayWindow is the inbound anti-replay window (0 = off).
	ReplayWindow int                `json:"replay_window,omitempty"`
	Counters     sa.CounterSnapshot `json:"counters"`
	// SoftExpired: a soft limit was reached (delete requested).
	SoftExpired bool `json:"soft_expired,omitempty"`
	// Expired: a hard limit was reached or the SA was deleted.
	Expired bool `json:"expired,omitempty"`
	// SeqExhausted: an outbound SA used up its sequence numbers.
	SeqExhausted bool  `json:"seq_exhausted,omitempty"`
	AgeSeconds   int64 `json:"age_seconds"`
}

// BundleInfo describes a bundle: its spec (keys only if asked for) and the
// state of its SAs.
type BundleInfo struct {
	Handle  sa.Handle         `json:"handle"`
	Origin  string            `json:"origin"`
	Created time.Time         `json:"created"`
	Spec    saspec.BundleSpec `json:"spec"`
	SAs     []SAInfo          `json:"sas"`
}

func saInfo(s *sa.SA) SAInfo {
	i := SAInfo{
		Proto: s.Proto.String(), SPI: saspec.SPI(s.SPI), Enc: string(s.Suite.Enc()), Auth: string(s.Suite.Auth()),
		ICVLen: s.Suite.ICVLen(), Counters: s.Stats.Snapshot(),
		SoftExpired: s.SoftExpired(), Expired: s.Expired(),
		AgeSeconds: int64(s.Age() / time.Second),
	}
	if s.Dir == sa.Out {
		i.Seq = s.LastSeq()
		i.SeqExhausted = i.Seq >= s.MaxSeq()
	} else {
		i.Seq = s.Replay.Top()
		i.ReplayWindow = s.Replay.Size()
	}
	i.SeqHigh = uint32(i.Seq >> 32)
	return i
}

func (be *bundleEntry) info(keys bool) BundleInfo {
	spec := be.spec.Clone()
	if !keys {
		spec = spec.Redacted()
	}
	if spec.Offload == "" {
		// The listing shows the mode the bundle runs in: a bundle that
		// did not name one has its NIC's.
		spec.Offload = "crypto"
		if be.b.PacketOffload {
			spec.Offload = "packet"
		}
	}
	bi := BundleInfo{Handle: be.b.Handle, Origin: be.origin, Created: be.created, Spec: spec}
	for _, s := range be.b.SAs() {
		bi.SAs = append(bi.SAs, saInfo(s))
	}
	return bi
}

// Get describes the bundle with the given handle or name. Keys are
// included only if keys is true.
func (t *Table) Get(ref string, keys bool) (BundleInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	be, err := t.lookupLocked(ref)
	if err != nil {
		return BundleInfo{}, err
	}
	return be.info(keys), nil
}

// List describes every bundle, by handle. Keys are included only if keys
// is true.
func (t *Table) List(keys bool) []BundleInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]BundleInfo, 0, len(t.bundles))
	for _, be := range t.bundles {
		out = append(out, be.info(keys))
	}
	slices.SortFunc(out, func(a, b BundleInfo) int { return cmpHandle(a.Handle, b.Handle) })
	return out
}

// ListPage describes at most limit bundles (limit < 1 means one), those
// with the lowest handles above after, in handle order, and reports
// whether there are more; the next page starts after the last handle
// returned. Its memory is bounded by limit, not by the table: it is what
// the control API pages its listing with. A bundle added while a listing
// is paged shows up on a later page if its handle is higher.
func (t *Table) ListPage(after sa.Handle, limit int, keys bool) (page []BundleInfo, more bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bes, more := t.pageLocked(after, limit)
	page = make([]BundleInfo, len(bes))
	for i, be := range bes {
		page[i] = be.info(keys)
	}
	return page, more
}

// pageLocked returns the at most limit (at least one) entries with the
// lowest handles above after, sorted, and whether more follow. It scans
// the table once and keeps at most 2*limit+1 entries.
func (t *Table) pageLocked(after sa.Handle, limit int) ([]*bundleEntry, bool) {
	limit = max(limit, 1)
	byHandle := func(a, b *bundleEntry) int { return cmpHandle(a.b.Handle, b.b.Handle) }
	keep := make([]*bundleEntry, 0, min(2*limit+1, len(t.bundles)))
	more := false
	for h, be := range t.bundles {
		if h <= after {
			continue
		}
		if len(keep) == 2*limit+1 {
			slices.SortFunc(keep, byHandle)
			keep, more = keep[:limit], true
		}
		if more && h > keep[limit-1].b.Handle {
			continue // beyond this page
		}
		keep = append(keep, be)
	}
	slices.SortFunc(keep, byHandle)
	if len(keep) > limit {
		keep, more = keep[:limit], true
	}
	return keep, more
}

func cmpHandle(a, b sa.Handle) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SAStats are one SA's counters.
type SAStats struct {
	Handle   sa.Handle          `json:"handle"`
	Name     string             `json:"name,omitempty"`
	Dir      string             `json:"dir"`
	Proto    string             `json:"proto"`
	SPI      saspec.SPI         `json:"spi"`
	Counters sa.CounterSnapshot `json:"counters"`
}

// TableStats summarizes the table and lists per-SA counters.
type TableStats struct {
	Usage    capabilities.Usage `json:"usage"`
	Capacity uint32             `json:"capacity"`
	Policies int                `json:"policies"`
	SAs      []SAStats          `json:"sas"`
	// Acquire counts the acquire events raised and the packets whose
	// acquire the rate limit suppressed.
	Acquire AcquireStats `json:"acquire"`
}

// StatsPage returns the table's usage and the counters of the SAs of at
// most limit bundles, those with the lowest handles above after (as
// ListPage), and whether more bundles follow.
func (t *Table) StatsPage(after sa.Handle, limit int) (TableStats, bool) {
	t.mu.Lock()
	st := TableStats{Usage: t.usage, Policies: len(t.policies), SAs: []SAStats{}}
	bes, more := t.pageLocked(after, limit)
	t.mu.Unlock()
	st.Capacity = t.caps.Current().SaOffloadCapacity
	for _, be := range bes {
		st.SAs = be.appendStats(st.SAs)
	}
	return st, more
}

func (be *bundleEntry) appendStats(out []SAStats) []SAStats {
	for _, s := range be.b.SAs() {
		out = append(out, SAStats{Handle: be.b.Handle, Name: be.b.Name, Dir: be.b.Dir.String(),
			Proto: s.Proto.String(), SPI: saspec.SPI(s.SPI), Counters: s.Stats.Snapshot()})
	}
	return out
}

// Stats returns the table's usage and per-SA counters.
func (t *Table) Stats() TableStats {
	t.mu.Lock()
	st := TableStats{Usage: t.usage, Policies: len(t.policies), SAs: []SAStats{}}
	hs := make([]*bundleEntry, 0, len(t.bundles))
	for _, be := range t.bundles {
		hs = append(hs, be)
	}
	t.mu.Unlock()
	st.Capacity = t.caps.Current().SaOffloadCapacity
	st.Acquire = t.AcquireStats()
	slices.SortFunc(hs, func(a, b *bundleEntry) int { return cmpHandle(a.b.Handle, b.b.Handle) })
	for _, be := range hs {
		st.SAs = be.appendStats(st.SAs)
	}
	return st
}
