package sadb

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

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
func (t *Table) Add(spec saspec.BundleSpec) (sa.Handle, error) {
	res, err := t.AddBundles([]saspec.BundleSpec{spec})
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
func (t *Table) AddBundles(specs []saspec.BundleSpec) ([]AddResult, error) {
	return t.addBundles(specs, OriginAPI)
}

func (t *Table) addBundles(specs []saspec.BundleSpec, origin string) ([]AddResult, error) {
	if len(specs) == 0 {
		return nil, saspec.Invalidf("sas", "the request has no bundles; give at least one")
	}
	res := make([]AddResult, len(specs))
	plans := make([]*saspec.BundlePlan, len(specs))
	for i, s := range specs {
		res[i] = AddResult{Index: i, Name: s.Name}
		p, err := s.Plan()
		if err != nil {
			res[i].Err = err
			continue
		}
		plans[i] = p
	}
	t.mu.Lock()
	x := t.begin()
	x.batch = len(specs) > 1
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
			res[i].Error, res[i].Code = e.Error(), saspec.ErrorCode(e)
		}
	}
	if err == nil && failed > 0 {
		t.log.Info("SA add request partly failed", "offloaded", ok, "failed", failed)
	} else if ok > 1 {
		t.log.Info("SA bundles offloaded", "count", ok)
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
			e = saspec.WrapField(fmt.Sprintf("%s[%d]", prefix, i), e)
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
	var kind error = saspec.ErrInvalid
	var e *saspec.Error
	if errors.As(first, &e) {
		kind = e.Kind
	}
	failed := len(msgs)
	if failed > saspec.MaxErrorsListed {
		msgs = append(msgs[:saspec.MaxErrorsListed], fmt.Sprintf("and %d more entries failed (see the results)", failed-saspec.MaxErrorsListed))
	}
	return failed, &saspec.Error{Kind: kind, Msg: none + ": " + strings.Join(msgs, "; "), Err: first}
}

// addLocked validates p against the table and the capabilities and inserts
// the bundle; handle 0 allocates a new handle.
func (t *Table) addLocked(x *tx, p *saspec.BundlePlan, origin string, handle sa.Handle) (sa.Handle, error) {
	if err := t.caps.Check(p.Req); err != nil {
		return 0, capError("", err)
	}
	s := &p.Spec
	if s.Name != "" {
		if h, dup := t.names[s.Name]; dup {
			return 0, &saspec.Error{Kind: saspec.ErrConflict, Field: "name", Msg: fmt.Sprintf("bundle name %q is already used by handle %d; choose another name or delete that bundle first", s.Name, h)}
		}
	}
	for _, c := range planSAs(p) {
		if err := t.checkSPILocked(p.Dir, c.proto, c.spec.SPI, p.Dst, c.field); err != nil {
			return 0, err
		}
	}
	u := t.usage
	u.Bundles++
	n := uint32(len(planSAs(p)))
	if p.Dir == sa.In {
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
	be := &bundleEntry{b: b, spec: p.Spec, dst: p.Dst, origin: origin, created: time.Now()}
	t.insertLocked(x, be)
	x.events = append(x.events, bundleEvent(EventSAAdded, b))
	t.logBundle(x, "SA bundle offloaded", "handle", uint64(handle), "bundle", be.spec)
	return handle, nil
}

type planSA struct {
	proto sa.Protocol
	spec  *saspec.SASpec
	field string
}

func planSAs(p *saspec.BundlePlan) []planSA {
	var out []planSA
	if p.Spec.ESP != nil {
		out = append(out, planSA{sa.ESP, p.Spec.ESP, "esp"})
	}
	if p.Spec.AH != nil {
		out = append(out, planSA{sa.AH, p.Spec.AH, "ah"})
	}
	return out
}

func (t *Table) checkSPILocked(dir sa.Direction, proto sa.Protocol, spi saspec.SPI, dst netip.Addr, field string) error {
	k := spiKey{dir: dir, proto: proto, spi: uint32(spi), dst: dst}
	if h, dup := t.spis[k]; dup {
		where := "destination " + dst.String()
		if !dst.IsValid() {
			where = "the wildcard destination"
		}
		return &saspec.Error{Kind: saspec.ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v for %s (%s) is already used by %s; SPIs must be unique per destination and protocol: choose another SPI or delete that bundle", proto, spi, where, dir, t.bundleRefLocked(h))}
	}
	w := spiKey{dir: dir, proto: proto, spi: uint32(spi)}
	if dst.IsValid() {
		if h, dup := t.spis[w]; dup {
			return &saspec.Error{Kind: saspec.ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v (%s) is already used by %s, whose destination is the wildcard and so matches %s too: choose another SPI", proto, spi, dir, t.bundleRefLocked(h), dst)}
		}
	} else if t.exactSPIs[spiKey3{dir, proto, uint32(spi)}] > 0 {
		holder := "a bundle"
		if h, ok := t.exactSPIHolderLocked(dir, proto, spi); ok {
			holder = t.bundleRefLocked(h)
		}
		return &saspec.Error{Kind: saspec.ErrConflict, Field: field + ".spi", Msg: fmt.Sprintf("%s SPI %v (%s) is already used by %s with a specific destination, which a wildcard destination would shadow: choose another SPI", proto, spi, dir, holder)}
	}
	return nil
}

// build creates the suites and SAs of a bundle.
func (t *Table) build(p *saspec.BundlePlan, h sa.Handle) (*sa.Bundle, error) {
	b := &sa.Bundle{Handle: h, Name: p.Spec.Name, Dir: p.Dir, Mode: p.Mode, IPv6: p.IPv6, PacketOffload: p.Packet || (p.Spec.Offload == "" && t.caps.OffloadMode() == capabilities.OffloadPacket)}
	mk := func(ps planSA) (*sa.SA, error) {
		sp := ps.spec
		sp2 := suite.Params{Auth: suite.Auth(sp.Auth), ICVLen: sp.ICVLen, AuthKey: sp.AuthKey.Bytes(), AllowLegacy: p.Spec.AllowLegacy}
		if ps.proto == sa.ESP {
			sp2.Enc, sp2.EncKey = suite.Enc(sp.Enc), sp.EncKey.Bytes()
		}
		su, err := suite.New(sp2)
		if err != nil {
			return nil, suiteError(ps.field, err)
		}
		params := sa.Params{
			SPI: uint32(sp.SPI), Proto: ps.proto, Dir: p.Dir, Mode: p.Mode,
			Src: p.Src, Dst: p.Dst, ESN: p.Spec.ESN, SeqHigh: p.Spec.SeqHigh,
			TTL: p.Spec.TTL, DF: p.DF, TFCPad: p.Spec.TFCPad, Soft: p.Soft, Hard: p.Hard,
		}
		if p.Dir == sa.In {
			params.ReplayWindow = p.Window
		}
		if ps.proto == sa.ESP {
			params.Encap = p.Encap
		}
		s, err := sa.New(params, su)
		if err != nil {
			su.Close()
			return nil, &saspec.Error{Kind: saspec.ErrInvalid, Field: ps.field, Msg: strings.TrimPrefix(err.Error(), "sa: "), Err: err}
		}
		s.OnExpire = t.expireHook(b)
		return s, nil
	}
	for _, ps := range planSAs(p) {
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
	return &saspec.Error{Kind: saspec.ErrInvalid, Field: field, Msg: msg, Err: err}
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
	dst := be.dst
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
				k := newInKey(s.SPI, s.Proto, dst)
				x.inExact.Set(k.hash(), k, saRef{s, b})
			} else {
				k := newWildKey(s.SPI, s.Proto)
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
	dst := be.dst
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
				k := newInKey(s.SPI, s.Proto, dst)
				x.inExact.Del(k.hash(), k)
			} else {
				k := newWildKey(s.SPI, s.Proto)
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
		return nil, saspec.Invalidf("", "no bundle given: give a handle or a name")
	}
	if n, err := strconv.ParseUint(r, 0, 64); err == nil {
		if be := t.bundles[sa.Handle(n)]; be != nil {
			return be, nil
		}
		return nil, &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", n)}
	}
	if h, ok := t.names[r]; ok {
		return t.bundles[h], nil
	}
	return nil, &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no bundle is named %q (list them with `secnic sa list`)", r)}
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
	x.batch = len(hs) > 1
	n := 0
	for i, h := range hs {
		be := t.bundles[h]
		if be == nil {
			errs[i] = &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", h)}
			continue
		}
		t.deleteLocked(x, be)
		n++
	}
	if n > 0 {
		_ = x.commit() // a delete installs nothing, so it cannot fail
	}
	if n > 1 {
		t.log.Info("SA bundles deleted", "count", n)
	}
	return errs
}

func (t *Table) deleteLocked(x *tx, be *bundleEntry) {
	t.removeLocked(x, be)
	x.closing = append(x.closing, be)
	x.events = append(x.events, bundleEvent(EventSADeleted, be.b))
	t.logBundle(x, "SA bundle deleted", "handle", uint64(be.b.Handle), "name", be.b.Name)
}

// logBundle logs one bundle's change: at Info for a request of one
// bundle, at Debug for a batch, whose request logs one line with the count
// (a line per bundle at Info would flood the log with a large table).
func (t *Table) logBundle(x *tx, msg string, args ...any) {
	if x.batch {
		t.log.Debug(msg, args...)
		return
	}
	t.log.Info(msg, args...)
}

// Update applies NDIS UPDATE_SA: new ESN high-order bits for the bundle's
// ESN SAs (or the one selected by u.Proto and u.SPI). It fails with
// ErrNotFound for an unknown handle or SA, and ErrInvalid if the SA does not
// use ESN (NDIS_STATUS_INVALID_PARAMETER) or an outbound counter would
// move backwards.
func (t *Table) Update(h sa.Handle, u saspec.UpdateSpec) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	be := t.bundles[h]
	if be == nil {
		return &saspec.Error{Kind: saspec.ErrNotFound, Msg: fmt.Sprintf("no bundle has handle %d (list them with `secnic sa list`)", h)}
	}
	var proto sa.Protocol
	switch strings.ToLower(u.Proto) {
	case "":
	case "esp":
		proto = sa.ESP
	case "ah":
		proto = sa.AH
	default:
		return saspec.Invalidf("proto", "%q is not an IPsec protocol: give esp or ah, or leave it out to update every ESN SA of the bundle", u.Proto)
	}
	var targets []*sa.SA
	for _, s := range be.b.SAs() {
		if (proto == 0 || s.Proto == proto) && (u.SPI == 0 || s.SPI == uint32(u.SPI)) {
			targets = append(targets, s)
		}
	}
	if len(targets) == 0 {
		return &saspec.Error{Kind: saspec.ErrNotFound, Field: "spi", Msg: fmt.Sprintf("bundle %d has no %s SA with SPI %v", h, orDefault(u.Proto, "IPsec"), u.SPI)}
	}
	esn := false
	for _, s := range targets {
		if s.ESN {
			esn = true
		}
	}
	if !esn {
		return saspec.Invalidf("seq_high", "bundle %d does not use extended sequence numbers; UPDATE_SA only applies to ESN SAs (NDIS_STATUS_INVALID_PARAMETER)", h)
	}
	for _, s := range targets {
		if !s.ESN {
			continue
		}
		if err := t.reserveAtLocked(s, uint64(u.SeqHigh)<<32); err != nil {
			return err
		}
		if err := s.UpdateSeqHigh(u.SeqHigh); err != nil {
			return &saspec.Error{Kind: saspec.ErrInvalid, Field: "seq_high", Msg: strings.TrimPrefix(err.Error(), "sa: "), Err: err}
		}
	}
	e := bundleEvent(EventSAUpdated, be.b)
	t.bus.emit(e)
	t.log.Info("SA bundle updated", "handle", uint64(h), "seq_high", u.SeqHigh)
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
