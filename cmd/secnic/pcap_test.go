package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
)

func runCLI(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := execute(context.Background(), args, strings.NewReader(""), &out, &errOut, commands)
	return code, out.String() + errOut.String()
}

// pcapFile and pcapPackets write and read raw-IP capture files
// (packettest.WritePcap, packettest.ReadPcap).
func pcapFile(t *testing.T, path string, pkts ...[]byte) {
	packettest.WritePcap(t, path, layers.LinkTypeRaw, pkts...)
}

func pcapPackets(t *testing.T, path string) [][]byte {
	_, pkts := packettest.ReadPcap(t, path)
	return pkts
}

// TestPcapCommandVector reproduces RFC 7634 appendix A (ChaCha20-Poly1305
// ESP, tunnel mode) with the CLI in both directions.
func TestPcapCommandVector(t *testing.T) {
	raw, err := os.ReadFile("../../internal/suite/testdata/esp-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Vectors []struct {
			Name, Key, SPI, Seq, IV, Plaintext, Packet string
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, v := range vf.Vectors {
		if v.Name != "rfc7634-appendix-a" {
			continue
		}
		dir := t.TempDir()
		saPath := filepath.Join(dir, "sa.yaml")
		os.WriteFile(saPath, []byte(`- name: rfc7634
  dir: in
  mode: tunnel
  src: 192.0.2.1
  dst: 192.0.2.2
  esp: {spi: "0x`+v.SPI+`", enc: chacha20-poly1305, enc_key: "`+strings.ReplaceAll(v.Key, " ", "")+`"}
`), 0o600)
		esp := unhex(v.Packet)
		wire := make([]byte, packet.IPv4MinLen+len(esp))
		packet.WriteIPv4(wire, packet.IPv4Fields{TotalLen: len(wire), ID: 1, TTL: 64, Protocol: packet.ProtoESP, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")})
		copy(wire[packet.IPv4MinLen:], esp)
		pt := unhex(v.Plaintext)
		inner := pt[:len(pt)-2-int(pt[len(pt)-2])]

		in, out := filepath.Join(dir, "esp.pcap"), filepath.Join(dir, "plain.pcap")
		pcapFile(t, in, wire)
		code, msg := runCLI(t, "pcap", "decap", "--sa", saPath, "--seq", "0x"+v.Seq, in, out)
		if code != 0 || !strings.Contains(msg, " ok") || !strings.Contains(msg, "1 packets: 1 ok") {
			t.Fatalf("decap exit %d:\n%s", code, msg)
		}
		if got := pcapPackets(t, out); len(got) != 1 || !bytes.Equal(got[0], inner) {
			t.Fatalf("decap wrote %x, want %x", got, inner)
		}

		// encap with the inbound bundle turned around, the published
		// sequence number and IV: the published packet.
		pcapFile(t, in, inner)
		code, msg = runCLI(t, "pcap", "encap", "--sa", saPath, "--dir", "in", "--seq", "0x"+v.Seq, "--iv", v.IV, in, out)
		if code != 0 {
			t.Fatalf("encap exit %d:\n%s", code, msg)
		}
		if got := pcapPackets(t, out); len(got) != 1 || !bytes.Equal(got[0][packet.IPv4MinLen:], esp) {
			t.Fatalf("encap wrote\n%x\nwant\n%x", got[0][packet.IPv4MinLen:], esp)
		}

		// A tampered packet: exit status 1 with the reason, 0 with --keep-going.
		wire[len(wire)-1] ^= 1
		pcapFile(t, in, wire)
		code, msg = runCLI(t, "pcap", "decap", "--sa", saPath, "--seq", "0x"+v.Seq, in, out)
		if code != 1 || !strings.Contains(msg, "drop XfrmInStateProtoError") {
			t.Fatalf("tampered: exit %d:\n%s", code, msg)
		}
		if code, msg = runCLI(t, "pcap", "decap", "--keep-going", "--sa", saPath, "--seq", "0x"+v.Seq, in, out); code != 0 {
			t.Fatalf("--keep-going: exit %d:\n%s", code, msg)
		}
		// Usage errors exit 2.
		if code, _ = runCLI(t, "pcap", "decap", in, out); code != 2 {
			t.Fatalf("missing --sa: exit %d, want 2", code)
		}
		return
	}
	t.Fatal("RFC 7634 vector not found")
}
