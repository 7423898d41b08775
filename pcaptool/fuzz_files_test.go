package pcaptool

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// FuzzPcapFile runs decap over arbitrary capture files: never a panic; a
// run either fails with an error that names the problem or writes at most
// as many packets as it read.
func FuzzPcapFile(f *testing.F) {
	dir := f.TempDir()
	file := roundTripFile(f, dir)
	in, mid := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "mid.pcap")
	for _, lt := range []layers.LinkType{layers.LinkTypeRaw, layers.LinkTypeEthernet} {
		frame := udp4(30)
		if lt == layers.LinkTypeEthernet {
			frame = append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0}, frame...)
		}
		writePcap(f, in, lt, frame, frame)
		if _, err := Run(file, in, mid, Options{Op: Encap}); err != nil {
			f.Fatal(err)
		}
		for _, p := range []string{in, mid} {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			f.Add(b[:len(b)-7]) // a truncated last record
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := t.TempDir()
		p, out := filepath.Join(d, "f.pcap"), filepath.Join(d, "out.pcap")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		sum, err := Run(file, p, out, Options{Op: Decap, Dir: "out", KeepGoing: true, Log: &log})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "pcaptool: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if sum.OK > sum.Packets {
			t.Fatalf("%d ok of %d packets", sum.OK, sum.Packets)
		}
	})
}

// FuzzLoadFile reads arbitrary SA files: never a panic; a file accepted
// has bundles, and builds a tool or is refused with an error.
func FuzzLoadFile(f *testing.F) {
	f.Add([]byte("bundles:\n- name: t1\n  dir: out\n  dst: 192.0.2.2\n  esp: {spi: 0x2001, enc: aes-gcm-128, enc_key: \"0x" + strings.Repeat("ab", 20) + "\"}\n"))
	f.Add([]byte(`[{"dir":"in","esp":{"spi":4096,"enc":"null","auth":"hmac-sha256-128","auth_key":"0x00"}}]`))
	f.Add([]byte("sas: []\npolicies: [{dir: out, bundles: [x]}]\n"))
	f.Add([]byte("bundles: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "sa.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := LoadFile(p)
		if err != nil {
			return
		}
		if len(file.Bundles) == 0 {
			t.Fatal("accepted a file without bundles")
		}
		for _, op := range []Op{Encap, Decap} {
			if tool, err := New(file, Options{Op: op}); err == nil {
				tool.Close()
			}
		}
	})
}
