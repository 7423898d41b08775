package testenv

import (
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// LoopbackPair opens two ends that point at each other on a random pair
// of loopback addresses, 127.x.y.1 and 127.x.y.2 (all of 127/8 is local
// on Linux), at port, with open(local, peer); it tries other addresses
// while those are taken, and closes both ends when t ends.
func LoopbackPair[P io.Closer](t testing.TB, port uint16, open func(local, peer netip.AddrPort) (P, error)) (a, b P) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		x, y := byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)
		la := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, x, y, 1}), port)
		lb := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, x, y, 2}), port)
		var err error
		if a, err = open(la, lb); err == nil {
			if b, err = open(lb, la); err == nil {
				t.Cleanup(func() { a.Close(); b.Close() })
				return a, b
			}
			a.Close()
		}
		if attempt > 10 {
			t.Fatalf("cannot open loopback ends: %v", err)
		}
	}
}
