package ah

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// allAuths lists every integrity transform AH can use, named as in the
// config and in benchmark names.
func allAuths() []suite.Auth {
	var out []suite.Auth
	for _, a := range suite.Auths() {
		if a.Name != suite.AuthNone {
			out = append(out, a.Name)
		}
	}
	return out
}

// bufOf, randKey: packettest.Buf, packettest.RandKey.
var bufOf, randKey = packettest.Buf, packettest.RandKey

func keyFor(t testing.TB, a suite.Auth) []byte {
	t.Helper()
	ai, err := suite.LookupAuth(a)
	if err != nil {
		t.Fatal(err)
	}
	return randKey(ai.KeyLen)
}

type pairOpts struct {
	mode   sa.Mode
	outer6 bool
	esn    bool
	window int // 0: 64; negative: anti-replay disabled
	key    []byte
	spi    uint32
}

// The SA endpoints (v4a, v6b, ...) and the inner hosts (i4a, ...) of the
// tests are packettest's.
var (
	v4a, v4b, v6a, v6b = packettest.EndA4, packettest.EndB4, packettest.EndA6, packettest.EndB6
	i4a, i4b, i6a, i6b = packettest.HostA4, packettest.HostB4, packettest.HostA6, packettest.HostB6
)

// newSA returns one AH SA with the given key.
func newSA(t testing.TB, a suite.Auth, dir sa.Direction, o pairOpts) *sa.SA {
	t.Helper()
	su, err := suite.New(suite.Params{Auth: a, AuthKey: o.key, AllowLegacy: true})
	if err != nil {
		t.Fatalf("suite.New(%s): %v", a, err)
	}
	sp := sa.Params{SPI: o.spi, Proto: sa.AH, Dir: dir, Mode: o.mode, ESN: o.esn, ReplayWindow: o.window}
	if sp.SPI == 0 {
		sp.SPI = 0x1234
	}
	switch {
	case o.window == 0:
		sp.ReplayWindow = 64
	case o.window < 0:
		sp.ReplayWindow = 0
	}
	if o.outer6 {
		sp.Src, sp.Dst = v6a, v6b
	} else {
		sp.Src, sp.Dst = v4a, v4b
	}
	s, err := sa.New(sp, su)
	if err != nil {
		t.Fatalf("sa.New: %v", err)
	}
	return s
}

// newPair returns an outbound SA and the matching inbound SA with the same key.
func newPair(t testing.TB, a suite.Auth, o pairOpts) (out, in *sa.SA) {
	t.Helper()
	if o.key == nil {
		o.key = keyFor(t, a)
	}
	return newSA(t, a, sa.Out, o), newSA(t, a, sa.In, o)
}

// udpDatagram builds an IPv4 or IPv6 UDP datagram with n payload bytes
// (packettest.Datagram), over IPv6 with a flow label, which AH must leave
// out of the ICV.
func udpDatagram(src, dst netip.Addr, n int) []byte {
	return packettest.Fields{Src: src, Dst: dst, SrcPort: 12345, DstPort: 5201, Payload: packettest.Pattern(n, 7, 3), TOS: 0x28, ID: 77, DF: true, FlowLabel: 0x12345}.Build()
}

// innerDatagram builds a tunnel-mode inner datagram.
func innerDatagram(inner6 bool, n int) []byte {
	if inner6 {
		return udpDatagram(i6a, i6b, n)
	}
	return udpDatagram(i4a, i4b, n)
}

// transportDatagram builds a datagram between the SA endpoints.
func transportDatagram(outer6 bool, n int) []byte {
	if outer6 {
		return udpDatagram(v6a, v6b, n)
	}
	return udpDatagram(v4a, v4b, n)
}

// withIPv4Options rebuilds an option-less IPv4 datagram with opts (a
// multiple of 4 bytes) after the fixed header.
func withIPv4Options(d, opts []byte) []byte {
	b := make([]byte, 0, len(d)+len(opts))
	b = append(b, d[:20]...)
	b = append(b, opts...)
	b = append(b, d[20:]...)
	b[0] = 0x40 | byte((20+len(opts))/4)
	h := packet.IPv4(b)
	h.SetTotalLen(len(b))
	h.UpdateChecksum()
	return b
}

// withIPv6Ext inserts extension headers (ext, already chained: the first
// header's type is first, the last one's next header is patched to the
// datagram's upper protocol) after the fixed IPv6 header.
func withIPv6Ext(d []byte, first uint8, ext []byte, lastNextOff int) []byte {
	b := make([]byte, 0, len(d)+len(ext))
	b = append(b, d[:40]...)
	b = append(b, ext...)
	b = append(b, d[40:]...)
	b[40+lastNextOff] = d[6]
	b[6] = first
	packet.IPv6(b).SetPayloadLen(len(b) - 40)
	return b
}

var clone = bytes.Clone

// ahOffset finds the AH header of a protected datagram.
func ahOffset(t testing.TB, pkt []byte) int {
	t.Helper()
	off, _, r := walk(pkt, nil, false)
	if r != walkOK {
		t.Fatalf("no AH header found (%d) in %x", r, pkt)
	}
	return off
}

// fixIPv4Checksum recomputes the header checksum after a test edits a header.
func fixIPv4Checksum(pkt []byte) {
	if packet.Version(pkt) == 4 {
		packet.IPv4(pkt).UpdateChecksum()
	}
}
