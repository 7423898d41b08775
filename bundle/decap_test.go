package bundle

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// lookup is a Lookup over a few inbound bundles, as the SA table's snapshot
// would answer for them.
type lookup []*sa.Bundle

func (l lookup) LookupIn(proto sa.Protocol, spi uint32, dst netip.Addr) (*sa.SA, *sa.Bundle) {
	for _, b := range l {
		for _, s := range []*sa.SA{b.ESP, b.AH} {
			if s != nil && s.Proto == proto && s.SPI == spi && s.Dst == dst {
				return s, b
			}
		}
	}
	return nil, nil
}

// protected returns, for chain i of fuzzChains, a datagram and what
// ApplyChainOut made of it.
func protected(t testing.TB, outs [][]*sa.Bundle, i, n int) (orig, prot []byte) {
	t.Helper()
	orig = udpDatagram(i4a, i4b, n)
	if len(outs[i]) == 1 && outs[i][0].Mode == sa.Transport {
		orig = udpDatagram(v4a, v4b, n)
	}
	p := bufOf(orig)
	if r := ApplyChainOut(outs[i], p); r != sa.ReasonNone {
		t.Fatal(r)
	}
	return orig, clone(p.Bytes())
}

// TestDecapChains: Decap removes every layer of each chain of the fuzz
// corpus, lists the bundles outermost first, and leaves in loc the
// packet.Locate of the datagram it returns (what Admit reads the flow from).
func TestDecapChains(t *testing.T) {
	outs, ins := fuzzChains(t)
	for i := range outs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			orig, prot := protected(t, outs, i, 100)
			p := bufOf(prot)
			loc, err := packet.Locate(p.Bytes(), 0)
			if err != nil {
				t.Fatal(err)
			}
			used, r := Decap(lookup(ins[i]), p, &loc, 0)
			if r != sa.ReasonNone {
				t.Fatalf("Decap: %v", r)
			}
			if !bytes.Equal(p.Bytes(), orig) {
				t.Fatalf("Decap returned\n %x\nwant %x", p.Bytes(), orig)
			}
			got := used.Bundles()
			if len(got) != len(ins[i]) {
				t.Fatalf("used %d bundles, want %d", len(got), len(ins[i]))
			}
			for j, b := range got {
				if want := ins[i][len(ins[i])-1-j]; b != want {
					t.Errorf("bundle %d used is %p, want %p (outermost first)", j, b, want)
				}
			}
			want, err := packet.Locate(p.Bytes(), 0)
			if err != nil || loc != want {
				t.Fatalf("loc after Decap = %+v, want Locate's %+v (%v)", loc, want, err)
			}
		})
	}
}

// TestDecapLeavesNoLocOfAFragment: when what is left is an inner fragment,
// which Locate refuses, Decap leaves the zero Loc, so that Admit parses
// the datagram itself.
func TestDecapLeavesNoLocOfAFragment(t *testing.T) {
	outs, ins := fuzzChains(t)
	const tunnel = 1 // AH+ESP tunnel over IPv6
	frag := udpDatagram(i4a, i4b, 64)
	packet.IPv4(frag).SetFlagsFrag(0x2000) // more fragments
	packet.IPv4(frag).UpdateChecksum()
	p := bufOf(frag)
	if r := ApplyChainOut(outs[tunnel], p); r != sa.ReasonNone {
		t.Fatal(r)
	}
	loc, err := packet.Locate(p.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, r := Decap(lookup(ins[tunnel]), p, &loc, 0); r != sa.ReasonNone {
		t.Fatalf("Decap: %v", r)
	}
	if !bytes.Equal(p.Bytes(), frag) || loc != (packet.Loc{}) {
		t.Fatalf("Decap of a fragment: %x, loc %+v", p.Bytes(), loc)
	}
}

// TestDecapNoAllocs: the inbound engine allocates nothing per packet.
func TestDecapNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop entries, which allocates")
	}
	outs, ins := fuzzChains(t)
	for i := range outs {
		_, prot := protected(t, outs, i, 200)
		q := bufOf(prot)
		var snap Lookup = lookup(ins[i]) // boxed once, not per packet
		in := func() {
			copy(q.B[packet.Headroom:], prot)
			q.Off, q.Len = packet.Headroom, len(prot)
			loc, _ := packet.Locate(q.Bytes(), 0)
			if _, r := Decap(snap, q, &loc, 0); r != sa.ReasonNone {
				t.Fatal(r)
			}
		}
		if n := testing.AllocsPerRun(100, in); n != 0 {
			t.Errorf("chain %d: Decap allocates %.1f times per packet", i, n)
		}
	}
}

// BenchmarkBundleDecap measures the inbound engine (locate, every layer,
// locate what is left) on the chains of the fuzz corpus, 1400-byte
// datagrams.
func BenchmarkBundleDecap(b *testing.B) {
	names := []string{"ah+esp-transport", "ah+esp-tunnel-v6", "esp-in-esp", "ah-in-esp"}
	outs, ins := fuzzChains(b)
	for i := range outs {
		b.Run(names[i]+"/1400", func(b *testing.B) {
			_, prot := protected(b, outs, i, 1400-28)
			q := bufOf(prot)
			var snap Lookup = lookup(ins[i]) // boxed once, not per packet
			b.SetBytes(int64(len(prot)))
			b.ReportAllocs()
			for b.Loop() {
				copy(q.B[packet.Headroom:], prot)
				q.Off, q.Len = packet.Headroom, len(prot)
				loc, _ := packet.Locate(q.Bytes(), 0)
				if _, r := Decap(snap, q, &loc, 0); r != sa.ReasonNone {
					b.Fatal(r)
				}
			}
		})
	}
}
