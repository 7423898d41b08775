//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/internal/twonic"
)

// TestWiresharkKeys captures the wire side of a NIC, writes the ESP SA
// table with `secnic wireshark-keys` over the control API, and has tshark
// decrypt the capture with it.
func TestWiresharkKeys(t *testing.T) {
	bin := buildSecnic(t)
	tshark := testenv.RequireTool(t, "tshark", "Debian: tshark")
	for _, tc := range []struct {
		name string
		sc   twonic.Scenario
	}{
		{"gcm", twonic.Scenario{}},
		{"cbc-sha256", twonic.Scenario{Enc: "aes-cbc-128", Auth: "hmac-sha256-128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sc.CaptureDir, tc.sc.SocketDir = t.TempDir(), t.TempDir()
			l := startLab(t, tc.sc)
			mustPing(t, l, "a", false)

			keys := filepath.Join(t.TempDir(), "esp_sa")
			out, err := exec.Command(bin, "wireshark-keys", "--socket", l.A.ControlSocket(), "--out", keys).CombinedOutput()
			if err != nil {
				t.Fatalf("secnic wireshark-keys: %v\n%s", err, out)
			}
			fi, err := os.Stat(keys)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
			}
			table, _ := os.ReadFile(keys)
			var records []string
			for _, line := range strings.Split(string(table), "\n") {
				if line != "" && !strings.HasPrefix(line, "#") {
					records = append(records, line)
				}
			}
			if len(records) != 2 {
				t.Fatalf("want 2 ESP SA records (one per direction), got:\n%s", table)
			}

			// The tshark form is the same records as -o options.
			targs, err := exec.Command(bin, "wireshark-keys", "--socket", l.A.ControlSocket(), "--format", "tshark").Output()
			if err != nil || strings.Count(string(targs), "-o 'uat:esp_sa:") != 2 {
				t.Errorf("--format tshark: %v\n%s", err, targs)
			}

			if err := l.A.Close(); err != nil { // flush the capture
				t.Fatal(err)
			}
			args := []string{"-r", l.CapturePath("a", "wire"), "-n",
				"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}
			for _, r := range records {
				args = append(args, "-o", "uat:esp_sa:"+r)
			}
			cmd := exec.Command(tshark, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
			dec, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, dec)
			}
			text := string(dec)
			for _, want := range []string{"Echo (ping) request", "Echo (ping) reply"} {
				if !strings.Contains(text, want) {
					t.Errorf("tshark did not decrypt the capture (no %q):\n%s", want, text)
				}
			}
		})
	}
}
