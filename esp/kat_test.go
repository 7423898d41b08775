package esp

// Known-answer tests of the whole ESP engine against published ESP
// packets: RFC 3602 section 4 cases #5-#8 (AES-CBC), the AES-GCM and
// AES-GMAC cases of draft-mcgrew-gcm-test-01 section 4 (RFC 4106/4543)
// and RFC 7634 Appendix A (ChaCha20-Poly1305). The vectors, each citing its
// source, are in ../internal/suite/testdata/esp-vectors.json, shared with
// the suite package's known-answer tests.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

const katVectorFile = "../internal/suite/testdata/esp-vectors.json"

// katVector is one published ESP packet; see the file's "about" field.
type katVector struct {
	Name      string    `json:"name"`
	Source    string    `json:"source"`
	Enc       suite.Enc `json:"enc"`
	Key       string    `json:"key"`
	SPI       string    `json:"spi"`
	Seq       string    `json:"seq"`
	ESN       bool      `json:"esn"`
	IV        string    `json:"iv"`
	Plaintext string    `json:"plaintext"`
	Packet    string    `json:"packet"`
	ICV       bool      `json:"icv"`
	Mode      string    `json:"mode"`
	Src       string    `json:"src"`
	Dst       string    `json:"dst"`
	Original  string    `json:"original"`
	Outer     string    `json:"outer"`
}

func loadKATVectors(t testing.TB) []katVector {
	t.Helper()
	raw, err := os.ReadFile(katVectorFile)
	if err != nil {
		t.Fatalf("reading test vectors: %v", err)
	}
	var f struct {
		Vectors []katVector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parsing %s: %v", katVectorFile, err)
	}
	if len(f.Vectors) == 0 {
		t.Fatalf("%s holds no vectors", katVectorFile)
	}
	return f.Vectors
}

func katHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test vector %q: %v", s, err)
	}
	return b
}

func (v katVector) seq(t testing.TB) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(v.Seq, 16, 64)
	if err != nil {
		t.Fatalf("%s: bad seq %q: %v", v.Name, v.Seq, err)
	}
	return n
}

func (v katVector) spi(t testing.TB) uint32 {
	t.Helper()
	return binary.BigEndian.Uint32(katHex(t, v.SPI))
}

func (v katVector) mode() sa.Mode {
	if v.Mode == "tunnel" {
		return sa.Tunnel
	}
	return sa.Transport
}

func (v katVector) addrs(t testing.TB) (src, dst netip.Addr) {
	t.Helper()
	if v.Src == "" {
		return v4a, v4b
	}
	return netip.MustParseAddr(v.Src), netip.MustParseAddr(v.Dst)
}

// payload splits the published ESP plaintext into the payload and the
// next header (RFC 4303 2.4-2.6).
func (v katVector) payload(t testing.TB) (data []byte, next uint8) {
	t.Helper()
	pt := katHex(t, v.Plaintext)
	n := len(pt) - 2 - int(pt[len(pt)-2])
	if n < 0 {
		t.Fatalf("%s: pad length exceeds the plaintext", v.Name)
	}
	return pt[:n], pt[len(pt)-1]
}

// katAuthKey is the HMAC-SHA1-96 key added to the RFC 3602 packets, which
// are published without an ICV while secnic refuses ESP encryption
// without integrity. (It is RFC 2202 test case 1's key.)
var katAuthKey = bytes.Repeat([]byte{0x0b}, 20)

// katSuite builds the suite for v (HMAC-SHA1-96 added where v has no ICV).
func katSuite(t testing.TB, v katVector) *suite.Suite {
	t.Helper()
	p := suite.Params{Enc: v.Enc, Auth: suite.AuthNone, EncKey: katHex(t, v.Key)}
	if !v.ICV {
		p.Auth, p.AuthKey = suite.AuthSHA1, katAuthKey
	}
	su, err := suite.New(p)
	if err != nil {
		t.Fatalf("%s: suite.New: %v", v.Name, err)
	}
	return su
}

// katSA builds an SA for v, or reports false for a vector whose SPI an SA
// cannot have (draft-mcgrew-gcm-test-01's all-zero case uses SPI 0, which
// RFC 4303 2.1 reserves); that refusal is itself checked.
func katSA(t *testing.T, v katVector, dir sa.Direction) (*sa.SA, bool) {
	t.Helper()
	// The packets go from src to dst; both SAs name those endpoints.
	src, dst := v.addrs(t)
	p := sa.Params{SPI: v.spi(t), Proto: sa.ESP, Dir: dir, Mode: v.mode(), Src: src, Dst: dst, ESN: v.ESN, ReplayWindow: 64}
	s, err := sa.New(p, katSuite(t, v))
	if p.SPI == 0 {
		if err == nil {
			t.Fatalf("%s: sa.New accepted SPI 0 (reserved, RFC 4303 2.1)", v.Name)
		}
		return nil, false
	}
	if err != nil {
		t.Fatalf("%s: sa.New: %v", v.Name, err)
	}
	return s, true
}

// katESP returns the published ESP region, with the HMAC-SHA1-96 ICV
// appended where the publication has none. The ICV is computed by an AH
// suite's HMAC (checked against RFC 2202 in the suite package), over the
// ESP header, IV and ciphertext (RFC 4303 3.3.4).
func katESP(t *testing.T, v katVector) []byte {
	t.Helper()
	esp := katHex(t, v.Packet)
	if v.ICV {
		return esp
	}
	ah, err := suite.New(suite.Params{Auth: suite.AuthSHA1, AuthKey: katAuthKey})
	if err != nil {
		t.Fatalf("AH suite: %v", err)
	}
	m, err := ah.AcquireMAC()
	if err != nil {
		t.Fatalf("AcquireMAC: %v", err)
	}
	defer m.Release()
	m.Write(esp)
	return append(esp, m.Sum()...)
}

// katWire wraps the ESP region in an outer IPv4 header: the published one
// where there is one (its checksum is checked, then its length and
// checksum are updated for the added ICV), else one of ours.
func katWire(t *testing.T, v katVector, esp []byte) []byte {
	t.Helper()
	w := make([]byte, packet.IPv4MinLen, packet.IPv4MinLen+len(esp))
	if v.Outer != "" {
		outer := katHex(t, v.Outer)
		if !packet.IPv4(outer).ChecksumValid() {
			t.Fatalf("%s: the published outer header %x does not check (packet.Checksum disagrees with the RFC)", v.Name, outer)
		}
		copy(w, outer)
		w = append(w, esp...)
		packet.IPv4(w).SetTotalLen(len(w))
		packet.IPv4(w).UpdateChecksum()
		return w
	}
	src, dst := v.addrs(t)
	w = append(w, esp...)
	packet.WriteIPv4(w, packet.IPv4Fields{TotalLen: len(w), ID: 0x1234, TTL: 64, Protocol: packet.ProtoESP, Src: src, Dst: dst})
	return w
}

// TestKATDecap decapsulates each published ESP packet with an inbound SA
// and checks the result: in tunnel mode the inner datagram is the published
// payload; in transport mode the rebuilt datagram carries the published
// payload after an IP header naming the published next header, and for
// RFC 3602 case #5 it is the published original packet byte for byte
// (header checksum included). The same packet again is a replay. The ESP
// region is then re-sealed from the decrypted plaintext with the published
// sequence number and IV and must be the published packet again.
func TestKATDecap(t *testing.T) {
	for _, v := range loadKATVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Logf("source: %s", v.Source)
			in, ok := katSA(t, v, sa.In)
			if !ok {
				return
			}
			seq := v.seq(t)
			if v.ESN {
				// Position the window so that the published 64-bit
				// number is inferred from its low half (RFC 4303 A2).
				in.Replay.SetTop(seq - 1)
			}
			esp := katESP(t, v)
			wire := katWire(t, v, esp)
			p := bufOf(wire)
			if err := LocateAndDecap(in, p); err != sa.ReasonNone {
				t.Fatalf("Decap of the published packet: %v", err)
			}
			data, next := v.payload(t)
			out := p.Bytes()
			if v.mode() == sa.Tunnel {
				if !bytes.Equal(out, data) {
					t.Fatalf("inner datagram mismatch:\n got %x\nwant %x", out, data)
				}
			} else {
				h := packet.IPv4(out)
				switch {
				case len(out) != packet.IPv4MinLen+len(data):
					t.Fatalf("rebuilt datagram is %d bytes, want %d", len(out), packet.IPv4MinLen+len(data))
				case !bytes.Equal(out[packet.IPv4MinLen:], data):
					t.Fatalf("payload mismatch:\n got %x\nwant %x", out[packet.IPv4MinLen:], data)
				case h.Protocol() != next || h.TotalLen() != len(out) || !h.ChecksumValid():
					t.Fatalf("rebuilt header %x: protocol %d (want %d), length %d (want %d), checksum valid %v",
						out[:20], h.Protocol(), next, h.TotalLen(), len(out), h.ChecksumValid())
				}
				if v.Original != "" {
					if want := katHex(t, v.Original); !bytes.Equal(out, want) {
						t.Fatalf("rebuilt datagram differs from the published original:\n got %x\nwant %x", out, want)
					}
				}
			}
			if got := in.Stats.Packets.Load(); got != 1 {
				t.Errorf("SA counted %d packets, want 1", got)
			}
			if err := LocateAndDecap(in, bufOf(wire)); !errors.Is(err, sa.InStateSeqError) {
				t.Errorf("Decap of the same packet again = %v, want %v", err, sa.InStateSeqError)
			}

			// Re-seal the decrypted plaintext: the published packet again.
			su := in.Suite
			pt := katHex(t, v.Plaintext)
			pkt := make([]byte, 20, 20+len(esp)+64)
			pkt = append(pkt, esp[:8+su.IVLen()]...)
			pkt = append(pkt, pt...)
			pkt = append(pkt, make([]byte, su.ICVLen())...)
			cb := new(suite.Scratch)
			if err := su.SealESPWithIV(pkt, 20, seq, v.ESN, katHex(t, v.IV), cb); err != nil {
				t.Fatalf("SealESPWithIV: %v", err)
			}
			if !bytes.Equal(pkt[20:], esp) {
				t.Fatalf("re-sealed packet mismatch:\n got %x\nwant %x", pkt[20:], esp)
			}
		})
	}
}

// TestKATEncapLayout runs Encap on each vector's original datagram with the
// published SPI and sequence number, and checks that the result is the
// published packet except for the IV, which Encap chooses itself (the
// sequence number for counter modes, RFC 4106 3.1): the ESP header is the
// published one, the IV of a counter mode is the sequence number, the
// decrypted plaintext (payload, padding 1, 2, 3, ..., pad length, next
// header) is the published plaintext byte for byte, and sealing it again
// with the published IV gives the published packet. For RFC 3602 case #5
// the transport-mode IP header is the published one (with the ICV's 12
// bytes added to the length).
func TestKATEncapLayout(t *testing.T) {
	for _, v := range loadKATVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Logf("source: %s", v.Source)
			out, ok := katSA(t, v, sa.Out)
			if !ok {
				return
			}
			seq := v.seq(t)
			if err := out.SetSeq(seq - 1); err != nil {
				t.Fatalf("SetSeq: %v", err)
			}
			data, next := v.payload(t)
			var dgram []byte
			switch {
			case v.mode() == sa.Tunnel:
				dgram = data
			case v.Original != "":
				dgram = katHex(t, v.Original)
			default:
				src, dst := v.addrs(t)
				dgram = make([]byte, packet.IPv4MinLen, packet.IPv4MinLen+len(data))
				dgram = append(dgram, data...)
				packet.WriteIPv4(dgram, packet.IPv4Fields{TotalLen: len(dgram), ID: 77, TTL: 64, Protocol: next, Src: src, Dst: dst})
			}
			p := bufOf(dgram)
			if err := Encap(out, p); err != sa.ReasonNone {
				t.Fatalf("Encap: %v", err)
			}
			su := out.Suite
			want := katESP(t, v)
			wire := p.Data() // with tailroom for the suites' slack
			const espOff = packet.IPv4MinLen
			if len(wire) != espOff+len(want) {
				t.Fatalf("Encap produced %d bytes, want %d (IP header + published ESP packet)", len(wire), espOff+len(want))
			}
			if !bytes.Equal(wire[espOff:espOff+8], want[:8]) {
				t.Fatalf("ESP header = %x, want %x", wire[espOff:espOff+8], want[:8])
			}
			h := packet.IPv4(wire)
			if h.Protocol() != packet.ProtoESP || h.TotalLen() != len(wire) || !h.ChecksumValid() {
				t.Fatalf("outer header %x: protocol %d, length %d, checksum valid %v", wire[:20], h.Protocol(), h.TotalLen(), h.ChecksumValid())
			}
			if v.mode() == sa.Transport && v.Outer != "" {
				hdr := katHex(t, v.Outer)
				packet.IPv4(hdr).SetTotalLen(len(wire))
				packet.IPv4(hdr).UpdateChecksum()
				if !bytes.Equal(wire[:20], hdr) {
					t.Fatalf("transport header = %x, want the published %x (length adjusted for the ICV)", wire[:20], hdr)
				}
			}
			iv := wire[espOff+8 : espOff+8+su.IVLen()]
			if v.Enc != suite.EncAESCBC128 {
				if got := binary.BigEndian.Uint64(iv); got != seq {
					t.Errorf("counter-mode IV = %#x, want the sequence number %#x", got, seq)
				}
			}
			cb := new(suite.Scratch)
			if err := su.OpenESP(wire, espOff, seq, v.ESN, cb); err != nil {
				t.Fatalf("OpenESP of Encap's output: %v", err)
			}
			ptStart := espOff + 8 + su.IVLen()
			pt := katHex(t, v.Plaintext)
			if got := wire[ptStart : len(wire)-su.ICVLen()]; !bytes.Equal(got, pt) {
				t.Fatalf("Encap's ESP plaintext differs from the published one:\n got %x\nwant %x", got, pt)
			}
			if err := su.SealESPWithIV(wire, espOff, seq, v.ESN, katHex(t, v.IV), cb); err != nil {
				t.Fatalf("SealESPWithIV: %v", err)
			}
			if !bytes.Equal(wire[espOff:], want) {
				t.Fatalf("packet with the published IV mismatch:\n got %x\nwant %x", wire[espOff:], want)
			}
		})
	}
}

// TestEncapIVs checks the IVs Encap puts on the wire: for the counter-mode
// transforms the IV is the 64-bit sequence number (RFC 4106 3.1, RFC 3686
// 3.1, RFC 4543 3.1, RFC 7634 2), so it never repeats under one key, also
// across the 2^32 boundary with ESN; for CBC every packet has a different
// IV (RFC 3602 2.1: IVs must not repeat and must be unpredictable).
func TestEncapIVs(t *testing.T) {
	for _, a := range allAlgs() {
		if a.enc == suite.EncNull || (a.auth != suite.AuthNone && a.auth != suite.AuthSHA256) {
			continue // no IV, or the same cipher again with another HMAC
		}
		t.Run(a.name, func(t *testing.T) {
			out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, esn: true})
			start := uint64(1)<<32 - 3
			if err := out.SetSeq(start); err != nil {
				t.Fatal(err)
			}
			in.Replay.SetTop(start)
			info, _ := suite.LookupEnc(a.enc)
			seen := map[string]bool{}
			for i := uint64(1); i <= 64; i++ {
				p := bufOf(datagram(false, 40))
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatalf("Encap: %v", err)
				}
				w := p.Bytes()
				iv := w[packet.IPv4MinLen+HeaderLen : packet.IPv4MinLen+HeaderLen+info.IVLen]
				switch {
				case info.IVLen == 0:
				case info.Name == suite.EncDESCBC || info.Name == suite.Enc3DESCBC ||
					info.Name == suite.EncAESCBC128 || info.Name == suite.EncAESCBC192 || info.Name == suite.EncAESCBC256:
					if seen[string(iv)] {
						t.Fatalf("CBC IV %x repeated", iv)
					}
					seen[string(iv)] = true
				default:
					if got := binary.BigEndian.Uint64(iv); got != start+i {
						t.Fatalf("packet %d: IV %#x, want the sequence number %#x", i, got, start+i)
					}
				}
				if err := LocateAndDecap(in, p); err != sa.ReasonNone {
					t.Fatalf("Decap: %v", err)
				}
			}
		})
	}
}
