package sadb

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// Acquire events
//
// An outbound protect policy whose bundle is missing (the packet is dropped
// with XfrmOutNoStates) or whose SA reached a hard limit (XfrmOutStateExpired,
// or its sequence numbers ran out) raises an acquire event, so that an IKE
// daemon can negotiate the SAs, as Linux raises XFRM_MSG_ACQUIRE. Linux
// limits this with a larval state per flow that lives XFRM_ACQ_EXPIRES (30
// s); secnic keeps one timestamp per policy: at most one acquire per policy
// per TableConfig.AcquirePeriod, and the packets that found the policy
// without SAs in between are counted (Suppressed of the next event, and
// AcquireStats).
//
// The datapath side (Resolved.Acquire) is one atomic load and a clock read
// per dropped packet; a packet that raises an acquire does one
// compare-and-swap and one non-blocking send of a small value on a bounded
// channel. Nothing is allocated. The event itself is built by the table's
// event goroutine (Start).

// DefaultAcquirePeriod is the least time between two acquire events of one
// policy when TableConfig.AcquirePeriod is 0: Linux's XFRM_ACQ_EXPIRES.
const DefaultAcquirePeriod = 30 * time.Second

// acquireQueue is how many acquires wait for the event goroutine; more are
// counted as lost (AcquireStats.Lost) and retried by the next packet.
const acquireQueue = 256

// Acquire reasons.
const (
	// AcquireNoState: a bundle the policy links does not exist
	// (XfrmOutNoStates).
	AcquireNoState = "no_state"
	// AcquireExpired: a linked SA reached a hard limit or used up its
	// sequence numbers (XfrmOutStateExpired, XfrmOutStateSeqError).
	AcquireExpired = "expired"
)

// Acquire is the body of an acquire event: what struct xfrm_user_acquire
// carries (the policy, the triggering packet's selector, the templates, a
// sequence number) in secnic's terms. The event's PolicyID, PolicyName and
// Dir name the policy.
type Acquire struct {
	// Seq numbers the table's acquires from 1 (xfrm_user_acquire.seq).
	Seq uint32 `json:"seq"`
	// Reason is no_state or expired.
	Reason string `json:"reason"`
	// Selector is the policy's selector.
	Selector AcquireSelector `json:"selector"`
	// Flow is the packet that found no SA.
	Flow AcquireFlow `json:"flow"`
	// Templates are what the policy wants, one per linked bundle, in the
	// policy's order (innermost first).
	Templates []AcquireTemplate `json:"templates"`
	// Suppressed counts the packets of this policy that found no SA
	// between its previous acquire event and this one and raised none
	// (the rate limit).
	Suppressed uint64 `json:"suppressed"`
}

// AcquireSelector is a policy's selector as the policy spec gives it
// (empty: any).
type AcquireSelector struct {
	Src     string `json:"src,omitempty"`
	Dst     string `json:"dst,omitempty"`
	Proto   string `json:"proto,omitempty"`
	SrcPort uint16 `json:"src_port,omitempty"`
	DstPort uint16 `json:"dst_port,omitempty"`
}

// AcquireFlow is the flow of the packet that raised an acquire. For ICMP
// and ICMPv6 the ports hold the type and the code.
type AcquireFlow struct {
	Src     netip.Addr `json:"src"`
	Dst     netip.Addr `json:"dst"`
	Proto   uint8      `json:"proto"`
	SrcPort uint16     `json:"src_port,omitempty"`
	DstPort uint16     `json:"dst_port,omitempty"`
}

// AcquireTemplate describes one bundle the policy links (an XFRM template).
// For a bundle that does not exist only Ref is known; for an existing one
// (an expired SA) the protocols, the mode and, in tunnel mode, the
// endpoints.
type AcquireTemplate struct {
	// Ref is the policy's reference to the bundle: its name or handle.
	Ref string `json:"ref"`
	// Missing is true when no bundle answers to Ref.
	Missing bool `json:"missing,omitempty"`
	// Handle is the existing bundle's handle.
	Handle sa.Handle `json:"handle,omitempty"`
	// Protos are the bundle's protocols in outbound order (esp, ah).
	Protos []string `json:"protos,omitempty"`
	// Mode is transport or tunnel.
	Mode string `json:"mode,omitempty"`
	// Src and Dst are the tunnel endpoints (tunnel mode).
	Src netip.Addr `json:"src,omitzero"`
	Dst netip.Addr `json:"dst,omitzero"`
	// Expired lists the bundle's SAs that reached a hard limit, as
	// "proto/spi" ("esp/0x00001000").
	Expired []string `json:"expired,omitempty"`
}

// AcquireStats counts a table's acquires.
type AcquireStats struct {
	// Events is how many acquire events were raised.
	Events uint64 `json:"events"`
	// Suppressed is how many packets found a policy without SAs within
	// its acquire period and raised no event.
	Suppressed uint64 `json:"suppressed"`
	// Lost is how many acquires found the queue to the event goroutine
	// full (the next packet tries again).
	Lost uint64 `json:"lost"`
}

// acquirer is a table's acquire machinery: the queue from the datapath to
// the event goroutine and the counters.
type acquirer struct {
	period     int64 // nanoseconds
	ch         chan acquireReq
	seq        uint32 // event goroutine only
	events     atomic.Uint64
	suppressed atomic.Uint64
	lost       atomic.Uint64
}

func newAcquirer(period time.Duration) *acquirer {
	if period < 0 {
		return nil
	}
	if period == 0 {
		period = DefaultAcquirePeriod
	}
	return &acquirer{period: int64(period), ch: make(chan acquireReq, acquireQueue)}
}

// acquireState is one policy's rate limit; it outlives the policy's
// Resolved values (a new one is built whenever a linked bundle changes).
type acquireState struct {
	q          *acquirer
	last       atomic.Int64  // monoNow of the last acquire raised; 0: none
	suppressed atomic.Uint64 // since the last acquire raised
}

type acquireReq struct {
	st      *acquireState
	res     *Resolved
	flow    sa.Flow
	expired bool
	// suppressed: the policy's packets without SAs between the previous
	// acquire it raised and this one.
	suppressed uint64
}

// epoch anchors monoNow on the monotonic clock.
var epoch = time.Now()

// monoNow returns monotonic nanoseconds, never 0.
func monoNow() int64 { return int64(time.Since(epoch)) + 1 }

// Acquire reports that a packet of flow f found this outbound protect
// policy without a usable SA: reason is sa.OutNoStates (a linked bundle is
// missing) or the drop reason of an SA that reached a hard limit
// (sa.OutStateExpired, sa.OutStateSeqError); other reasons are ignored, as
// is a nil r. It raises at most one acquire event per policy per acquire
// period and counts the others. It never blocks and allocates nothing; the
// datapath calls it for every such drop.
func (r *Resolved) Acquire(f sa.Flow, reason sa.Reason) {
	if r == nil || r.acq == nil {
		return
	}
	var expired bool
	switch reason {
	case sa.OutNoStates:
	case sa.OutStateExpired, sa.OutStateSeqError:
		expired = true
	default:
		return
	}
	st := r.acq
	q := st.q
	now := monoNow()
	last := st.last.Load()
	if last != 0 && now-last < q.period || !st.last.CompareAndSwap(last, now) {
		st.suppressed.Add(1)
		q.suppressed.Add(1)
		return
	}
	n := st.suppressed.Swap(0)
	select {
	case q.ch <- acquireReq{st: st, res: r, flow: f, expired: expired, suppressed: n}:
	default:
		st.suppressed.Add(n)
		st.last.CompareAndSwap(now, last)
		q.lost.Add(1)
	}
}

// AcquireStats returns the table's acquire counters.
func (t *Table) AcquireStats() AcquireStats {
	if t.acq == nil {
		return AcquireStats{}
	}
	return AcquireStats{Events: t.acq.events.Load(), Suppressed: t.acq.suppressed.Load(), Lost: t.acq.lost.Load()}
}

// newAcquireState returns the rate limit of a new policy: outbound protect
// policies only.
func (t *Table) newAcquireState(p *Policy) *acquireState {
	if t.acq == nil || p.Dir != sa.Out || p.Action != saspec.Protect {
		return nil
	}
	return &acquireState{q: t.acq}
}

// acquireLoop turns queued acquires into events until stop is closed.
func (t *Table) acquireLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case req := <-t.acq.ch:
			t.emitAcquire(req)
		}
	}
}

func (t *Table) emitAcquire(req acquireReq) {
	q := t.acq
	q.seq++
	if q.seq == 0 {
		q.seq = 1
	}
	p := req.res.Policy
	a := &Acquire{
		Seq:        q.seq,
		Reason:     AcquireNoState,
		Flow:       AcquireFlow{Src: req.flow.Src, Dst: req.flow.Dst, Proto: req.flow.Proto, SrcPort: req.flow.SrcPort, DstPort: req.flow.DstPort},
		Suppressed: req.suppressed,
	}
	if req.expired {
		a.Reason = AcquireExpired
	}
	a.Selector, a.Templates = t.acquireTemplates(p, req.res)
	q.events.Add(1)
	t.bus.emit(Event{Type: EventAcquire, PolicyID: p.ID, PolicyName: p.Name, Dir: p.Dir.String(), Acquire: a})
	t.log.Info("acquire: a protect policy has no usable SA", "policy", p.ID, "name", p.Name, "reason", a.Reason,
		"src", a.Flow.Src.String(), "dst", a.Flow.Dst.String(), "proto", a.Flow.Proto, "seq", a.Seq, "suppressed", a.Suppressed)
}

// acquireTemplates describes the policy's selector and linked bundles as
// the table holds them now (the policy may have been deleted since the
// packet: then what the Resolved held).
func (t *Table) acquireTemplates(p *Policy, res *Resolved) (AcquireSelector, []AcquireTemplate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []AcquireTemplate
	pe := t.policies[p.ID]
	if pe == nil || pe.acq != res.acq {
		sel := AcquireSelector{SrcPort: p.Sel.SrcPort, DstPort: p.Sel.DstPort}
		if p.Sel.Src.IsValid() {
			sel.Src = p.Sel.Src.String()
		}
		if p.Sel.Dst.IsValid() {
			sel.Dst = p.Sel.Dst.String()
		}
		if p.Sel.Proto != 0 {
			sel.Proto = strconv.Itoa(int(p.Sel.Proto))
		}
		for _, b := range res.Bundles {
			out = append(out, templateOf(strconv.FormatUint(uint64(b.Handle), 10), b))
		}
		return sel, out
	}
	s := &pe.spec
	sel := AcquireSelector{Src: s.Src, Dst: s.Dst, Proto: string(s.Proto), SrcPort: s.SrcPort, DstPort: s.DstPort}
	for _, r := range s.Bundles {
		be := t.refLocked(r)
		if be == nil || be.b.Dir != p.Dir {
			out = append(out, AcquireTemplate{Ref: string(r), Missing: true})
			continue
		}
		out = append(out, templateOf(string(r), be.b))
	}
	return sel, out
}

func templateOf(ref string, b *sa.Bundle) AcquireTemplate {
	tm := AcquireTemplate{Ref: ref, Handle: b.Handle, Mode: b.Mode.String()}
	for _, s := range b.SAs() {
		tm.Protos = append(tm.Protos, s.Proto.String())
		if s.Mode == sa.Tunnel && !tm.Src.IsValid() {
			tm.Src, tm.Dst = s.Src, s.Dst
		}
		if s.Expired() || s.LastSeq() >= s.MaxSeq() {
			tm.Expired = append(tm.Expired, s.Proto.String()+"/"+saspec.SPI(s.SPI).String())
		}
	}
	return tm
}
