package packet

import (
	"bytes"
	"testing"
)

// TestIPv6ExtIter walks chains header by header and checks where the
// iterator stands and what it refuses.
func TestIPv6ExtIter(t *testing.T) {
	chain := ipv6([]ext{{ProtoHopByHop, 8}, {ProtoRouting, 24}, {ProtoFragment, 8}, {ProtoDstOpts, 16}}, ProtoESP, make([]byte, 16))
	it := NewIPv6ExtIter(chain)
	type stop struct {
		proto        uint8
		off, nextOff int
	}
	want := []stop{{ProtoHopByHop, 40, 6}, {ProtoRouting, 48, 40}, {ProtoFragment, 72, 48}, {ProtoDstOpts, 80, 72}, {ProtoESP, 96, 80}}
	for i, w := range want {
		if got := (stop{it.Proto(), it.Off(), it.NextOff()}); got != w {
			t.Fatalf("step %d: at %+v, want %+v", i, got, w)
		}
		if i == len(want)-1 {
			break
		}
		h, ok := it.Header()
		if !ok || !bytes.Equal(h, chain[w.off:want[i+1].off]) || cap(h) != len(h) {
			t.Fatalf("step %d: Header() = %x, %v", i, h, ok)
		}
		if !it.Next() {
			t.Fatalf("step %d: Next failed", i)
		}
	}
	if _, ok := it.Header(); ok {
		t.Fatal("Header() of ESP succeeded")
	}
	if it.Next() || it.Proto() != ProtoESP || it.Off() != 96 {
		t.Fatal("Next stepped over ESP")
	}

	// A header whose length runs past the datagram is refused and the
	// iterator stays in front of it.
	short := ipv6([]ext{{ProtoHopByHop, 8}, {ProtoDstOpts, 8}}, ProtoUDP, nil)
	short[IPv6Len+8+1] = 1 // 16 bytes, 8 present
	it = NewIPv6ExtIter(short)
	if !it.Next() || it.Next() || it.Off() != 48 || it.Proto() != ProtoDstOpts {
		t.Fatalf("truncated header: at %d (%d)", it.Off(), it.Proto())
	}
	// A header cut in its first 8 bytes.
	it = NewIPv6ExtIter(short[:IPv6Len+4])
	if _, ok := it.Header(); ok || it.Next() {
		t.Fatal("Header() of a 4-byte extension header succeeded")
	}
}

// TestIPv6ExtIterBound checks that a chain of minimum-size headers longer
// than MaxIPv6ExtHeaders stops the iterator, and that SplitIP and Locate
// call it malformed.
func TestIPv6ExtIterBound(t *testing.T) {
	for _, n := range []int{MaxIPv6ExtHeaders, MaxIPv6ExtHeaders + 1, 8000} {
		exts := make([]ext, n)
		for i := range exts {
			exts[i] = ext{ProtoHopByHop, 8}
		}
		b := ipv6(exts, ProtoESP, make([]byte, 16))
		it := NewIPv6ExtIter(b)
		steps := 0
		for IsIPv6Ext(it.Proto()) && it.Next() {
			steps++
		}
		if steps != min(n, MaxIPv6ExtHeaders) {
			t.Fatalf("%d headers: %d steps", n, steps)
		}
		_, serr := SplitIP(b)
		_, lerr := Locate(b, 0)
		if n <= MaxIPv6ExtHeaders {
			if serr != nil || lerr != nil {
				t.Fatalf("%d headers: SplitIP %v, Locate %v", n, serr, lerr)
			}
		} else if serr != ErrMalformed || lerr != ErrMalformed {
			t.Fatalf("%d headers: SplitIP %v, Locate %v, want ErrMalformed", n, serr, lerr)
		}
	}
}

func TestIPv6ExtIterAllocs(t *testing.T) {
	b := ipv6([]ext{{ProtoHopByHop, 8}, {ProtoRouting, 24}, {ProtoDstOpts, 16}}, ProtoESP, make([]byte, 16))
	n := testing.AllocsPerRun(100, func() {
		it := NewIPv6ExtIter(b)
		for IsIPv6Ext(it.Proto()) && it.Next() {
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per walk", n)
	}
}

// FuzzIPv6ExtIter walks arbitrary datagrams: the iterator must not panic,
// must only move forward inside the datagram, must hand out headers that lie
// inside it, and must stop after at most MaxIPv6ExtHeaders steps.
func FuzzIPv6ExtIter(f *testing.F) {
	f.Add(ipv6([]ext{{ProtoHopByHop, 8}, {ProtoRouting, 24}, {ProtoFragment, 8}, {ProtoDstOpts, 16}}, ProtoESP, make([]byte, 16)))
	f.Add(ipv6([]ext{{ProtoDstOpts, 8}, {ProtoDstOpts, 8}, {ProtoDstOpts, 8}}, ProtoDstOpts, make([]byte, 8)))
	f.Add(ipv6(nil, ProtoUDP, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !ValidIPv6(b) {
			return
		}
		b = b[:IPv6Len+IPv6(b).PayloadLen()]
		it := NewIPv6ExtIter(b)
		for steps := 0; ; steps++ {
			if steps > MaxIPv6ExtHeaders {
				t.Fatalf("%d steps", steps)
			}
			if it.Off() > len(b) || it.NextOff() >= it.Off() || b[it.NextOff()] != it.Proto() {
				t.Fatalf("step %d: off %d nextOff %d proto %d in %d bytes", steps, it.Off(), it.NextOff(), it.Proto(), len(b))
			}
			h, ok := it.Header()
			if ok && (len(h) < 8 || it.Off()+len(h) > len(b)) {
				t.Fatalf("step %d: header of %d bytes at %d in %d", steps, len(h), it.Off(), len(b))
			}
			off := it.Off()
			if !it.Next() {
				if it.Off() != off {
					t.Fatal("a failed Next moved")
				}
				return
			}
			if !ok || it.Off() != off+len(h) {
				t.Fatalf("step %d: Next without a header, or not past it", steps)
			}
		}
	})
}
