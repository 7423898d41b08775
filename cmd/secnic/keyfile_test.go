package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const keyedConfig = `wire: {type: memory, cable: x}
sas:
  - name: in1
    dir: in
    dst: 192.0.2.2
    esp: {spi: 0x1000, enc: aes-gcm-128, enc_key: "0x000102030405060708090a0b0c0d0e0f10111213"}
`

func TestKeyFilePermissions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := write("open.yaml", keyedConfig, 0o644)
	private := write("private.yaml", keyedConfig, 0o600)
	lab := write("lab.yaml", keyedConfig+"insecure_key_file_permissions: true\n", 0o644)
	noKeys := write("nokeys.yaml", "wire: {type: memory, cable: x}\n", 0o644)
	zero := write("zero.yaml", strings.Replace(keyedConfig, "000102030405060708090a0b0c0d0e0f10111213", strings.Repeat("00", 20), 1), 0o600)
	saOpen := write("sa.yaml", "name: x\ndir: in\ndst: 192.0.2.2\nesp: {spi: 0x1000, enc: aes-gcm-128, enc_key: \"0x000102030405060708090a0b0c0d0e0f10111213\"}\n", 0o640)
	keyOpen := write("k.hex", "000102030405060708090a0b0c0d0e0f10111213\n", 0o604)
	c := cli{t: t, sock: filepath.Join(dir, "none.sock")}
	tests := []struct {
		name       string
		args       []string
		code       int
		want, lack string
	}{
		{"open config refused", []string{"run", "--config", open, "--check"}, 1, "run `chmod 600 " + open + "`", "configuration OK"},
		{"private config", []string{"run", "--config", private, "--check"}, 0, "configuration OK", "warning"},
		{"lab config warns", []string{"run", "--config", lab, "--check"}, 0, "warning: " + lab + " holds keys and is mode 0644", ""},
		{"config without keys", []string{"run", "--config", noKeys, "--check"}, 0, "configuration OK", "warning"},
		{"all-zero key warns", []string{"run", "--config", zero, "--check"}, 0, "esp.enc_key is all zero bytes", ""},
		{"open SA file refused", []string{"sa", "add", "-f", saOpen}, 1, "run `chmod 600 " + saOpen + "`; or, in a lab where that does not matter, pass --allow-insecure-key-file", "cannot reach"},
		{"open SA file allowed", []string{"sa", "add", "-f", saOpen, "--allow-insecure-key-file"}, 1, "cannot reach", ""},
		{"open key file refused", []string{"sa", "add", "--dir", "in", "--dst", "192.0.2.2", "--spi", "0x1000", "--enc", "aes-gcm-128", "--enc-key", "@" + keyOpen}, 1, "--enc-key: " + keyOpen + " holds keys and is mode 0604", "cannot reach"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.run("", tc.args...)
			all := out + errOut
			if code != tc.code || !strings.Contains(all, tc.want) || (tc.lack != "" && strings.Contains(all, tc.lack)) {
				t.Errorf("exit %d (want %d), output %q: want %q, not %q", code, tc.code, all, tc.want, tc.lack)
			}
		})
	}
}
