package bundle

import (
	"crypto/rand"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("192.0.2.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
	i4a = netip.MustParseAddr("10.1.0.1")
	i4b = netip.MustParseAddr("10.2.0.1")
	i6a = netip.MustParseAddr("fd00:1::1")
	i6b = netip.MustParseAddr("fd00:2::1")
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

func randKey(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	return k
}

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

func checksumOrFFFF(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// udpDatagram builds an IPv4 or IPv6 UDP datagram with n payload bytes.
func udpDatagram(src, dst netip.Addr, n int) []byte {
	seg := make([]byte, packet.UDPLen+n)
	for i := range n {
		seg[packet.UDPLen+i] = byte(i*5 + 1)
	}
	u := packet.UDP(seg)
	u.SetSrcPort(4242)
	u.SetDstPort(5201)
	u.SetLength(len(seg))
	u.SetChecksum(checksumOrFFFF(packet.TransportChecksum(src, dst, packet.ProtoUDP, seg)))
	if src.Is4() {
		b := make([]byte, packet.IPv4MinLen+len(seg))
		packet.WriteIPv4(b, packet.IPv4Fields{TOS: 0x28, TotalLen: len(b), ID: 99, DF: true, TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst})
		copy(b[20:], seg)
		return b
	}
	b := make([]byte, packet.IPv6Len+len(seg))
	packet.WriteIPv6(b, packet.IPv6Fields{TrafficClass: 0x28, PayloadLen: len(seg), NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst})
	copy(b[40:], seg)
	return b
}

func bufOf(b []byte) *packet.Buf {
	p := packet.NewBuf(len(b) + 1024)
	if err := p.SetBytes(b); err != nil {
		panic(err)
	}
	return p
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
