package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
)

// ErrNoConfigFile is returned by ReloadFile for a daemon started from a
// configuration in memory.
var ErrNoConfigFile = errors.New("daemon: this daemon was not started from a file, so there is nothing to re-read")

// ReloadFile re-reads the configuration file the daemon was started from
// and applies it with Reload (what SIGHUP does).
func (d *Daemon) ReloadFile() (sa.ReconcileSummary, error) {
	if d.path == "" {
		return sa.ReconcileSummary{}, ErrNoConfigFile
	}
	cfg, err := LoadConfig(d.path)
	if err != nil {
		d.log.Error("configuration reload refused: nothing changed", "file", d.path, "err", err)
		return sa.ReconcileSummary{}, err
	}
	defer cfg.wipe()
	logWarnings(d.log, d.path, cfg)
	return d.Reload(cfg)
}

// Reload applies a new configuration to the running daemon: the SAs and
// policies are reconciled with the table by name (new ones added, removed
// ones deleted, changed ones replaced, unchanged ones not touched, so
// their sequence numbers, anti-replay windows and counters carry on) and
// the log level is applied. The other sections (ports, capabilities,
// captures, sockets) need a restart; changes to them are reported in the
// log and otherwise ignored.
//
// A configuration that cannot be applied completely is refused and
// nothing changes: an invalid file, an SA the capabilities do not allow,
// an SPI or name that clashes with an SA added through the API, a table
// that would overflow, or an outbound SA created (added or replaced)
// with the key of an outbound SA in use, which would restart its sequence
// numbers under the same key and so repeat AES-GCM, AES-CTR and
// ChaCha20-Poly1305 nonces. The checks run on a scratch copy of the table
// first; the real table then changes once, atomically.
func (d *Daemon) Reload(cfg *Config) (sa.ReconcileSummary, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	refuse := func(err error) (sa.ReconcileSummary, error) {
		d.log.Error("configuration reload refused: nothing changed", "err", err)
		return sa.ReconcileSummary{}, err
	}
	if err := cfg.validate(d.path); err != nil {
		return refuse(err)
	}
	if p := d.keyReuse(cfg.State); len(p) > 0 {
		return refuse(&ConfigError{Source: d.path, Problems: p})
	}
	state := cfg.state()
	defer wipeState(&state)
	if p := d.dryRun(state); len(p) > 0 {
		return refuse(&ConfigError{Source: d.path, Problems: p})
	}
	sum, err := d.table.Reconcile(state)
	if err != nil {
		return refuse(err)
	}
	if len(sum.Failed) > 0 {
		// The dry run should have caught these; the table may have changed
		// between the two (an API request).
		d.log.Error("configuration reload applied only in part", "summary", sum.String(), "failed", strings.Join(failureLines(sum.Failed, state), "; "))
	}
	if changed := restartOnly(d.cfg, cfg); len(changed) > 0 {
		d.log.Warn("configuration sections changed that only a restart applies; they were ignored", "sections", strings.Join(changed, ", "))
	}
	d.log.Info("configuration reloaded", "summary", sum.String(),
		"sas_added", sum.SAs.Added, "sas_replaced", sum.SAs.Replaced, "sas_deleted", sum.SAs.Deleted,
		"policies_added", sum.Policies.Added, "policies_replaced", sum.Policies.Replaced, "policies_deleted", sum.Policies.Deleted)
	if lvl, _ := ParseLevel(cfg.LogLevel); lvl != d.level.Level() {
		// Say so at the more verbose of the two levels, so it shows.
		old := d.level.Level()
		if lvl > old {
			d.log.Info("log level changed", "level", lvl.String())
			d.level.Set(lvl)
		} else {
			d.level.Set(lvl)
			d.log.Info("log level changed", "level", lvl.String(), "was", old.String())
		}
	}
	return sum, nil
}

// restartOnly names the top-level sections that differ between the
// running configuration and next, apart from those a reload applies.
func restartOnly(running, next *Config) []string {
	a, b := *running, *next
	a.State, b.State = sa.State{}, sa.State{}
	a.LogLevel, b.LogLevel = "", ""
	// Read by every LoadConfig, so a reload applies it.
	a.InsecureKeyFilePermissions, b.InsecureKeyFilePermissions = false, false
	var out []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			out = append(out, name)
		}
	}
	return out
}

// keyReuse finds outbound SAs that the new state would create (add, or
// replace because their spec changed) with key material that an outbound
// SA in the table already uses.
func (d *Daemon) keyReuse(next sa.State) []string {
	current := map[string]sa.BundleSpec{} // config bundles by name, keys included
	var inUse [][]byte
	infos := d.table.List(true)
	defer func() {
		for i := range infos {
			infos[i].Spec.Wipe()
		}
	}()
	for _, bi := range infos {
		if bi.Origin == sa.OriginConfig {
			current[bi.Spec.Name] = bi.Spec
		}
		if bi.Spec.Dir != "out" {
			continue
		}
		for _, s := range []*sa.SASpec{bi.Spec.ESP, bi.Spec.AH} {
			if s != nil {
				inUse = append(inUse, keyOf(s))
			}
		}
	}
	var problems []string
	for i, b := range next.SAs {
		n, err := b.Normalized()
		if err != nil || n.Dir != "out" {
			continue
		}
		old, replacing := current[n.Name]
		if replacing && specEqual(old, n) {
			continue // unchanged: not touched
		}
		for _, s := range []*sa.SASpec{n.ESP, n.AH} {
			if s == nil {
				continue
			}
			k := keyOf(s)
			if len(k) == 0 {
				continue
			}
			uses := 0
			for _, u := range inUse {
				if bytes.Equal(u, k) {
					uses++
				}
			}
			if replacing && uses == 1 {
				// The bundle it replaces holds these keys: the table
				// carries that SA's sequence number over (sa.Reconcile),
				// so no nonce repeats.
				if os := oldSA(old, n, s); os != nil && bytes.Equal(keyOf(os), k) {
					continue
				}
			}
			if uses > 0 {
				problems = append(problems, fmt.Sprintf("sas[%d] (%q): its %s keys are those of an outbound SA in use; changing or re-creating an outbound SA restarts its sequence numbers, so with the same keys it would repeat nonces: give it new keys (and a new SPI)", i, b.Name, protoOf(n, s)))
			}
		}
	}
	return problems
}

// oldSA returns the SA of the old bundle spec that plays the role s plays in n.
func oldSA(old, n sa.BundleSpec, s *sa.SASpec) *sa.SASpec {
	if s == n.AH {
		return old.AH
	}
	return old.ESP
}

func protoOf(b sa.BundleSpec, s *sa.SASpec) string {
	if s == b.AH {
		return "AH"
	}
	return "ESP"
}

// keyOf concatenates an SA's keys (encryption key, a separator, the
// integrity key) for comparison.
func keyOf(s *sa.SASpec) []byte {
	if s.EncKey.Len() == 0 && s.AuthKey.Len() == 0 {
		return nil
	}
	k := append([]byte{}, s.EncKey.Bytes()...)
	k = append(k, 0xff, byte(s.EncKey.Len()))
	return append(k, s.AuthKey.Bytes()...)
}

// specEqual compares two normalized bundle specs, keys included.
func specEqual(a, b sa.BundleSpec) bool { return reflect.DeepEqual(a, b) }

// dryRun reconciles state into a scratch table holding copies of the
// API-added bundles and policies, under the same capabilities, and
// returns what would fail.
func (d *Daemon) dryRun(state sa.State) []string {
	hw, cur := d.caps.Snapshot()
	caps, err := capabilities.NewManager(hw, cur)
	if err != nil {
		return []string{"capabilities: " + err.Error()}
	}
	scratch, err := sa.NewTable(sa.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return []string{err.Error()}
	}
	defer scratch.Close()
	// A faithful copy (handles, names, origins, policies) so that a refusal
	// names the bundles of the real table.
	if err := d.table.CopyInto(scratch); err != nil {
		d.log.Debug("the reload dry run left out entries the capabilities now refuse", "err", err)
	}
	sum, err := scratch.Reconcile(state)
	if err != nil {
		return []string{trimSA(err)}
	}
	return failureLines(sum.Failed, state)
}
