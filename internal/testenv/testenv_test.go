package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a check ended instead of
// ending the test.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	if !r.failed && !r.skipped {
		r.skipped, r.msg = true, format
	}
}

func (r *recorder) Fatalf(format string, args ...any) {
	if !r.failed && !r.skipped {
		r.failed, r.msg = true, format
	}
}

// TestSkipfSkipsOrFails: outside CI a missing need skips; under CI=true
// it fails, saying it did not skip.
func TestSkipfSkipsOrFails(t *testing.T) {
	for _, ci := range []string{"", "false", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		Skipf(r, "needs %s", "x")
		if want := ci == "true"; r.failed != want || r.skipped == want {
			t.Errorf("CI=%q: failed %v, skipped %v; want failed %v", ci, r.failed, r.skipped, want)
		}
		if r.failed && !strings.HasPrefix(r.msg, "CI=true, so not skipping: ") {
			t.Errorf("CI=true failure says %q", r.msg)
		}
	}
}

// TestRequireTool: a tool that exists passes and gives its path; one that
// does not skips, or fails under CI=true.
func TestRequireTool(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh(1) to test with: %v", err)
	}
	r := &recorder{TB: t}
	if got := RequireTool(r, "sh", "coreutils"); got != sh || r.skipped || r.failed {
		t.Errorf("RequireTool(sh) = %q (skipped %v, failed %v), want %q", got, r.skipped, r.failed, sh)
	}
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		RequireTool(r, "secnic-no-such-tool", "nowhere")
		if r.failed != (ci == "true") || r.skipped == (ci == "true") {
			t.Errorf("CI=%q, missing tool: failed %v, skipped %v", ci, r.failed, r.skipped)
		}
	}
}

// TestRequireCommand: a command that exits 0 passes, one that fails skips
// (fails under CI=true).
func TestRequireCommand(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	RequireCommand(r, "true(1)", "coreutils", exec.Command("sh", "-c", "exit 0"))
	if r.failed || r.skipped {
		t.Errorf("a command that exits 0: failed %v, skipped %v", r.failed, r.skipped)
	}
	RequireCommand(r, "false(1)", "coreutils", exec.Command("sh", "-c", "exit 1"))
	if !r.failed {
		t.Error("a command that exits 1 under CI=true did not fail")
	}
}
