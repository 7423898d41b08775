package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secnic/secnic/saspec"
)

func TestRunCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("wire: {type: memory, cable: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("wire: {type: memory}\nlog_level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, sock: filepath.Join(dir, "none.sock")}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"valid", []string{"run", "--config", good, "--check"}, 0, "configuration OK"},
		{"invalid", []string{"run", "--config", bad, "--check"}, 1, "wire.cable"},
		{"missing-file", []string{"run", "-c", filepath.Join(dir, "nope.yaml"), "--check"}, 1, "no such file"},
		{"no-config", []string{"run"}, 2, "--config is required"},
		{"bad-log-format", []string{"run", "--config", good, "--log-format", "xml"}, 2, "--log-format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.run("", tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d), output %q lacks %q", code, tc.code, out+errOut, tc.want)
			}
		})
	}
}

func TestDemoFlags(t *testing.T) {
	c := cli{t: t, sock: filepath.Join(t.TempDir(), "none.sock")}
	for _, args := range [][]string{
		{"demo", "--bytes", "lots"},
		{"demo", "--bytes", "0"},
		{"demo", "--wire", "serial"},
		{"demo", "--pings", "0"},
	} {
		if errOut := c.fail(2, args...); !strings.Contains(errOut, "--") {
			t.Errorf("%v: %q", args, errOut)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"16MiB", 16 << 20, true}, {"100MB", 100e6, true}, {"65536", 65536, true}, {"2G", 2 << 30, true},
		{"1 KiB", 1024, true}, {"8GiB", 8 << 30, true}, {"9GiB", 0, false}, {"-1", 0, false}, {"x", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestWiresharkKeysCommand(t *testing.T) {
	sock, tb := daemon(t, "full")
	key, _ := saspec.ParseKey("0x000102030405060708090a0b0c0d0e0f10111213")
	if _, err := tb.Add(saspec.BundleSpec{Name: "o", Dir: "out", Mode: "tunnel", Src: "192.0.2.1", Dst: "192.0.2.2",
		ESP: &saspec.SASpec{SPI: 0x1234, Enc: "aes-gcm-128", EncKey: key}}); err != nil {
		t.Fatal(err)
	}
	c := cli{t: t, sock: sock}
	want := `"IPv4","192.0.2.1","192.0.2.2","0x00001234","AES-GCM with 16 octet ICV [RFC4106]","0x000102030405060708090a0b0c0d0e0f10111213","NULL",""`

	if out := c.ok("wireshark-keys"); !strings.Contains(out, want) {
		t.Errorf("uat output lacks the record:\n%s", out)
	}
	if out := c.ok("wireshark-keys", "--format", "tshark"); strings.TrimSpace(out) != "-o 'uat:esp_sa:"+want+"'" {
		t.Errorf("tshark output:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), "esp_sa")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("wireshark-keys", "--out", path)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), want) || strings.Contains(string(b), "old") {
		t.Errorf("key file:\n%s", b)
	}
	if errOut := c.fail(2, "wireshark-keys", "--format", "pdf"); !strings.Contains(errOut, "--format") {
		t.Errorf("bad format: %q", errOut)
	}
	// No daemon: a clear error.
	c2 := cli{t: t, sock: filepath.Join(t.TempDir(), "none.sock")}
	if errOut := c2.fail(1, "wireshark-keys"); errOut == "" {
		t.Error("no error without a daemon")
	}
}
