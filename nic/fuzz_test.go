package nic

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

// FuzzReceive feeds arbitrary bytes from the wire to a NIC's receive path
// (reassembly, IPsec header parsing, SPI lookup, decapsulation, policy
// check). It must never panic, and whatever it delivers must be a
// well-formed IP datagram.
func FuzzReceive(f *testing.F) {
	// B's replay window and reassembly table carry state from one input to
	// the next, which is the point.
	a, b := build(f, topo{alg: algGCM, encap: true, wireMTU: 1280})
	wire, _ := a.stepTX(f, udp(in4A, in4B, 1, 2, 2000, 1, false), udp(in4A, in4B, 1, 2, 100, 2, false))
	for _, w := range wire {
		f.Add(w)
	}
	f.Add(frag6(1, 0, pattern(64), true))
	f.Add(frag4(1, 8, pattern(64), false))
	f.Add(udpWith(out4B, out4A, 4500, 4500, []byte{0xff}, false))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1400 {
			return
		}
		for _, got := range b.stepRX(t, in) {
			if _, err := packet.SplitIP(got); err != nil {
				t.Fatalf("delivered a malformed datagram % x: %v", got, err)
			}
		}
	})
}
