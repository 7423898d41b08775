// Package interop holds tests that exchange packets with independent IPsec
// implementations: scapy's IPsec module (Debian python3-scapy) and tshark.
package interop

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/sa"
)

// python is Debian's interpreter, the one python3-scapy is installed for.
const python = "/usr/bin/python3"

// requireScapy skips the test when scapy is not installed, except in CI
// (CI=true), where .ci/run installs it and a skip would hide a failure.
func requireScapy(t *testing.T) {
	t.Helper()
	testenv.RequireCommand(t, "scapy", "apt-get install python3-scapy", exec.Command(python, "-c", "import scapy.layers.ipsec"))
}

type scapyCase struct {
	Name          string   `json:"name"`
	Enc           string   `json:"enc"`
	Auth          string   `json:"auth"`
	ICVLen        int      `json:"icv_len,omitempty"`
	EncKey        string   `json:"enc_key"`
	AuthKey       string   `json:"auth_key"`
	SPI           uint32   `json:"spi"`
	Mode          string   `json:"mode"`
	Outer6        bool     `json:"outer6"`
	Inner6        bool     `json:"inner6"`
	Src           string   `json:"src"`
	Dst           string   `json:"dst"`
	ESN           bool     `json:"esn"`
	SeqHigh       uint32   `json:"seq_high"`
	UDPPort       uint16   `json:"udp_port,omitempty"`
	Plain         []string `json:"plain"`
	SecnicPackets []string `json:"secnic_packets"`
	ScapyFirstSeq uint64   `json:"scapy_first_seq"`
}

type scapyResult struct {
	Name          string   `json:"name"`
	OK            bool     `json:"ok"`
	Error         string   `json:"error"`
	ScapyPackets  []string `json:"scapy_packets"`
	inbound       *sa.SA
	plain         [][]byte
	secnicPackets [][]byte
}

// scapyAlgs are the ESP algorithms both secnic and scapy 2.5 implement.
// Left out, because scapy 2.5 cannot do them (see docs/interop.md): AES-GMAC
// (not in scapy), and AES-GCM with 8- or 12-byte ICVs (scapy hands the tag
// to python3-cryptography's AESGCM, which only takes 16-byte tags).
var scapyAlgs = []struct {
	enc    suite.Enc
	auth   suite.Auth
	icvLen int
}{
	{"aes-gcm-128", "none", 0}, {"aes-gcm-192", "none", 0}, {"aes-gcm-256", "none", 0},
	{"chacha20-poly1305", "none", 0},
	{"aes-cbc-128", "hmac-sha1-96", 0}, {"aes-cbc-192", "hmac-sha256-128", 0}, {"aes-cbc-256", "hmac-sha512-256", 0},
	{"aes-ctr-128", "hmac-sha256-128", 0}, {"aes-ctr-192", "hmac-sha384-192", 0}, {"aes-ctr-256", "hmac-sha1-96", 0},
	{"null", "hmac-sha1-96", 0}, {"null", "hmac-sha256-128", 0}, {"null", "hmac-sha384-192", 0},
	{"null", "hmac-sha512-256", 0}, {"null", "hmac-md5-96", 0},
	{"3des-cbc", "hmac-sha1-96", 0}, {"des-cbc", "hmac-md5-96", 0},
}

// TestScapyESP exchanges ESP packets with scapy in both directions for every
// common algorithm, transport and tunnel mode, IPv4 and IPv6 (and both
// mixed-family tunnels), ESN on and off, and UDP encapsulation.
func TestScapyESP(t *testing.T) {
	requireScapy(t)
	type shape struct {
		mode           sa.Mode
		outer6, inner6 bool
		esn            bool
		seqHigh        uint32
		udp            bool
	}
	var shapes []shape
	for _, mode := range []sa.Mode{sa.Transport, sa.Tunnel} {
		for _, fam := range [][2]bool{{false, false}, {true, true}, {false, true}, {true, false}} {
			if mode == sa.Transport && fam[0] != fam[1] {
				continue
			}
			for _, esn := range []bool{false, true} {
				shapes = append(shapes, shape{mode: mode, outer6: fam[0], inner6: fam[1], esn: esn})
			}
		}
	}
	shapes = append(shapes,
		shape{mode: sa.Tunnel, esn: true, seqHigh: 1},
		shape{mode: sa.Tunnel, udp: true},
		shape{mode: sa.Transport, udp: true},
	)

	var cases []scapyCase
	var results []*scapyResult
	for _, a := range scapyAlgs {
		for _, sh := range shapes {
			if sh.esn && a.auth != "none" {
				// scapy 2.5 leaves the ESN high half out of the ESP HMAC
				// (it appends it only for AH), contrary to RFC 4303 2.2.1;
				// secnic appends it as the RFC and Linux's authencesn do.
				// ESN is covered with the AEADs, whose AAD scapy gets right.
				continue
			}
			ci := scapyCase{Enc: string(a.enc), Auth: string(a.auth), ICVLen: a.icvLen, SPI: 0x1000 + uint32(len(cases)),
				Mode: sh.mode.String(), Outer6: sh.outer6, Inner6: sh.inner6, ESN: sh.esn, SeqHigh: sh.seqHigh}
			ci.Name = fmt.Sprintf("%s+%s/icv%d/%s/outer6=%v/inner6=%v/esn=%v/hi=%d/udp=%v", a.enc, a.auth, a.icvLen, ci.Mode, sh.outer6, sh.inner6, sh.esn, sh.seqHigh, sh.udp)
			src, dst := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.20")
			if sh.outer6 {
				src, dst = netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::20")
			}
			ci.Src, ci.Dst = src.String(), dst.String()
			ei, _ := suite.LookupEnc(a.enc)
			ek := randBytes(ei.KeyLen)
			var ak []byte
			if a.auth != "none" {
				ai, _ := suite.LookupAuth(a.auth)
				ak = randBytes(ai.KeyLen)
			}
			ci.EncKey, ci.AuthKey = hex.EncodeToString(ek), hex.EncodeToString(ak)
			p := sa.Params{SPI: ci.SPI, Proto: sa.ESP, Mode: sh.mode, Src: src, Dst: dst, ESN: sh.esn, SeqHigh: sh.seqHigh, ReplayWindow: 64}
			if sh.udp {
				ci.UDPPort = 4500
				p.Encap = &sa.UDPEncap{SrcPort: 4500, DstPort: 4500}
			}
			mk := func(dir sa.Direction) *sa.SA {
				su, err := suite.New(suite.Params{Enc: a.enc, Auth: a.auth, ICVLen: a.icvLen, EncKey: ek, AuthKey: ak, AllowLegacy: true})
				if err != nil {
					t.Fatal(err)
				}
				p.Dir = dir
				s, err := sa.New(p, su)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			out, in := mk(sa.Out), mk(sa.In)
			r := &scapyResult{inbound: in}
			for i := range 3 {
				var d []byte
				if sh.mode == sa.Transport {
					d = udpDatagram(src, dst, 20+i*301)
				} else if sh.inner6 {
					d = udpDatagram(netip.MustParseAddr("fd00:a::1"), netip.MustParseAddr("fd00:b::1"), 20+i*301)
				} else {
					d = udpDatagram(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.1.1"), 20+i*301)
				}
				buf := packet.NewBuf(len(d) + 512)
				buf.SetBytes(d)
				if err := esp.Encap(out, buf); err != sa.ReasonNone {
					t.Fatalf("%s: Encap: %v", ci.Name, err)
				}
				r.plain = append(r.plain, d)
				r.secnicPackets = append(r.secnicPackets, append([]byte(nil), buf.Bytes()...))
				ci.Plain = append(ci.Plain, hex.EncodeToString(d))
				ci.SecnicPackets = append(ci.SecnicPackets, hex.EncodeToString(buf.Bytes()))
			}
			// scapy's packets continue after secnic's in the receiver's window.
			ci.ScapyFirstSeq = 10
			cases = append(cases, ci)
			results = append(results, r)
		}
	}

	got := runScapy(t, "testdata/scapy_esp.py", cases)
	if len(got) != len(cases) {
		t.Fatalf("scapy returned %d results for %d cases", len(got), len(cases))
	}
	for i, res := range got {
		r := results[i]
		t.Run(cases[i].Name, func(t *testing.T) {
			if !res.OK {
				t.Fatalf("scapy could not decrypt secnic's packets:\n%s", res.Error)
			}
			if len(res.ScapyPackets) != len(r.plain) {
				t.Fatalf("scapy produced %d packets, want %d", len(res.ScapyPackets), len(r.plain))
			}
			for j, hp := range res.ScapyPackets {
				b, err := hex.DecodeString(hp)
				if err != nil {
					t.Fatal(err)
				}
				buf := packet.NewBuf(len(b) + 512)
				buf.SetBytes(b)
				var port uint16
				if r.inbound.Encap != nil {
					port = r.inbound.Encap.DstPort
				}
				loc, err := packet.Locate(buf.Bytes(), port)
				if err != nil {
					t.Fatalf("scapy packet %d: %v\n%x", j, err, b)
				}
				if err := esp.Decap(r.inbound, buf, &loc); err != sa.ReasonNone {
					t.Fatalf("secnic could not decrypt scapy packet %d: %v\n%x", j, err, b)
				}
				if !bytes.Equal(buf.Bytes(), r.plain[j]) {
					t.Fatalf("scapy packet %d decrypted to\n%x\nwant\n%x", j, buf.Bytes(), r.plain[j])
				}
			}
		})
	}
}

func runScapy(t *testing.T, script string, cases []scapyCase) []scapyResult {
	t.Helper()
	in, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scapy peer failed: %v\n%s", err, stderr.String())
	}
	var resp struct {
		Results []scapyResult `json:"results"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("scapy peer output: %v\n%s", err, out)
	}
	return resp.Results
}

// randBytes is packettest.RandKey.
var randBytes = packettest.RandKey

// udpDatagram builds an IPv4 or IPv6 UDP datagram (with a valid checksum)
// carrying n payload bytes.
func udpDatagram(src, dst netip.Addr, n int) []byte {
	return packettest.Fields{Src: src, Dst: dst, SrcPort: 40000, DstPort: 5201, Payload: packettest.Pattern(n, 13, 7), ID: 1, DF: true}.Build()
}
