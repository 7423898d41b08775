package sadb

import (
	"github.com/secnic/secnic/internal/cow"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"

	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/secnic/secnic/internal/suite"
)

// benchPool is the number of distinct SA objects the large lookup
// benchmarks point their index entries at. LookupIn never dereferences the
// SA it returns, so sharing objects measures the index exactly while
// keeping a million entries at a few hundred MB instead of several GB of
// crypto state.
const benchPool = 1024

var (
	benchSnapMu sync.Mutex
	benchSnaps  = map[int]*Snapshot{}
)

func benchDst(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// lookupSnapshot builds (once per size) a snapshot with n inbound SAs,
// each with its own SPI and one of 1024 destinations.
func lookupSnapshot(b *testing.B, n int) *Snapshot {
	benchSnapMu.Lock()
	defer benchSnapMu.Unlock()
	if s := benchSnaps[n]; s != nil {
		return s
	}
	su, err := suite.New(suite.Params{Enc: suite.EncAESGCM128, EncKey: make([]byte, 20)})
	if err != nil {
		b.Fatal(err)
	}
	pool := make([]saRef, min(n, benchPool))
	for i := range pool {
		s, err := sa.New(sa.Params{SPI: uint32(0x1000 + i), Proto: sa.ESP, Dir: sa.In, Mode: sa.Transport}, su)
		if err != nil {
			b.Fatal(err)
		}
		pool[i] = saRef{s, &sa.Bundle{Handle: sa.Handle(i + 1), Dir: sa.In, Mode: sa.Transport, ESP: s}}
	}
	s := &Snapshot{}
	var w cow.Writer[inKey, saRef]
	w.Init(&s.inExact)
	for i := range n {
		k := newInKey(uint32(0x1000+i), sa.ESP, benchDst(i%1024))
		w.Set(k.hash(), k, pool[i%len(pool)])
	}
	benchSnaps[n] = s
	return s
}

// probe is one LookupIn of the benchmark.
type probe struct {
	spi   uint32
	proto sa.Protocol
	dst   netip.Addr
}

func BenchmarkLookupIn(b *testing.B) {
	for _, n := range []int{1, 1000, 100000, 1000000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			snap := lookupSnapshot(b, n)
			// Probe keys spread over the table, precomputed.
			const probes = 4096
			keys := make([]probe, probes)
			for i := range keys {
				j := (i * 7919) % n
				keys[i] = probe{spi: uint32(0x1000 + j), proto: sa.ESP, dst: benchDst(j % 1024)}
			}
			b.ReportAllocs()
			b.ResetTimer()
			c0, n := cpuTime(), 0
			for i := 0; b.Loop(); i++ {
				k := &keys[i&(probes-1)]
				if s, _ := snap.LookupIn(k.proto, k.spi, k.dst); s == nil {
					b.Fatal("miss")
				}
				n++
			}
			// CPU time per lookup: on a shared machine, ns/op also
			// counts the time the benchmark waited for a CPU.
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(n), "cpu-ns/op")
		})
	}
}

// policySnapshot builds (once per size) an outbound classifier with n
// host-to-host policies (one shape), plus a /24 policy shape and a default,
// as a gateway with many peers would have.
var (
	polSnapMu sync.Mutex
	polSnaps  = map[int]*Snapshot{}
)

func policySnapshot(b *testing.B, n int) *Snapshot {
	polSnapMu.Lock()
	defer polSnapMu.Unlock()
	if s := polSnaps[n]; s != nil {
		return s
	}
	tb, err := NewTable(TableConfig{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tb.AddPolicies([]saspec.PolicySpec{
		{Dir: "out", Priority: 1000, Action: "bypass"},
		{Dir: "out", Priority: 500, Dst: "172.16.0.0/24", Action: "discard"},
	}); err != nil {
		b.Fatal(err)
	}
	// The host policies share a pool of Resolved values (see benchPool).
	pool := make([]*Resolved, min(n, benchPool))
	for i := range pool {
		pool[i] = &Resolved{Policy: &Policy{ID: uint32(10 + i), Dir: sa.Out, Priority: 10, Action: saspec.Bypass}, Action: saspec.Bypass}
	}
	tb.mu.Lock()
	x := tb.begin()
	desc := shapeDesc{fam: 4, srcBits: 32, dstBits: 32}
	tb.nextShape++
	st := &shapeState{id: tb.nextShape, desc: desc, n: n, prios: map[int]int{10: n}}
	tb.shapes[1][desc] = st
	x.shapes[1] = true
	for i := range n {
		k := polKey{shape: st.id, src: benchSrc(i), dst: benchDst(i)}
		x.pol[1].Set(k.hash(), k, pool[i%len(pool)])
	}
	_ = x.commit()
	tb.mu.Unlock()
	s := tb.Snapshot()
	polSnaps[n] = s
	return s
}

func benchSrc(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{192, byte(i >> 16), byte(i >> 8), byte(i)})
}

func BenchmarkMatchOut(b *testing.B) {
	for _, n := range []int{1, 1000, 100000, 1000000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			snap := policySnapshot(b, n)
			const probes = 4096
			flows := make([]sa.Flow, probes)
			for i := range flows {
				j := (i * 7919) % n
				flows[i] = sa.Flow{Src: benchSrc(j), Dst: benchDst(j), Proto: 6, SrcPort: 1000, DstPort: 443}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if r := snap.MatchOut(flows[i&(probes-1)]); r == nil || r.Policy.Priority != 10 {
					b.Fatal("wrong match")
				}
			}
		})
	}
}

// BenchmarkTableAdd measures adding one bundle to a table that already
// holds many, without the control API (see control.BenchmarkAPIAddSA).
func BenchmarkTableAdd(b *testing.B) {
	tb, err := NewTable(TableConfig{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	key := testKey(20, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i > 4000 { // stay under the full profile's capacity
			b.StopTimer()
			tb.Close()
			tb, _ = NewTable(TableConfig{Logger: quietLogger()})
			i = 1
			b.StartTimer()
		}
		if _, err := tb.Add(saspec.BundleSpec{Dir: "in", Dst: "192.0.2.2", ESP: &saspec.SASpec{SPI: saspec.SPI(0x1000 + i), Enc: "aes-gcm-128", EncKey: key}}); err != nil {
			b.Fatal(err)
		}
	}
}
