package pcaptool

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/secnic/secnic/internal/packet"
)

func saFile(t *testing.T, dir, name string, encap bool) File {
	t.Helper()
	spec := `bundles:
- name: t1
  dir: out
  mode: tunnel
  src: 198.51.100.1
  dst: 198.51.100.2
  esp: {spi: 0x2001, enc: aes-gcm-128, enc_key: "0x` + strings.Repeat("ab", 20) + `"}
`
	if encap {
		spec += "  udp_encap: {type: tunnel}\n"
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDecapExplainsUDPEncapMismatch(t *testing.T) {
	dir := t.TempDir()
	withEncap, without := saFile(t, dir, "encap.yaml", true), saFile(t, dir, "plain.yaml", false)
	in, mid, out := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "mid.pcap"), filepath.Join(dir, "out.pcap")
	writePcap(t, in, layers.LinkTypeRaw, udp4(10), udp4(20))
	if _, err := Run(withEncap, in, mid, Options{Op: Encap}); err != nil {
		t.Fatal(err)
	}
	prot := readPcap(t, mid)
	if _, err := packet.Locate(prot[0], 4500); err != nil {
		t.Fatalf("encap did not produce UDP-encapsulated ESP: %v", err)
	}
	lying := append([]byte(nil), prot[1]...)
	packet.UDP(lying[packet.IPv4MinLen:]).SetLength(9)
	writePcap(t, mid, layers.LinkTypeRaw, prot[0], lying)

	var log bytes.Buffer
	if _, err := Run(without, mid, out, Options{Op: Decap, Dir: "out", KeepGoing: true, Log: &log}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"#1 spi=0x00002001 seq=0 drop XfrmInStateMismatch (this packet is UDP-encapsulated; the SA has no udp_encap)",
		"#2 spi=0x00000000 seq=0 drop XfrmInHdrError (the UDP length field disagrees with the datagram)",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, log.String())
		}
	}
	// The SA with udp_encap decapsulates the first.
	log.Reset()
	if _, err := Run(withEncap, mid, out, Options{Op: Decap, Dir: "out", KeepGoing: true, Log: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "#1 spi=0x00002001 seq=1 ok") {
		t.Errorf("with udp_encap:\n%s", log.String())
	}
}
