package esp

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// fuzzConfig is one inbound SA configuration FuzzDecap exercises.
type fuzzConfig struct {
	a alg
	o pairOpts
}

// fuzzConfigs covers the transform families (AEAD with full and truncated
// ICV, GMAC, ChaCha20-Poly1305, CBC, CTR and NULL with HMAC), both modes,
// both IP families, ESN and UDP encapsulation.
var fuzzConfigs = []fuzzConfig{
	{alg{name: "gcm128", enc: suite.EncAESGCM128, auth: suite.AuthNone}, pairOpts{mode: sa.Transport}},
	{alg{name: "gcm256-icv8", enc: suite.EncAESGCM256, auth: suite.AuthNone, icvLen: 8}, pairOpts{mode: sa.Tunnel, esn: true}},
	{alg{name: "gcm128-icv12", enc: suite.EncAESGCM128, auth: suite.AuthNone, icvLen: 12}, pairOpts{mode: sa.Transport, outer6: true, encap: true}},
	{alg{name: "chacha", enc: suite.EncChaCha, auth: suite.AuthNone}, pairOpts{mode: sa.Tunnel, outer6: true, encap: true}},
	{alg{name: "gmac128", enc: suite.EncGMAC128, auth: suite.AuthNone}, pairOpts{mode: sa.Tunnel, esn: true, encap: true}},
	{alg{name: "cbc128-sha256", enc: suite.EncAESCBC128, auth: suite.AuthSHA256}, pairOpts{mode: sa.Transport, outer6: true}},
	{alg{name: "ctr256-sha1", enc: suite.EncAESCTR256, auth: suite.AuthSHA1}, pairOpts{mode: sa.Tunnel, tfc: 200}},
	{alg{name: "null-sha512", enc: suite.EncNull, auth: suite.AuthSHA512}, pairOpts{mode: sa.Transport, esn: true, window: -1}},
}

// fixedKey returns n deterministic key bytes, so that seed packets made
// once still verify under the inbound SAs FuzzDecap builds per input.
func fixedKey(n int, tag byte) []byte {
	k := make([]byte, n)
	for i := range k {
		k[i] = tag + byte(i)*7
	}
	return k
}

// fuzzSA builds one SA of configuration c with fixed keys.
func fuzzSA(t testing.TB, c fuzzConfig, dir sa.Direction) *sa.SA {
	t.Helper()
	e, _ := suite.LookupEnc(c.a.enc)
	p := suite.Params{Enc: c.a.enc, Auth: c.a.auth, ICVLen: c.a.icvLen, EncKey: fixedKey(e.KeyLen, 0x10)}
	if c.a.auth != suite.AuthNone {
		ai, _ := suite.LookupAuth(c.a.auth)
		p.AuthKey = fixedKey(ai.KeyLen, 0x80)
	}
	su, err := suite.New(p)
	if err != nil {
		t.Fatalf("suite.New(%s): %v", c.a.name, err)
	}
	sp := sa.Params{SPI: 0x1234, Proto: sa.ESP, Dir: dir, Mode: c.o.mode, ESN: c.o.esn, ReplayWindow: 64, TFCPad: c.o.tfc}
	if c.o.window < 0 {
		sp.ReplayWindow = 0
	}
	sp.Src, sp.Dst = v4a, v4b
	if c.o.outer6 {
		sp.Src, sp.Dst = v6a, v6b
	}
	if c.o.encap {
		sp.Encap = &sa.UDPEncap{SrcPort: 4500, DstPort: 4500}
	}
	s, err := sa.New(sp, su)
	if err != nil {
		t.Fatalf("sa.New(%s): %v", c.a.name, err)
	}
	return s
}

// FuzzDecap feeds arbitrary bytes to Decap as a received datagram, under a
// fresh inbound SA of one of several configurations. Decap must never
// panic; it must fail with an sa.Reason that the SA counted, or return a
// well-formed IP datagram no longer than the input, inside the buffer. The
// seeds are valid packets of every configuration, truncations of them and
// packets with single bytes flipped.
func FuzzDecap(f *testing.F) {
	for i, c := range fuzzConfigs {
		out := fuzzSA(f, c, sa.Out)
		for _, n := range []int{0, 1, 40, 300} {
			var d []byte
			if c.o.mode == sa.Transport {
				d = transportDatagram(c.o.outer6, n)
			} else {
				d = datagram(n%2 == 1, n)
			}
			p := bufOf(d)
			if err := Encap(out, p); err != sa.ReasonNone {
				f.Fatalf("%s: Encap: %v", c.a.name, err)
			}
			w := append([]byte(nil), p.Bytes()...)
			f.Add(uint8(i), w)
			for _, cut := range []int{len(w) - 1, len(w) - 16, len(w) / 2, 48, 40, 28, 20, 8, 0} {
				if cut >= 0 && cut < len(w) {
					f.Add(uint8(i), w[:cut])
				}
			}
			for _, at := range []int{0, 9, len(w) - 1} {
				x := append([]byte(nil), w...)
				x[at] ^= 0x40
				f.Add(uint8(i), x)
			}
		}
	}

	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := fuzzConfigs[int(which)%len(fuzzConfigs)]
		in := fuzzSA(t, c, sa.In)
		p := bufOf(data)
		if r := LocateAndDecap(in, p); r != sa.ReasonNone {
			if r >= sa.NumReasons {
				t.Fatalf("Decap returned an unknown reason %d", r)
			}
			if got := in.Stats.Dropped(r); got != 1 {
				t.Fatalf("Decap returned %v but the SA counted %d such drops", r, got)
			}
			return
		}
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(p.B) {
			t.Fatalf("Decap left the buffer at Off=%d Len=%d of %d bytes", p.Off, p.Len, len(p.B))
		}
		got := p.Bytes()
		if len(got) > len(data) {
			t.Fatalf("Decap produced %d bytes from %d", len(got), len(data))
		}
		sp, err := packet.SplitIP(got)
		if err != nil || sp.Len != len(got) {
			t.Fatalf("Decap produced a malformed datagram (%v, IP length %d, %d bytes): %x", err, sp.Len, len(got), got)
		}
		if packet.Version(got) == 4 && !packet.IPv4(got).ChecksumValid() {
			t.Fatalf("Decap produced an IPv4 header with a bad checksum: %x", got[:packet.IPv4MinLen])
		}
		// The same bytes again are a replay (unless anti-replay is off).
		if c.o.window >= 0 {
			if err := LocateAndDecap(in, bufOf(data)); err != sa.InStateSeqError {
				t.Fatalf("a second Decap of an accepted packet = %v, want %v", err, sa.InStateSeqError)
			}
		}
	})
}
