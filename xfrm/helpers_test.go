package xfrm

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// tableBackend runs commands against an in-process sa.Table, the table the
// daemon's control API serves.
type tableBackend struct{ t *sadb.Table }

func (b tableBackend) AddBundle(_ context.Context, s saspec.BundleSpec) error {
	_, err := b.t.Add(s)
	return err
}

func (b tableBackend) ListBundles(_ context.Context, keys bool) ([]sadb.BundleInfo, error) {
	return b.t.List(keys), nil
}

func (b tableBackend) DeleteBundle(_ context.Context, h sa.Handle) error { return b.t.Delete(h) }

func (b tableBackend) AddPolicy(_ context.Context, s saspec.PolicySpec) error {
	_, err := b.t.AddPolicy(s)
	return err
}

func (b tableBackend) ListPolicies(context.Context) ([]sadb.PolicyInfo, error) {
	return b.t.Policies(), nil
}

func (b tableBackend) DeletePolicy(_ context.Context, id uint32) error {
	return b.t.DeletePolicy(strconv.FormatUint(uint64(id), 10))
}

func newTable(t testing.TB) *sadb.Table {
	t.Helper()
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: capabilities.ProfileFull})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: m, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	return tb
}

// goldenLoc is the time zone of lifetime timestamps in the tests (stamp
// replaces the time itself, which depends on when the test ran).
var goldenLoc = time.FixedZone("golden", 0)

type rig struct {
	t   *testing.T
	tb  *sadb.Table
	out bytes.Buffer
	r   *Runner
}

func newRig(t *testing.T) *rig {
	g := &rig{t: t, tb: newTable(t)}
	g.r = &Runner{Backend: tableBackend{g.tb}, Out: &g.out, Print: PrintOptions{Dev: "secnic0", Loc: goldenLoc}}
	return g
}

// run runs script lines that must succeed and returns what they printed.
func (g *rig) run(lines ...string) string {
	g.t.Helper()
	g.out.Reset()
	for _, l := range lines {
		if err := g.r.RunLine(context.Background(), l); err != nil {
			g.t.Fatalf("%s: %v", l, err)
		}
	}
	return g.out.String()
}

// fail runs a line that must fail and returns the error text.
func (g *rig) fail(line string) string {
	g.t.Helper()
	err := g.r.RunLine(context.Background(), line)
	if err == nil {
		g.t.Fatalf("%s: no error", line)
	}
	return err.Error()
}

// stamp replaces the creation times in -s output, which depend on when the
// test ran.
func stamp(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "\t  add ") {
			l = "\t  add TIME use -\n"
		}
		b.WriteString(l)
	}
	return b.String()
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
