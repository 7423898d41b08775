package daemon

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// ErrNoConfigFile is returned by ReloadFile for a daemon started from a
// configuration in memory.
var ErrNoConfigFile = errors.New("daemon: this daemon was not started from a file, so there is nothing to re-read")

// ReloadFile re-reads the configuration file the daemon was started from
// and applies it with Reload (what SIGHUP does).
func (d *Daemon) ReloadFile() (sadb.ReconcileSummary, error) {
	if d.path == "" {
		return sadb.ReconcileSummary{}, ErrNoConfigFile
	}
	cfg, err := LoadConfig(d.path)
	if err != nil {
		d.log.Error("configuration reload refused: nothing changed", "file", d.path, "err", err)
		return sadb.ReconcileSummary{}, err
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
// that would overflow, or an outbound SA whose key another outbound SA
// uses or used (key_reuse: the table's key-use ledger, the same check as
// for API adds; re-creating the same SA under the same keys continues its
// sequence numbers instead). The checks run on a scratch copy of the
// table first; the real table then changes once, atomically.
func (d *Daemon) Reload(cfg *Config) (sadb.ReconcileSummary, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	refuse := func(err error) (sadb.ReconcileSummary, error) {
		d.log.Error("configuration reload refused: nothing changed", "err", err)
		return sadb.ReconcileSummary{}, err
	}
	if err := cfg.validate(d.path); err != nil {
		return refuse(err)
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
	a.State, b.State = saspec.State{}, saspec.State{}
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

// dryRun reconciles state into a scratch table holding copies of the
// API-added bundles and policies, under the same capabilities, and
// returns what would fail.
func (d *Daemon) dryRun(state saspec.State) []string {
	hw, cur := d.caps.Snapshot()
	caps, err := capabilities.NewManager(hw, cur)
	if err != nil {
		return []string{"capabilities: " + err.Error()}
	}
	if err := caps.SetOffloadMode(d.caps.OffloadMode()); err != nil {
		return []string{"offload: " + err.Error()}
	}
	// The scratch table sees a copy of the key-use ledger, so that key
	// reuse is refused here exactly as the real reconcile would.
	scratch, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler), Ledger: d.table.Ledger().Clone()})
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
