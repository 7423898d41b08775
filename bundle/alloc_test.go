package bundle

import (
	"fmt"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// TestNoAllocs: applying bundles and chains allocates nothing per packet.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop entries, which allocates")
	}
	outs, ins := fuzzChains(t)
	for i := range outs {
		d := udpDatagram(i4a, i4b, 200)
		if len(outs[i]) == 1 && outs[i][0].Mode == sa.Transport {
			d = udpDatagram(v4a, v4b, 200)
		}
		p := bufOf(d)
		out := func() {
			copy(p.B[packet.Headroom:], d)
			p.Off, p.Len = packet.Headroom, len(d)
			if err := ApplyChainOut(outs[i], p); err != sa.ReasonNone {
				t.Fatal(err)
			}
		}
		out()
		prot := clone(p.Bytes())
		q := bufOf(prot)
		in := func() {
			copy(q.B[packet.Headroom:], prot)
			q.Off, q.Len = packet.Headroom, len(prot)
			if _, err := ApplyChainIn(ins[i], q); err != sa.ReasonNone {
				t.Fatal(err)
			}
		}
		if n := testing.AllocsPerRun(100, out); n != 0 {
			t.Errorf("chain %d: ApplyChainOut allocates %.1f times per packet", i, n)
		}
		if n := testing.AllocsPerRun(100, in); n != 0 {
			t.Errorf("chain %d: ApplyChainIn allocates %.1f times per packet", i, n)
		}
	}
}

// BenchmarkBundle measures the bundles of the fuzz corpus end to end
// (out, then in) on 1400-byte datagrams.
func BenchmarkBundle(b *testing.B) {
	names := []string{"ah+esp-transport", "ah+esp-tunnel-v6", "esp-in-esp", "ah-in-esp"}
	outs, ins := fuzzChains(b)
	for i := range outs {
		b.Run(fmt.Sprintf("%s/1400", names[i]), func(b *testing.B) {
			d := udpDatagram(i4a, i4b, 1400-28)
			if len(outs[i]) == 1 && outs[i][0].Mode == sa.Transport {
				d = udpDatagram(v4a, v4b, 1400-28)
			}
			p := bufOf(d)
			b.SetBytes(int64(len(d)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				copy(p.B[packet.Headroom:], d)
				p.Off, p.Len = packet.Headroom, len(d)
				if err := ApplyChainOut(outs[i], p); err != sa.ReasonNone {
					b.Fatal(err)
				}
				if _, err := ApplyChainIn(ins[i], p); err != sa.ReasonNone {
					b.Fatal(err)
				}
			}
		})
	}
}
