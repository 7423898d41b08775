package esp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
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

// bufOf, randKey: packettest.Buf, packettest.RandKey.
var bufOf, randKey = packettest.Buf, packettest.RandKey

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

// The SA endpoints (v4a, v6b, ...) and the inner hosts (i4a, ...) of the
// tests are packettest's.
var (
	v4a, v4b, v6a, v6b = packettest.EndA4, packettest.EndB4, packettest.EndA6, packettest.EndB6
	i4a, i4b, i6a, i6b = packettest.HostA4, packettest.HostB4, packettest.HostA6, packettest.HostB6
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

// udpDatagram builds an IPv4 or IPv6 UDP datagram with n payload bytes
// (packettest.Datagram; v6 says which src and dst are).
func udpDatagram(v6 bool, src, dst netip.Addr, n int) []byte {
	return packettest.Datagram(src, dst, n)
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

func seqOf(t testing.TB, pkt []byte) uint32 {
	t.Helper()
	l, err := packet.Locate(pkt, 4500)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	return binary.BigEndian.Uint32(pkt[l.Off+4:])
}
