package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigKeyFilePermissions(t *testing.T) {
	const cfg = `wire: {type: memory, cable: x}
sas:
  - {name: in1, dir: in, dst: 192.0.2.2, esp: {spi: 0x1000, enc: aes-gcm-128, enc_key: "0x00000000000000000000000000000000000000ff"}}
`
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p)
	if err != nil || len(c.Warnings()) != 0 {
		t.Fatalf("private file: %v, warnings %q", err, c.Warnings())
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o666} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) || !strings.Contains(err.Error(), "insecure_key_file_permissions: true") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if err := os.WriteFile(p, []byte(cfg+"insecure_key_file_permissions: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = LoadConfig(p)
	if err != nil || len(c.Warnings()) != 1 || !strings.Contains(c.Warnings()[0], "chmod 600") {
		t.Fatalf("insecure_key_file_permissions: %v, warnings %q", err, c.Warnings())
	}
	// The option is not a section only a restart applies.
	d, _ := LoadConfig(p)
	d.InsecureKeyFilePermissions = false
	if ch := restartOnly(c, d); len(ch) != 0 {
		t.Errorf("restartOnly = %v", ch)
	}
}
