// Package sadb is the SA offload table: the security association and
// policy databases (RFC 4301 SAD and SPD) of the NIC with NDIS bundle
// semantics, their lock-free snapshots for the datapath, lifetimes and
// events, reconciliation with the configuration file, and the key-use
// ledger checks of every new SA. What it installs is described in the
// schema of package saspec.
package sadb

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// Origins of bundles and policies.
const (
	OriginAPI    = "api"
	OriginConfig = "config"
)

// TableConfig configures a Table.
type TableConfig struct {
	// Caps is the capabilities manager that adds are validated against.
	// nil means a manager for the default profile.
	Caps *capabilities.Manager
	// Logger receives operational logs (never key material); nil means
	// slog.Default().
	Logger *slog.Logger
	// TickInterval is how often Start checks time lifetimes and sequence
	// number exhaustion; 0 means 1s.
	TickInterval time.Duration
	// Ledger is the key-use ledger every SA is checked against and
	// recorded in (package ledger). A persistent ledger also makes
	// sequence numbers and replay windows survive restarts; the table
	// then runs a reserver goroutine until Close. nil means a fresh
	// memory ledger: the same rules for the life of the process.
	Ledger *ledger.Ledger
	// AcquirePeriod is the least time between two acquire events of one
	// policy (see EventAcquire); 0 means DefaultAcquirePeriod (Linux's
	// XFRM_ACQ_EXPIRES, 30s), a negative value turns acquires off.
	AcquirePeriod time.Duration
}

type bundleEntry struct {
	b       *sa.Bundle
	spec    saspec.BundleSpec // normalized, keys included; wiped on delete
	dst     netip.Addr        // the plan's destination (zero = wildcard)
	origin  string
	created time.Time
}

type spiKey struct {
	dir   sa.Direction
	proto sa.Protocol
	spi   uint32
	dst   netip.Addr
}

type spiKey3 struct {
	dir   sa.Direction
	proto sa.Protocol
	spi   uint32
}

type polEntry struct {
	p       Policy // Bundles: resolved handles of the last resolution
	spec    saspec.PolicySpec
	origin  string
	key     polKey
	res     *Resolved
	created time.Time
	acq     *acquireState // outbound protect only
}

type shapeState struct {
	id    uint32
	desc  shapeDesc
	n     int
	prios map[int]int
}

// Table is the SA offload table: bundles, policies, lifetimes and events.
// Changes are serialized and published as immutable Snapshots; reads from
// the datapath are lock-free. All methods are safe for concurrent use.
type Table struct {
	caps   *capabilities.Manager
	log    *slog.Logger
	tick   time.Duration
	snap   atomic.Pointer[Snapshot]
	bus    eventBus
	ledger *ledger.Ledger
	res    *reserver // persistent ledgers only
	acq    *acquirer // nil: acquires are off

	mu         sync.Mutex
	bundles    map[sa.Handle]*bundleEntry
	names      map[string]sa.Handle
	spis       map[spiKey]sa.Handle
	exactSPIs  map[spiKey3]int
	live       map[ledger.Fingerprint]sa.Handle // outbound keys in use
	uses       keyUses                          // each SA's key record
	nextHandle uint64
	usage      capabilities.Usage

	policies   map[uint32]*polEntry
	polNames   map[string]uint32
	byKey      map[polKey][]*polEntry
	shapes     [2]map[shapeDesc]*shapeState
	nextShape  uint32
	refs       map[string]map[uint32]struct{}
	nextPolicy uint32

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewTable returns an empty table.
func NewTable(c TableConfig) (*Table, error) {
	caps := c.Caps
	if caps == nil {
		var err error
		caps, err = capabilities.NewManagerFromConfig(capabilities.Config{})
		if err != nil {
			return nil, err
		}
	}
	t := &Table{
		caps:      caps,
		log:       c.Logger,
		tick:      c.TickInterval,
		bundles:   map[sa.Handle]*bundleEntry{},
		names:     map[string]sa.Handle{},
		spis:      map[spiKey]sa.Handle{},
		exactSPIs: map[spiKey3]int{},
		live:      map[ledger.Fingerprint]sa.Handle{},
		ledger:    c.Ledger,
		policies:  map[uint32]*polEntry{},
		polNames:  map[string]uint32{},
		byKey:     map[polKey][]*polEntry{},
		shapes:    [2]map[shapeDesc]*shapeState{{}, {}},
		refs:      map[string]map[uint32]struct{}{},
		acq:       newAcquirer(c.AcquirePeriod),
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.tick <= 0 {
		t.tick = time.Second
	}
	t.snap.Store(&Snapshot{})
	if t.ledger == nil {
		t.ledger = ledger.Memory()
	}
	if t.ledger.Persistent() {
		t.res = newReserver(t.ledger, t.log, t.Snapshot, &t.uses)
	}
	return t, nil
}

// Ledger returns the table's key-use ledger.
func (t *Table) Ledger() *ledger.Ledger { return t.ledger }

// Caps returns the capabilities manager.
func (t *Table) Caps() *capabilities.Manager { return t.caps }

// Snapshot returns the current immutable view for the datapath.
func (t *Table) Snapshot() *Snapshot { return t.snap.Load() }

// Subscribe returns a subscription to the event stream with a buffer of
// size events (DefaultEventBuffer if size < 1).
func (t *Table) Subscribe(size int) *Subscription { return t.bus.subscribe(size) }

// Usage returns the bundles and SAs in use.
func (t *Table) Usage() capabilities.Usage {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.usage
}

// capError turns a capabilities refusal into an *Error keeping its kind.
func capError(field string, err error) error {
	kind := saspec.ErrInvalid
	for _, k := range []error{capabilities.ErrCapacity, capabilities.ErrDisabled, capabilities.ErrNotSupported} {
		if errors.Is(err, k) {
			kind = k
		}
	}
	var ce *capabilities.Error
	if field == "" && errors.As(err, &ce) {
		field = ce.Field
	}
	return &saspec.Error{Kind: kind, Field: field, Msg: strings.TrimPrefix(err.Error(), "capabilities: "), Err: err}
}
