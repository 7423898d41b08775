package ah

import (
	"fmt"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/sa"
)

// benchSizes are the datagram sizes: the IPv4 datagram handed to Encap has
// this total length (so SetBytes counts the same bytes for Encap and Decap).
var benchSizes = []int{64, 512, 1400, 9000}

func benchDatagram(size int) []byte {
	return udpDatagram(i4a, i4b, size-packet.IPv4MinLen-packet.UDPLen)
}

// BenchmarkAHEncap measures tunnel-mode AH (with ESN) in place. AH leaves
// the inner datagram as it is, so each round only rewinds the buffer
// (packettest.BenchOp).
func BenchmarkAHEncap(b *testing.B) {
	for _, a := range allAuths() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", a, size), func(b *testing.B) {
				out, _ := newPair(b, a, pairOpts{mode: sa.Tunnel, esn: true})
				packettest.BenchOp(b, size, benchDatagram(size), 0, func(p *packet.Buf) sa.Reason { return Encap(out, p) })
			})
		}
	}
}

// BenchmarkAHDecap measures tunnel-mode AH verification and removal. The
// replay window is disabled so that one packet can be verified repeatedly
// (the window is benchmarked in sa); Decap leaves the bytes as they are,
// so each round only rewinds the buffer.
func BenchmarkAHDecap(b *testing.B) {
	for _, a := range allAuths() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", a, size), func(b *testing.B) {
				out, in := newPair(b, a, pairOpts{mode: sa.Tunnel, esn: true, window: -1})
				p := bufOf(benchDatagram(size))
				if err := Encap(out, p); err != sa.ReasonNone {
					b.Fatal(err)
				}
				packettest.BenchOp(b, size, clone(p.Bytes()), 0, func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
			})
		}
	}
}

// TestNoAllocs: the per-packet path allocates nothing, in both modes and
// with IPv4 options and IPv6 extension headers that need the save log.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop entries, which allocates")
	}
	hbh := []byte{0, 1, 0x3e, 2, 0xaa, 0xbb, 0x1e, 2, 0xcc, 0xdd, 1, 4, 0, 0, 0, 0}
	opts := []byte{1, 0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0}
	for _, a := range allAuths() {
		for _, c := range []struct {
			name   string
			mode   sa.Mode
			outer6 bool
			d      []byte
		}{
			{"tunnel-4in4", sa.Tunnel, false, innerDatagram(false, 100)},
			{"transport-v4-options", sa.Transport, false, withIPv4Options(transportDatagram(false, 100), opts)},
			{"transport-v6-hbh", sa.Transport, true, withIPv6Ext(transportDatagram(true, 100), packet.ProtoHopByHop, hbh, 0)},
		} {
			out, in := newPair(t, a, pairOpts{mode: c.mode, outer6: c.outer6, esn: true, window: -1})
			p := bufOf(c.d)
			var prot []byte
			encap := func() {
				copy(p.B[packet.Headroom:], c.d)
				p.Off, p.Len = packet.Headroom, len(c.d)
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
			}
			encap()
			prot = clone(p.Bytes())
			if n := testing.AllocsPerRun(100, encap); n != 0 {
				t.Errorf("%s/%s: Encap allocates %.1f times per packet", a, c.name, n)
			}
			q := bufOf(prot)
			decap := func() {
				copy(q.B[packet.Headroom:], prot)
				q.Off, q.Len = packet.Headroom, len(prot)
				if err := LocateAndDecap(in, q); err != sa.ReasonNone {
					t.Fatal(err)
				}
			}
			if n := testing.AllocsPerRun(100, decap); n != 0 {
				t.Errorf("%s/%s: Decap allocates %.1f times per packet", a, c.name, n)
			}
		}
	}
}
