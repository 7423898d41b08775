// Package testenv holds the environment checks of tests that need more
// than the Go toolchain: root, a TUN device, network namespaces, outside
// tools (ip, ping, tshark, scapy). Without what it needs such a test skips,
// except under CI=true, where the environment is meant to have all of it
// and a skip would hide a failure: there it fails, with what is missing.
//
// It replaces the requireRoot, skipOrFail, requireTshark and similar
// helpers the packages' tests used to define each for itself.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// TUNDevice is the clone device TUN ports are made from.
const TUNDevice = "/dev/net/tun"

// CI reports whether the tests run in CI (CI=true), where nothing they
// need may be missing.
func CI() bool { return os.Getenv("CI") == "true" }

// Skipf skips t with the message, or fails it under CI=true.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true, so not skipping: "+format, args...)
		return
	}
	t.Skipf(format, args...)
}

// RequireRoot skips t (fails it under CI=true) unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root")
	}
}

// RequireTUN skips t (fails it under CI=true) unless it runs as root with
// the TUN clone device, which TUN ports need.
func RequireTUN(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root (TUN devices)")
	}
	if _, err := os.Stat(TUNDevice); err != nil {
		Skipf(t, "needs %s: %v", TUNDevice, err)
	}
}

// RequireNetns skips t (fails it under CI=true) unless it can make
// network namespaces: root, and a kernel with them.
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "needs root (network namespaces, veth)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		Skipf(t, "needs network namespaces: %v", err)
	}
}

// RequireTool returns the path of the command name, or skips t (fails it
// under CI=true) when it is not installed; install says how to get it
// (e.g. "apt-get install tshark").
func RequireTool(t testing.TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "needs %s (%s)", name, install)
	}
	return path
}

// RequireCommand skips t (fails it under CI=true) unless cmd runs and
// exits 0, for a dependency a path lookup cannot see (a Python module, a
// kernel feature); what names it in the message.
func RequireCommand(t testing.TB, what, install string, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Run(); err != nil {
		Skipf(t, "needs %s (%s): %v", what, install, err)
	}
}
