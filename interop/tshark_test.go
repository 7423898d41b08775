package interop

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// tsharkAlgs are the ESP transforms Wireshark 4.0 decrypts and verifies.
var tsharkAlgs = []struct{ enc, auth string }{
	{"aes-gcm-128", ""}, {"aes-gcm-192", ""}, {"aes-gcm-256", ""},
	{"aes-cbc-128", "hmac-sha1-96"}, {"aes-cbc-192", "hmac-sha256-128"}, {"aes-cbc-256", "hmac-sha384-192"},
	{"aes-ctr-128", "hmac-sha512-256"}, {"aes-ctr-192", "hmac-sha256-128"}, {"aes-ctr-256", "hmac-md5-96"},
	{"null", "hmac-sha256-128"}, {"null", "hmac-sha1-96"},
	{"3des-cbc", "hmac-sha1-96"}, {"des-cbc", "hmac-md5-96"},
}

// TestTsharkDecryptsESP writes a capture of ESP packets secnic produced,
// and the ESP SA table secnic writes for Wireshark (the file `secnic
// wireshark-keys` writes), and checks that tshark decrypts every packet to
// the original datagram and reports its ICV good.
func TestTsharkDecryptsESP(t *testing.T) {
	testenv.RequireTool(t, "tshark", "apt-get install tshark")
	prof, err := capabilities.LookupProfile("full")
	if err != nil {
		t.Fatal(err)
	}
	hw := prof.Hardware
	hw.Limits.LegacyAlgorithms = true
	caps, err := capabilities.NewManager(hw, hw)
	if err != nil {
		t.Fatal(err)
	}
	table, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()

	type frame struct {
		name  string
		spi   uint32
		inner []byte // the datagram before protection
	}
	var frames []frame
	var wire [][]byte
	spi := uint32(0x5000)
	for _, a := range tsharkAlgs {
		for _, icv := range []int{0, 8, 12} {
			if icv != 0 && !strings.HasPrefix(a.enc, "aes-gcm") {
				continue
			}
			for _, mode := range []string{"transport", "tunnel"} {
				for _, v6 := range []bool{false, true} {
					spi++
					src, dst := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
					if v6 {
						src, dst = netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::20")
					}
					spec := saspec.BundleSpec{
						Name: fmt.Sprintf("b%x", spi), Dir: "out", Mode: mode, Src: src.String(), Dst: dst.String(), AllowLegacy: true,
						ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: a.enc, Auth: a.auth, ICVLen: icv},
					}
					spec.ESP.EncKey = saspec.KeyOf(randBytes(keyLen(t, a.enc)))
					if a.auth != "" {
						spec.ESP.AuthKey = saspec.KeyOf(randBytes(authKeyLen(t, a.auth)))
					}
					h, err := table.Add(spec)
					if err != nil {
						t.Fatalf("%s/%s: %v", a.enc, a.auth, err)
					}
					b := table.Snapshot().Bundle(h)
					name := fmt.Sprintf("%s+%s/icv%d/%s/v6=%v", a.enc, a.auth, icv, mode, v6)
					for i := range 2 {
						var d []byte
						switch {
						case mode == "transport":
							d = udpDatagram(src, dst, 30+i*400)
						case v6:
							d = udpDatagram(netip.MustParseAddr("fd00:a::1"), netip.MustParseAddr("fd00:b::1"), 30+i*400)
						default:
							d = udpDatagram(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.1"), 30+i*400)
						}
						p := packet.NewBuf(len(d) + 512)
						p.SetBytes(d)
						if err := esp.Encap(b.ESP, p); err != sa.ReasonNone {
							t.Fatalf("%s: %v", name, err)
						}
						frames = append(frames, frame{name: name, spi: spi, inner: d})
						wire = append(wire, append([]byte(nil), p.Bytes()...))
					}
				}
			}
		}
	}

	// A control: the last packet again with one ciphertext bit flipped must
	// be reported bad, or the check above proves nothing.
	tampered := append([]byte(nil), wire[len(wire)-1]...)
	tampered[len(tampered)-20] ^= 0x01
	wire = append(wire, tampered)

	dir := t.TempDir()
	pcapPath := filepath.Join(dir, "wire.pcap")
	f, err := os.Create(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeRaw)
	for i, b := range wire {
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1000), CaptureLength: len(b), Length: len(b)}, b)
	}
	f.Close()

	// The SA table goes where Wireshark looks for it: the esp_sa file of the
	// personal configuration directory.
	cfg := filepath.Join(dir, "config")
	os.MkdirAll(filepath.Join(cfg, "wireshark"), 0o700)
	var uat bytes.Buffer
	if err := nic.WriteWiresharkESPSA(&uat, table.List(true)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "wireshark", "esp_sa"), uat.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("tshark", "-n", "-r", pcapPath,
		"-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.number", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "esp.icv_bad",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "udp.length", "-e", "data.data")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfg, "HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(frames)+1 {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s\n%s", len(lines), len(frames), out, stderr.String())
	}
	if f := strings.Split(lines[len(lines)-1], "|"); f[3] != "1" && f[3] != "True" {
		t.Fatalf("tampered control frame not reported bad by tshark: %q", lines[len(lines)-1])
	}
	for i, line := range lines[:len(frames)] {
		fr := frames[i]
		fields := strings.Split(line, "|")
		spiField, good, bad := fields[1], fields[2], fields[3]
		if spiField != fmt.Sprintf("0x%08x", fr.spi) {
			t.Errorf("frame %d (%s): SPI %q", i+1, fr.name, spiField)
			continue
		}
		if good != "1" && good != "True" || bad == "1" || bad == "True" {
			t.Errorf("frame %d (%s): ICV not reported good (good=%q bad=%q)", i+1, fr.name, good, bad)
			continue
		}
		// The decrypted inner UDP payload must be the original bytes.
		seg := fr.inner[packet.IPv4MinLen:]
		if packet.Version(fr.inner) == 6 {
			seg = fr.inner[packet.IPv6Len:]
		}
		wantData := fmt.Sprintf("%x", seg[packet.UDPLen:])
		if !strings.Contains(fields[7], wantData) {
			t.Errorf("frame %d (%s): tshark's decrypted payload %q does not contain the original %q", i+1, fr.name, fields[7], wantData)
		}
	}
	t.Logf("tshark decrypted and verified %d frames of %d SAs", len(frames), len(frames)/2)
}

func keyLen(t *testing.T, enc string) int {
	switch {
	case enc == "null":
		return 0
	case enc == "des-cbc":
		return 8
	case enc == "3des-cbc":
		return 24
	case enc == "chacha20-poly1305":
		return 36
	}
	n := map[string]int{"128": 16, "192": 24, "256": 32}[enc[len(enc)-3:]]
	if strings.HasPrefix(enc, "aes-gcm") || strings.HasPrefix(enc, "aes-ctr") {
		n += 4
	}
	if n == 0 {
		t.Fatalf("no key length for %s", enc)
	}
	return n
}

func authKeyLen(t *testing.T, auth string) int {
	n := map[string]int{"hmac-md5-96": 16, "hmac-sha1-96": 20, "hmac-sha256-128": 32, "hmac-sha384-192": 48, "hmac-sha512-256": 64}[auth]
	if n == 0 {
		t.Fatalf("no key length for %s", auth)
	}
	return n
}
