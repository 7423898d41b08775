// Package sadb is the SA offload table: the security association and
// policy databases (RFC 4301 SAD and SPD) of the NIC with NDIS bundle
// semantics, their lock-free snapshots for the datapath, lifetimes and
// events, reconciliation with the configuration file, the key-use ledger
// checks of every new SA, and the schema (BundleSpec, PolicySpec, keys and
// their decoding) shared by the API, the CLI and the configuration file.
package sadb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/cow"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
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
}

type bundleEntry struct {
	b       *sa.Bundle
	spec    BundleSpec // normalized, keys included; wiped on delete
	plan    *bundlePlan
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
	spec    PolicySpec
	origin  string
	key     polKey
	res     *Resolved
	created time.Time
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

// ErrorCode maps an error of this package (or of capabilities) onto a
// short code for APIs: invalid, not_found, conflict, capacity, disabled,
// not_supported, or internal.
func ErrorCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrKeyReuse):
		return "key_reuse"
	case errors.Is(err, ErrState):
		return "state"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrCapacity):
		return "capacity"
	case errors.Is(err, capabilities.ErrDisabled):
		return "disabled"
	case errors.Is(err, capabilities.ErrNotSupported):
		return "not_supported"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	}
	return "internal"
}

// capError turns a capabilities refusal into an *Error keeping its kind.
func capError(field string, err error) error {
	kind := ErrInvalid
	for _, k := range []error{capabilities.ErrCapacity, capabilities.ErrDisabled, capabilities.ErrNotSupported} {
		if errors.Is(err, k) {
			kind = k
		}
	}
	return &Error{Kind: kind, Field: field, Msg: strings.TrimPrefix(err.Error(), "capabilities: "), Err: err}
}

// ---- transactions -------------------------------------------------------

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

// ErrState: the state directory could not record a reservation, so the
// change was not made.
var ErrState = errors.New("state directory")

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
			return &Error{Kind: ErrState, Msg: err.Error() + "; nothing was changed", Err: err}
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
		be.plan = nil
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

// ---- bundles --------------------------------------------------------------

// AddResult is the outcome of one bundle of an add request.
type AddResult struct {
	// Index is the bundle's position in the request.
	Index int `json:"index"`
	// Name is the bundle's name, if any.
	Name string `json:"name,omitempty"`
	// Handle is the new bundle's handle; 0 if it was not offloaded.
	Handle sa.Handle `json:"handle,omitempty"`
	// Error and Code say why it was not offloaded.
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	// Err is the error itself.
	Err error `json:"-"`
}

// Add offloads one bundle and returns its handle.
func (t *Table) Add(spec BundleSpec) (sa.Handle, error) {
	res, err := t.AddBundles([]BundleSpec{spec})
	if err != nil {
		return 0, err
	}
	return res[0].Handle, nil
}

// AddBundles offloads several bundles in one request, as NDIS ADD_SA does
// with a linked list: each is validated and added on its own; failed
// entries get no handle. The request succeeds if any bundle was offloaded
// (err == nil; look at the results for failures) and fails if none was
// (err describes why; for a single bundle it is that bundle's error).
// The table changes once, atomically, for the whole request.
func (t *Table) AddBundles(specs []BundleSpec) ([]AddResult, error) {
	return t.addBundles(specs, OriginAPI)
}

func (t *Table) addBundles(specs []BundleSpec, origin string) ([]AddResult, error) {
	if len(specs) == 0 {
		return nil, invalidf("sas", "the request has no bundles; give at least one")
	}
	res := make([]AddResult, len(specs))
	plans := make([]*bundlePlan, len(specs))
	for i, s := range specs {
		res[i] = AddResult{Index: i, Name: s.Name}
		p, err := s.plan()
		if err != nil {
			res[i].Err = err
			continue
		}
		plans[i] = p
	}
	t.mu.Lock()
	x := t.begin()
	ok := 0
	for i, p := range plans {
		if p == nil {
			continue
		}
		h, err := t.addLocked(x, p, origin, 0)
		if err != nil {
			res[i].Err = err
			continue
		}
		res[i].Handle = h
		ok++
	}
	if ok > 0 {
		if err := x.commit(); err != nil {
			for i := range res {
				if res[i].Handle != 0 {
					res[i].Handle, res[i].Err = 0, err
				}
			}
			ok = 0
		}
	}
	t.mu.Unlock()

	errs := make([]*error, len(res))
	for i := range res {
		errs[i] = &res[i].Err
	}
	failed, err := batchOutcome(errs, ok, "sas", "no bundle was offloaded")
	for i := range res {
		if e := res[i].Err; e != nil {
			res[i].Error, res[i].Code = e.Error(), ErrorCode(e)
		}
	}
	if err == nil && failed > 0 {
		t.log.Info("SA add request partly failed", "offloaded", ok, "failed", failed)
	}
	return res, err
}

// batchOutcome finishes a request of several entries (NDIS semantics: it
// succeeds if any entry did). It labels each entry's error with its index
// (prefix[i]) when there are several, and returns how many failed and the
// request's error: nil if ok > 0, else the single entry's error or one that
// names them all, of the first error's kind.
func batchOutcome(errs []*error, ok int, prefix, none string) (int, error) {
	var first error
	var msgs []string
	for i, ep := range errs {
		e := *ep
		if e == nil {
			continue
		}
		if len(errs) > 1 {
			e = wrapField(fmt.Sprintf("%s[%d]", prefix, i), e)
			*ep = e
		}
		if first == nil {
			first = e
		}
		msgs = append(msgs, e.Error())
	}
	if ok > 0 {
		return len(msgs), nil
	}
	if len(errs) == 1 {
		return len(msgs), first
	}
	var kind error = ErrInvalid
	var e *Error
	if errors.As(first, &e) {
		kind = e.Kind
	}
	failed := len(msgs)
	if failed > maxErrorsListed {
		msgs = append(msgs[:maxErrorsListed], fmt.Sprintf("and %d more entries failed (see the results)", failed-maxErrorsListed))
	}
	return failed, &Error{Kind: kind, Msg: none + ": " + strings.Join(msgs, "; "), Err: first}
}

// addLocked validates p against the table and the capabilities and inserts
// the bundle; handle 0 allocates a new handle.
func (t *Table) addLocked(x *tx, p *bundlePlan, origin string, handle sa.Handle) (sa.Handle, error) {
	if err := t.caps.Check(p.req); err != nil {
		return 0, capError("", err)
	}
	s := &p.spec
	if s.Name != "" {
		if h, dup := t.names[s.Name]; dup {
			return 0, &Error{Kind: ErrConflict, Field: "name", Msg: fmt.Sprintf("bundle name %q is already used by handle %d; choose another name or delete that bundle first", s.Name, h)}
		}
	}
	for _, c := range p.sas() {
		if err := t.checkSPILocked(p.dir, c.proto, c.spec.SPI, p.dst, c.field); err != nil {
			return 0, err
		}
	}
	u := t.usage
	u.Bundles++
	n := uint32(len(p.sas()))
	if p.dir == sa.In {
		u.InboundSAs += n
	} else {
		u.OutboundSAs += n
	}
	if err := t.caps.CheckCapacity(u); err != nil {
		return 0, capError("", err)
	}
	if handle == 0 {
		t.nextHandle++
		handle = sa.Handle(t.nextHandle)
	}
	b, err := t.build(p, handle)
	if err != nil {
		return 0, err
	}
	if err := t.claimLocked(x, b, p, handle); err != nil {
		for _, s := range b.SAs() {
			s.Close()
		}
		return 0, err
	}
	x.built = append(x.built, b)
	be := &bundleEntry{b: b, spec: p.spec, plan: p, origin: origin, created: time.Now()}
	t.insertLocked(x, be)
	x.events = append(x.events, bundleEvent(EventSAAdded, b))
	t.log.Info("SA bundle offloaded", "handle", uint64(handle), "bundle", be.spec)
	return handle, nil
}

type planSA struct {
	proto sa.Protocol
	spec  *SASpec
	field string
}

func (p *bundlePlan) sas() []planSA {
	var out []planSA
	if p.spec.ESP != nil {
		out = append(out, planSA{sa.ESP, p.spec.ESP, "esp"})
	}
	if p.spec.AH != nil {
		out = append(out, planSA{sa.AH, p.spec.AH, "ah"})
	}
	return out
}

func (t *Table) checkSPILocked(dir sa.Direction, proto sa.Protocol, spi SPI, dst netip.Addr, field string) error {
	k := spiKey{dir: dir, proto: proto, spi: uint32(spi), dst: dst}
	if h, dup := t.spis[k]; dup {
		where := "destination " + dst.String()
		if !dst.IsValid() {
			where = "the wildcard destination"
		}
		return &Error{Kind: ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v for %s (%s) is already used by %s; SPIs must be unique per destination and protocol: choose another SPI or delete that bundle", proto, spi, where, dir, t.bundleRefLocked(h))}
	}
	w := spiKey{dir: dir, proto: proto, spi: uint32(spi)}
	if dst.IsValid() {
		if h, dup := t.spis[w]; dup {
			return &Error{Kind: ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v (%s) is already used by %s, whose destination is the wildcard and so matches %s too: choose another SPI", proto, spi, dir, t.bundleRefLocked(h), dst)}
		}
	} else if t.exactSPIs[spiKey3{dir, proto, uint32(spi)}] > 0 {
		holder := "a bundle"
		if h, ok := t.exactSPIHolderLocked(dir, proto, spi); ok {
			holder = t.bundleRefLocked(h)
		}
		return &Error{Kind: ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v (%s) is already used by %s with a specific destination, which a wildcard destination would shadow: choose another SPI", proto, spi, dir, holder)}
	}
	return nil
}

// build creates the suites and SAs of a bundle.
func (t *Table) build(p *bundlePlan, h sa.Handle) (*sa.Bundle, error) {
	b := &sa.Bundle{Handle: h, Name: p.spec.Name, Dir: p.dir, Mode: p.mode, IPv6: p.ipv6, PacketOffload: p.packet}
	mk := func(ps planSA) (*sa.SA, error) {
		sp := ps.spec
		sp2 := suite.Params{Auth: suite.Auth(sp.Auth), ICVLen: sp.ICVLen, AuthKey: sp.AuthKey.Bytes(), AllowLegacy: p.spec.AllowLegacy}
		if ps.proto == sa.ESP {
			sp2.Enc, sp2.EncKey = suite.Enc(sp.Enc), sp.EncKey.Bytes()
		}
		su, err := suite.New(sp2)
		if err != nil {
			return nil, suiteError(ps.field, err)
		}
		params := sa.Params{
			SPI: uint32(sp.SPI), Proto: ps.proto, Dir: p.dir, Mode: p.mode,
			Src: p.src, Dst: p.dst, ESN: p.spec.ESN, SeqHigh: p.spec.SeqHigh,
			TTL: p.spec.TTL, DF: p.df, TFCPad: p.spec.TFCPad, Soft: p.soft, Hard: p.hard,
		}
		if p.dir == sa.In {
			params.ReplayWindow = p.window
		}
		if ps.proto == sa.ESP {
			params.Encap = p.encap
		}
		s, err := sa.New(params, su)
		if err != nil {
			su.Close()
			return nil, &Error{Kind: ErrInvalid, Field: ps.field, Msg: strings.TrimPrefix(err.Error(), "sa: "), Err: err}
		}
		s.OnExpire = t.expireHook(b)
		return s, nil
	}
	for _, ps := range p.sas() {
		s, err := mk(ps)
		if err != nil {
			if b.ESP != nil {
				b.ESP.Close()
			}
			return nil, err
		}
		if ps.proto == sa.ESP {
			b.ESP = s
		} else {
			b.AH = s
		}
	}
	return b, nil
}

func suiteError(prefix string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "suite: ")
	field := prefix
	switch {
	case strings.Contains(msg, "separate integrity key"), strings.Contains(msg, "integrity key"):
		field += ".auth_key"
	case strings.Contains(msg, "encryption key"):
		field += ".enc_key"
	case strings.Contains(msg, "ICV"):
		field += ".icv_len"
	case strings.Contains(msg, "legacy"):
		msg += " (allow_legacy: true in the bundle, and legacy_algorithms in the offload configuration)"
	}
	return &Error{Kind: ErrInvalid, Field: field, Msg: msg, Err: err}
}

func bundleEvent(typ EventType, b *sa.Bundle) Event {
	return Event{Type: typ, Handle: b.Handle, Name: b.Name, Dir: b.Dir.String()}
}

// insertLocked adds be to the indexes and the snapshot under construction.
func (t *Table) insertLocked(x *tx, be *bundleEntry) {
	b := be.b
	t.bundles[b.Handle] = be
	if b.Name != "" {
		t.names[b.Name] = b.Handle
	}
	x.onUndo(func() { t.removeLocked(x, be) })
	dst := be.plan.dst
	for _, s := range b.SAs() {
		t.unretireLocked(x, s)
		if u := t.uses.get(s); u != nil && b.Dir == sa.Out {
			t.live[u.fp] = b.Handle
		}
		t.spis[spiKey{b.Dir, s.Proto, s.SPI, dst}] = b.Handle
		if dst.IsValid() {
			t.exactSPIs[spiKey3{b.Dir, s.Proto, s.SPI}]++
		}
		if b.Dir == sa.In {
			if dst.IsValid() {
				k := inKey{spi: s.SPI, proto: s.Proto, dst: dst}
				x.inExact.Set(k.hash(), k, saRef{s, b})
			} else {
				k := wildKey{spi: s.SPI, proto: s.Proto}
				x.inWild.Set(k.hash(), k, saRef{s, b})
			}
		}
		if b.Dir == sa.In {
			t.usage.InboundSAs++
		} else {
			t.usage.OutboundSAs++
		}
	}
	t.usage.Bundles++
	x.bundles.Set(handleHash(b.Handle), b.Handle, b)
	t.rebindLocked(x, b.Handle, b.Name)
}

// removeLocked takes be out of the indexes and the snapshot under
// construction; it does not close its SAs.
func (t *Table) removeLocked(x *tx, be *bundleEntry) {
	b := be.b
	delete(t.bundles, b.Handle)
	if b.Name != "" && t.names[b.Name] == b.Handle {
		delete(t.names, b.Name)
	}
	x.onUndo(func() { t.insertLocked(x, be) })
	dst := be.plan.dst
	for _, s := range b.SAs() {
		t.retireLocked(x, s)
		if u := t.uses.get(s); u != nil && b.Dir == sa.Out && t.live[u.fp] == b.Handle {
			delete(t.live, u.fp)
		}
		delete(t.spis, spiKey{b.Dir, s.Proto, s.SPI, dst})
		if dst.IsValid() {
			k3 := spiKey3{b.Dir, s.Proto, s.SPI}
			if t.exactSPIs[k3]--; t.exactSPIs[k3] <= 0 {
				delete(t.exactSPIs, k3)
			}
		}
		if b.Dir == sa.In {
			if dst.IsValid() {
				k := inKey{spi: s.SPI, proto: s.Proto, dst: dst}
				x.inExact.Del(k.hash(), k)
			} else {
				k := wildKey{spi: s.SPI, proto: s.Proto}
				x.inWild.Del(k.hash(), k)
			}
			t.usage.InboundSAs--
		} else {
			t.usage.OutboundSAs--
		}
	}
	t.usage.Bundles--
	x.bundles.Del(handleHash(b.Handle), b.Handle)
	t.rebindLocked(x, b.Handle, b.Name)
}

// Resolve finds a bundle by name or by handle (decimal or 0x hex).
func (t *Table) Resolve(ref string) (sa.Handle, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	be, err := t.lookupLocked(ref)
	if err != nil {
		return 0, err
	}
	return be.b.Handle, nil
}

func (t *Table) lookupLocked(ref string) (*bundleEntry, error) {
	r := strings.TrimSpace(ref)
	if r == "" {
		return nil, invalidf("", "no bundle given: give a handle or a name")
	}
	if n, err := strconv.ParseUint(r, 0, 64); err == nil {
		if be := t.bundles[sa.Handle(n)]; be != nil {
			return be, nil
		}
		return nil, &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", n)}
	}
	if h, ok := t.names[r]; ok {
		return t.bundles[h], nil
	}
	return nil, &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("no bundle is named %q (list them with `secnic sa list`)", r)}
}

// Delete deletes a bundle by handle (NDIS DELETE_SA). Its SAs stop and
// their keys are zeroed; policies that link it stay, and drop their
// traffic (OutNoStates) until a bundle of that name is added again.
func (t *Table) Delete(h sa.Handle) error {
	errs := t.DeleteBundles([]sa.Handle{h})
	return errs[0]
}

// DeleteBundles deletes several bundles in one change (NDIS DELETE_SA with
// a linked list). It returns one error (or nil) per handle.
func (t *Table) DeleteBundles(hs []sa.Handle) []error {
	errs := make([]error, len(hs))
	t.mu.Lock()
	defer t.mu.Unlock()
	x := t.begin()
	n := 0
	for i, h := range hs {
		be := t.bundles[h]
		if be == nil {
			errs[i] = &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", h)}
			continue
		}
		t.deleteLocked(x, be)
		n++
	}
	if n > 0 {
		_ = x.commit() // a delete installs nothing, so it cannot fail
	}
	return errs
}

func (t *Table) deleteLocked(x *tx, be *bundleEntry) {
	t.removeLocked(x, be)
	x.closing = append(x.closing, be)
	x.events = append(x.events, bundleEvent(EventSADeleted, be.b))
	t.log.Info("SA bundle deleted", "handle", uint64(be.b.Handle), "name", be.b.Name)
}

// Update applies NDIS UPDATE_SA: new ESN high-order bits for the bundle's
// ESN SAs (or the one selected by u.Proto and u.SPI). It fails with
// ErrNotFound for an unknown handle or SA, and ErrInvalid if the SA does not
// use ESN (NDIS_STATUS_INVALID_PARAMETER) or an outbound counter would
// move backwards.
func (t *Table) Update(h sa.Handle, u UpdateSpec) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	be := t.bundles[h]
	if be == nil {
		return &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", h)}
	}
	var proto sa.Protocol
	switch strings.ToLower(u.Proto) {
	case "":
	case "esp":
		proto = sa.ESP
	case "ah":
		proto = sa.AH
	default:
		return invalidf("proto", "%q is not an IPsec protocol: give esp or ah, or leave it out to update every ESN SA of the bundle", u.Proto)
	}
	var targets []*sa.SA
	for _, s := range be.b.SAs() {
		if (proto == 0 || s.Proto == proto) && (u.SPI == 0 || s.SPI == uint32(u.SPI)) {
			targets = append(targets, s)
		}
	}
	if len(targets) == 0 {
		return &Error{Kind: ErrNotFound, Field: "spi", Msg: fmt.Sprintf("bundle %d has no %s SA with SPI %v", h, orDefault(u.Proto, "IPsec"), u.SPI)}
	}
	esn := false
	for _, s := range targets {
		if s.ESN {
			esn = true
		}
	}
	if !esn {
		return invalidf("seq_high", "bundle %d does not use extended sequence numbers; UPDATE_SA only applies to ESN SAs (NDIS_STATUS_INVALID_PARAMETER)", h)
	}
	for _, s := range targets {
		if !s.ESN {
			continue
		}
		if err := t.reserveAtLocked(s, uint64(u.SeqHigh)<<32); err != nil {
			return err
		}
		if err := s.UpdateSeqHigh(u.SeqHigh); err != nil {
			return &Error{Kind: ErrInvalid, Field: "seq_high", Msg: strings.TrimPrefix(err.Error(), "sa: "), Err: err}
		}
	}
	e := bundleEvent(EventSAUpdated, be.b)
	t.bus.emit(e)
	t.log.Info("SA bundle updated", "handle", uint64(h), "seq_high", u.SeqHigh)
	return nil
}

// ---- information ---------------------------------------------------------

// SAInfo describes one SA of a bundle, with its live state.
type SAInfo struct {
	Proto  string `json:"proto"`
	SPI    SPI    `json:"spi"`
	Enc    string `json:"enc,omitempty"`
	Auth   string `json:"auth"`
	ICVLen int    `json:"icv_len"`
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
	Handle  sa.Handle  `json:"handle"`
	Origin  string     `json:"origin"`
	Created time.Time  `json:"created"`
	Spec    BundleSpec `json:"spec"`
	SAs     []SAInfo   `json:"sas"`
}

func saInfo(s *sa.SA) SAInfo {
	i := SAInfo{
		Proto: s.Proto.String(), SPI: SPI(s.SPI), Enc: string(s.Suite.Enc()), Auth: string(s.Suite.Auth()),
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
	SPI      SPI                `json:"spi"`
	Counters sa.CounterSnapshot `json:"counters"`
}

// TableStats summarizes the table and lists per-SA counters.
type TableStats struct {
	Usage    capabilities.Usage `json:"usage"`
	Capacity uint32             `json:"capacity"`
	Policies int                `json:"policies"`
	SAs      []SAStats          `json:"sas"`
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
	slices.SortFunc(hs, func(a, b *bundleEntry) int { return cmpHandle(a.b.Handle, b.b.Handle) })
	for _, be := range hs {
		for _, s := range be.b.SAs() {
			st.SAs = append(st.SAs, SAStats{Handle: be.b.Handle, Name: be.b.Name, Dir: be.b.Dir.String(),
				Proto: s.Proto.String(), SPI: SPI(s.SPI), Counters: s.Stats.Snapshot()})
		}
	}
	return st
}

// ---- lifecycle -----------------------------------------------------------

// Start runs the lifetime ticker and forwards capabilities indications to
// the event stream until ctx is done or Stop is called. Calling Start on a
// running table does nothing.
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
	e.Proto, e.SPI, e.Reason = s.Proto.String(), SPI(s.SPI), reason
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
