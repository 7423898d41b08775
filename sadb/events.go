package sadb

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// EventType names an event of the table's event stream.
type EventType string

// Event types.
const (
	// EventIndication carries a capabilities status indication
	// (NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG or _HARDWARE_CAPABILITIES).
	EventIndication EventType = "indication"
	// EventSAAdded: a bundle was offloaded.
	EventSAAdded EventType = "sa_added"
	// EventSADeleted: a bundle was deleted; its keys are zeroed.
	EventSADeleted EventType = "sa_deleted"
	// EventSAUpdated: new ESN high-order bits (UPDATE_SA).
	EventSAUpdated EventType = "sa_updated"
	// EventSAReplaced: a reconcile replaced a changed bundle (same handle,
	// new SAs).
	EventSAReplaced EventType = "sa_replaced"
	// EventSADeleteRequest: an SA reached a soft limit (bytes, packets,
	// seconds, or sequence numbers running out). The NIC asks the stack to
	// delete the SA and its partner (NDIS SaDeleteReq, XFRM soft expire);
	// the SA keeps working until deleted or a hard limit is reached.
	EventSADeleteRequest EventType = "sa_delete_request"
	// EventSAExpired: an SA reached a hard limit (XFRM hard expire) or
	// used up its sequence numbers; it no longer processes packets but
	// stays until deleted, as NDIS requires.
	EventSAExpired EventType = "sa_expired"
	// EventPolicyAdded, EventPolicyDeleted and EventPolicyReplaced report
	// policy changes.
	EventPolicyAdded    EventType = "policy_added"
	EventPolicyDeleted  EventType = "policy_deleted"
	EventPolicyReplaced EventType = "policy_replaced"
	// EventAcquire: an outbound protect policy has no usable SA for a
	// packet (XFRM_MSG_ACQUIRE): a linked bundle is missing or its SA
	// expired. Acquire holds the flow and the templates; at most one per
	// policy per TableConfig.AcquirePeriod (see Resolved.Acquire).
	EventAcquire EventType = "acquire"
	// EventReconciled: a configuration reload was applied.
	EventReconciled EventType = "reconciled"
	// EventSubscribed is the first event of a stream (sent by the control
	// API, not by the table): the subscription is live.
	EventSubscribed EventType = "subscribed"
	// EventDropped says that a slow subscriber lost events (Dropped holds
	// how many); sent by the control API.
	EventDropped EventType = "dropped"
)

// Expiry reasons.
const (
	ReasonBytes    = "bytes"
	ReasonPackets  = "packets"
	ReasonSeconds  = "seconds"
	ReasonSequence = "sequence"
)

// Event is one entry of the event stream.
type Event struct {
	// Seq numbers the table's events from 1; a gap means the subscriber
	// dropped some.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type EventType `json:"type"`
	// Handle, Name and Dir identify the bundle (SA events).
	Handle sa.Handle `json:"handle,omitempty"`
	Name   string    `json:"name,omitempty"`
	Dir    string    `json:"dir,omitempty"`
	// Proto and SPI identify the SA (expiry events).
	Proto string     `json:"proto,omitempty"`
	SPI   saspec.SPI `json:"spi,omitempty"`
	// Reason is the limit that was reached (expiry events): bytes,
	// packets, seconds or sequence.
	Reason string `json:"reason,omitempty"`
	// PolicyID and PolicyName identify the policy (policy events).
	PolicyID   uint32 `json:"policy_id,omitempty"`
	PolicyName string `json:"policy_name,omitempty"`
	// Indication is the capabilities indication (indication events).
	Indication *capabilities.Indication `json:"indication,omitempty"`
	// Summary is the reconcile summary (reconciled events).
	Summary *ReconcileSummary `json:"summary,omitempty"`
	// Dropped counts lost events (dropped events).
	Dropped uint64 `json:"dropped,omitempty"`
	// Acquire describes the flow and the SAs wanted (acquire events; see
	// EventAcquire).
	Acquire *Acquire `json:"acquire,omitempty"`
}

// DefaultEventBuffer is the subscription buffer when none is given.
const DefaultEventBuffer = 256

type eventBus struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*Subscription]struct{}
}

// Subscription receives events on C until Close.
//
// Delivery never blocks the table: when C's buffer is full, the oldest
// waiting event is dropped to make room, and Dropped counts it.
type Subscription struct {
	// C delivers events in order; Close closes it.
	C <-chan Event

	ch      chan Event
	bus     *eventBus
	dropped atomic.Uint64
}

func (b *eventBus) subscribe(size int) *Subscription {
	if size < 1 {
		size = DefaultEventBuffer
	}
	ch := make(chan Event, size)
	s := &Subscription{C: ch, ch: ch, bus: b}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*Subscription]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close stops delivery and closes C. Calling it again does nothing.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Dropped returns how many events were dropped because C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

func (b *eventBus) emit(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for s := range b.subs {
		for {
			select {
			case s.ch <- e:
			default:
				select {
				case <-s.ch:
					s.dropped.Add(1)
				default:
				}
				continue
			}
			break
		}
	}
}
