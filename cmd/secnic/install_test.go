package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secnic/secnic/internal/testenv"
)

// TestGendocs writes the man pages and completions in-process.
func TestGendocs(t *testing.T) {
	dir := t.TempDir()
	c := cli{t: t, sock: filepath.Join(dir, "none.sock")}
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	c.ok("gendocs", "--man", filepath.Join(dir, "man8"), "--bash", filepath.Join(dir, "bash", "secnic"),
		"--zsh", filepath.Join(dir, "_secnic"), "--fish", filepath.Join(dir, "secnic.fish"))
	page, err := os.ReadFile(filepath.Join(dir, "man8", "secnic-xfrm-state.8"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `.TH "SECNIC" "8" "Jan 2026"`) || !strings.Contains(string(page), "ip xfrm state") {
		t.Errorf("secnic-xfrm-state.8:\n%s", page)
	}
	if _, err := os.Stat(filepath.Join(dir, "man8", "secnic-gendocs.8")); err == nil {
		t.Error("the hidden gendocs command got a man page")
	}
	for _, f := range []string{"bash/secnic", "_secnic", "secnic.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "secnic") {
			t.Errorf("%s: %v", f, err)
		}
	}
	if errOut := c.fail(2, "gendocs"); !strings.Contains(errOut, "--man") {
		t.Errorf("gendocs without outputs: %s", errOut)
	}
}

func TestVersion(t *testing.T) {
	c := cli{t: t, sock: filepath.Join(t.TempDir(), "none.sock")}
	out := c.ok("--version")
	if !strings.HasPrefix(out, "secnic ") || !strings.Contains(out, "(go1.") {
		t.Errorf("--version: %q", out)
	}
}

// TestMakeInstall runs make install DESTDIR=... PREFIX=/usr and checks
// that it installed a complete daemon.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds secnic; skipped with -short")
	}
	for _, tool := range []string{"make", "go", "install", "sed"} {
		testenv.RequireTool(t, tool, "Debian: make, coreutils, sed; the Go toolchain")
	}
	dest, bin := t.TempDir(), filepath.Join(t.TempDir(), "secnic")
	cmd := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr", "BIN="+bin, "VERSION=v0.0.0-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"usr/bin/secnic",
		"usr/lib/systemd/system/secnic.service",
		"usr/share/man/man8/secnic.8",
		"usr/share/man/man8/secnic-xfrm.8",
		"usr/share/man/man8/secnic-run.8",
		"usr/share/bash-completion/completions/secnic",
		"usr/share/zsh/site-functions/_secnic",
		"usr/share/fish/vendor_completions.d/secnic.fish",
	} {
		if fi, err := os.Stat(filepath.Join(dest, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not installed: %v", f, err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/secnic.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/secnic run") || strings.Contains(string(unit), "/usr/local/bin") {
		t.Errorf("the unit does not run /usr/bin/secnic:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/bin/secnic"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "secnic v0.0.0-test (go1.") {
		t.Errorf("installed secnic --version: %q %v", out, err)
	}
}
