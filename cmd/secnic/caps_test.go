package main

import (
	"strconv"
	"strings"
	"testing"
)

// TestCapsWidth: caps fits the terminal, shows hardware values only where
// they differ from the current ones, and everything with --full.
func TestCapsWidth(t *testing.T) {
	sock, _ := daemon(t, "full")
	c := cli{t: t, sock: sock}
	for _, w := range []string{"60", "80", "132"} {
		maxW, _ := strconv.Atoi(w)
		for _, full := range []bool{false, true} {
			args := []string{"caps", "--width", w}
			if full {
				args = append(args, "--full")
			}
			out := c.ok(args...)
			for _, l := range strings.Split(out, "\n") {
				// Only a single unbreakable word may exceed the width.
				if len(l) > maxW && strings.Contains(strings.TrimSpace(l), " ") {
					t.Errorf("width %s (full %v): %d-column line %q", w, full, len(l), l)
				}
			}
		}
	}
	// The full profile's current configuration disables the legacy
	// algorithms: those fields differ, the others do not.
	out := c.ok("caps", "--width", "80", "--view", "ndis")
	for _, want := range []string{
		"  IPv6Supported:                TRUE\n",
		"  AuthenticationAlgorithms:     0x0000003e\n      SHA_1 SHA_256 AES_GCM_128 AES_GCM_192 AES_GCM_256\n    hardware:                   0x0000003f\n      MD5 SHA_1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("caps lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "hardware:"); n != 2 {
		t.Errorf("%d hardware lines by default, want 2 (the two algorithm masks):\n%s", n, out)
	}
	full := c.ok("caps", "--width", "80", "--view", "ndis", "--full")
	if h, cur := strings.Count(full, "    hardware: "), strings.Count(full, "    current:  "); h != 17 || cur != 17 {
		t.Errorf("--full: %d hardware and %d current lines, want 17 each:\n%s", h, cur, full)
	}
	if errOut := c.fail(2, "caps", "--width", "10"); !strings.Contains(errOut, "--width") {
		t.Errorf("narrow width: %s", errOut)
	}
}
