package bundle

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// The SA endpoints (v4a, v6b, ...) and the inner hosts (i4a, ...) of the
// tests are packettest's.
var (
	v4a, v4b, v6a, v6b = packettest.EndA4, packettest.EndB4, packettest.EndA6, packettest.EndB6
	i4a, i4b, i6a, i6b = packettest.HostA4, packettest.HostB4, packettest.HostA6, packettest.HostB6
)

func endpoints(v6 bool) (src, dst netip.Addr) {
	if v6 {
		return v6a, v6b
	}
	return v4a, v4b
}

func hosts(v6 bool) (src, dst netip.Addr) {
	if v6 {
		return i6a, i6b
	}
	return i4a, i4b
}

// saDesc describes one SA of a test bundle; the same description gives the
// outbound SA and its inbound twin (same keys).
type saDesc struct {
	proto    sa.Protocol
	enc      suite.Enc // ESP
	auth     suite.Auth
	mode     sa.Mode
	src, dst netip.Addr
	spi      uint32
	esn      bool
	window   int // 0: 64; negative: disabled
	encKey   []byte
	authKey  []byte
}

// bufOf, randKey, udpDatagram: packettest's Buf, RandKey and Datagram.
var bufOf, randKey, udpDatagram = packettest.Buf, packettest.RandKey, packettest.Datagram

// keys fills in random keys of the right lengths.
func (d *saDesc) keys() {
	if d.proto == sa.ESP {
		e, _ := suite.LookupEnc(d.enc)
		if d.encKey == nil {
			d.encKey = randKey(e.KeyLen)
		}
	}
	if d.auth != "" && d.auth != suite.AuthNone && d.authKey == nil {
		a, _ := suite.LookupAuth(d.auth)
		d.authKey = randKey(a.KeyLen)
	}
}

func (d saDesc) make(t testing.TB, dir sa.Direction) *sa.SA {
	t.Helper()
	sp := suite.Params{Auth: d.auth, AuthKey: d.authKey, AllowLegacy: true}
	if d.proto == sa.ESP {
		sp.Enc, sp.EncKey = d.enc, d.encKey
		if sp.Auth == "" {
			sp.Auth = suite.AuthNone
		}
	}
	su, err := suite.New(sp)
	if err != nil {
		t.Fatalf("suite.New: %v", err)
	}
	w := d.window
	switch {
	case w == 0:
		w = 64
	case w < 0:
		w = 0
	}
	s, err := sa.New(sa.Params{SPI: d.spi, Proto: d.proto, Dir: dir, Mode: d.mode, Src: d.src, Dst: d.dst, ESN: d.esn, ReplayWindow: w}, su)
	if err != nil {
		t.Fatalf("sa.New: %v", err)
	}
	return s
}

// bundlePair builds an outbound bundle and its inbound twin from up to two
// SA descriptions (nil for an absent SA).
func bundlePair(t testing.TB, mode sa.Mode, espD, ahD *saDesc) (out, in *sa.Bundle) {
	t.Helper()
	out = &sa.Bundle{Dir: sa.Out, Mode: mode}
	in = &sa.Bundle{Dir: sa.In, Mode: mode}
	if espD != nil {
		espD.keys()
		out.ESP, in.ESP = espD.make(t, sa.Out), espD.make(t, sa.In)
	}
	if ahD != nil {
		ahD.keys()
		out.AH, in.AH = ahD.make(t, sa.Out), ahD.make(t, sa.In)
	}
	for _, b := range []*sa.Bundle{out, in} {
		if err := Check(b); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	return out, in
}

var clone = bytes.Clone
