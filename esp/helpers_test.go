package esp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// alg is one algorithm combination under test, named as in the config and
// in benchmark names.
type alg struct {
	name   string
	enc    suite.Enc
	auth   suite.Auth
	icvLen int
}

// allAlgs lists every encryption transform with the integrity transforms it
// combines with.
func allAlgs() []alg {
	var out []alg
	for _, e := range suite.Encs() {
		if e.Combined {
			out = append(out, alg{name: string(e.Name), enc: e.Name, auth: suite.AuthNone})
			if e.Name == suite.EncAESGCM128 || e.Name == suite.EncAESGCM192 || e.Name == suite.EncAESGCM256 {
				for _, icv := range []int{8, 12} {
					out = append(out, alg{name: fmt.Sprintf("%s-icv%d", e.Name, icv), enc: e.Name, auth: suite.AuthNone, icvLen: icv})
				}
			}
			continue
		}
		for _, a := range suite.Auths() {
			if a.Name == suite.AuthNone || a.Name == suite.AuthGMAC128 || a.Name == suite.AuthGMAC192 || a.Name == suite.AuthGMAC256 {
				continue
			}
			out = append(out, alg{name: string(e.Name) + "+" + string(a.Name), enc: e.Name, auth: a.Name})
		}
	}
	return out
}

func randKey(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	return k
}

func params(a alg) suite.Params {
	e, _ := suite.LookupEnc(a.enc)
	p := suite.Params{Enc: a.enc, Auth: a.auth, ICVLen: a.icvLen, EncKey: randKey(e.KeyLen), AllowLegacy: true}
	if a.auth != suite.AuthNone {
		ai, _ := suite.LookupAuth(a.auth)
		p.AuthKey = randKey(ai.KeyLen)
	}
	return p
}

type pairOpts struct {
	mode   sa.Mode
	outer6 bool
	esn    bool
	encap  bool
	window int
	tfc    int
}

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

// newPair returns an outbound SA and the matching inbound SA with the same keys.
func newPair(t testing.TB, a alg, o pairOpts) (out, in *sa.SA) {
	t.Helper()
	p := params(a)
	mk := func(dir sa.Direction) *sa.SA {
		su, err := suite.New(p)
		if err != nil {
			t.Fatalf("suite.New(%s): %v", a.name, err)
		}
		sp := sa.Params{SPI: 0x1234, Proto: sa.ESP, Dir: dir, Mode: o.mode, ESN: o.esn, ReplayWindow: o.window, TFCPad: o.tfc}
		if o.window == 0 {
			sp.ReplayWindow = 64
		}
		if o.window < 0 {
			sp.ReplayWindow = 0
		}
		if o.outer6 {
			sp.Src, sp.Dst = v6a, v6b
		} else {
			sp.Src, sp.Dst = v4a, v4b
		}
		if o.encap {
			sp.Encap = &sa.UDPEncap{SrcPort: 4500, DstPort: 4500}
		}
		s, err := sa.New(sp, su)
		if err != nil {
			t.Fatalf("sa.New: %v", err)
		}
		return s
	}
	return mk(sa.Out), mk(sa.In)
}

// udpDatagram builds an IPv4 or IPv6 UDP datagram with n payload bytes.
func udpDatagram(v6 bool, src, dst netip.Addr, n int) []byte {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	seg := make([]byte, packet.UDPLen+n)
	u := packet.UDP(seg)
	u.SetSrcPort(12345)
	u.SetDstPort(5201)
	u.SetLength(len(seg))
	copy(seg[8:], payload)
	u.SetChecksum(checksumOrFFFF(packet.TransportChecksum(src, dst, packet.ProtoUDP, seg)))
	if !v6 {
		b := make([]byte, packet.IPv4MinLen+len(seg))
		packet.WriteIPv4(b, packet.IPv4Fields{TOS: 0x28, TotalLen: len(b), ID: 77, DF: true, TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst})
		copy(b[20:], seg)
		return b
	}
	b := make([]byte, packet.IPv6Len+len(seg))
	packet.WriteIPv6(b, packet.IPv6Fields{TrafficClass: 0x28, PayloadLen: len(seg), NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst})
	copy(b[40:], seg)
	return b
}

func datagram(inner6 bool, n int) []byte {
	if inner6 {
		return udpDatagram(true, i6a, i6b, n)
	}
	return udpDatagram(false, i4a, i4b, n)
}

// transportDatagram builds a datagram between the SA endpoints, for transport mode.
func transportDatagram(outer6 bool, n int) []byte {
	if outer6 {
		return udpDatagram(true, v6a, v6b, n)
	}
	return udpDatagram(false, v4a, v4b, n)
}

func bufOf(b []byte) *packet.Buf {
	p := packet.NewBuf(len(b) + 1024)
	if err := p.SetBytes(b); err != nil {
		panic(err)
	}
	return p
}

func seqOf(t testing.TB, pkt []byte) uint32 {
	t.Helper()
	l, err := packet.Locate(pkt, 4500)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	return binary.BigEndian.Uint32(pkt[l.Off+4:])
}
