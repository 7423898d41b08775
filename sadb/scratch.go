package sadb

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// CopyInto fills dst, an empty table, with copies of t's bundles and
// policies, keys included, keeping each one's handle or ID, name and
// origin: a change tried on dst first (a dry run) then fails exactly as it
// would on t, and its errors name the handles t uses. The copies' SAs start
// with fresh counters. dst should have the same capabilities as t; an
// entry dst refuses (its capabilities changed since it was added) is left
// out and named in the error, and the rest is copied.
func (t *Table) CopyInto(dst *Table) error {
	if dst == t {
		return fmt.Errorf("sa: CopyInto needs another table")
	}
	type bcopy struct {
		h      sa.Handle
		origin string
		spec   saspec.BundleSpec
	}
	type pcopy struct {
		id     uint32
		origin string
		spec   saspec.PolicySpec
	}
	t.mu.Lock()
	var bs []bcopy
	for _, be := range t.sortedBundles() {
		bs = append(bs, bcopy{be.b.Handle, be.origin, be.spec.Clone()})
	}
	var ps []pcopy
	for _, pe := range t.sortedPolicies() {
		ps = append(ps, pcopy{pe.p.ID, pe.origin, pe.spec})
	}
	next, nextPol := t.nextHandle, t.nextPolicy
	t.mu.Unlock()
	defer func() {
		for i := range bs {
			bs[i].spec.Wipe()
		}
	}()

	dst.mu.Lock()
	defer dst.mu.Unlock()
	if len(dst.bundles) > 0 || len(dst.policies) > 0 {
		return fmt.Errorf("sa: CopyInto needs an empty table")
	}
	x := dst.begin()
	x.batch = true
	var errs []error
	for _, c := range bs {
		p, err := c.spec.Plan()
		if err == nil {
			_, err = dst.addLocked(x, p, c.origin, c.h)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sa: copying bundle %d: %w", c.h, err))
		}
	}
	for _, c := range ps {
		pp, err := c.spec.Plan()
		if err == nil {
			_, err = dst.addPolicyLocked(x, pp, c.origin, c.id)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sa: copying policy %d: %w", c.id, err))
		}
	}
	dst.nextHandle = max(dst.nextHandle, next)
	dst.nextPolicy = max(dst.nextPolicy, nextPol)
	if err := x.commit(); err != nil {
		return fmt.Errorf("sa: copying the table: %w", err)
	}
	return errors.Join(errs...)
}

// bundleRefLocked names bundle h for an error message: its handle, its
// name and where it came from, so that an operator deletes the right one.
func (t *Table) bundleRefLocked(h sa.Handle) string {
	s := "bundle " + strconv.FormatUint(uint64(h), 10)
	be := t.bundles[h]
	if be == nil {
		return s
	}
	if be.b.Name != "" {
		s += " (" + strconv.Quote(be.b.Name)
	} else {
		s += " (unnamed"
	}
	switch be.origin {
	case OriginAPI:
		s += ", added through the API)"
	case OriginConfig:
		s += ", from the configuration file)"
	default:
		s += ")"
	}
	return s
}

// exactSPIHolderLocked finds a bundle holding (dir, proto, spi) for a
// specific destination (for an error message; linear, refusals only).
func (t *Table) exactSPIHolderLocked(dir sa.Direction, proto sa.Protocol, spi saspec.SPI) (sa.Handle, bool) {
	var found sa.Handle
	for k, h := range t.spis {
		if k.dir == dir && k.proto == proto && k.spi == uint32(spi) && k.dst.IsValid() && (found == 0 || h < found) {
			found = h
		}
	}
	return found, found != 0
}
