package nic

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// recorder forwards packets from one tap to another like forward, and
// records the (SPI, sequence number) of every ESP packet in wire order.
type recorder struct {
	mu   sync.Mutex
	seqs map[uint32][]uint32
}

func (r *recorder) forward(t testing.TB, from *tun.MemPort, to tun.Port) {
	forwardSeeing(from, to, func(pkts [][]byte) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range pkts {
			spi, seq := espSPI(t, p)
			r.seqs[spi] = append(r.seqs[spi], seq)
		}
	})
}

// check fails unless every SA's sequence numbers on the wire are 1..n,
// each once; with inOrder, also in that order.
func (r *recorder) check(t testing.TB, inOrder bool) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for spi, seqs := range r.seqs {
		seen := make(map[uint32]bool, len(seqs))
		for i, s := range seqs {
			if seen[s] {
				t.Fatalf("SPI %#x: sequence number %d sent twice", spi, s)
			}
			seen[s] = true
			if inOrder && s != uint32(i+1) {
				t.Fatalf("SPI %#x: packet %d on the wire has sequence number %d: the SA's packets left out of order", spi, i, s)
			}
		}
		for s := uint32(1); s <= uint32(len(seqs)); s++ {
			if !seen[s] {
				t.Fatalf("SPI %#x: %d packets but sequence number %d missing", spi, len(seqs), s)
			}
		}
	}
}

// flows makes nFlows UDP flows of per packets each from src to dst (the
// flow is the source port, the packet's number within its flow its
// payload's first word), interleaved as one stream.
func flows(src, dst netip.Addr, nFlows, per int) [][]byte {
	var out [][]byte
	for i := range per {
		for f := range nFlows {
			out = append(out, udp(src, dst, uint16(10000+f), 2000, 40+(i*37+f)%1200, uint32(i), false))
		}
	}
	return out
}

// checkFlows fails unless got holds every packet of want exactly once and
// each flow's packets in the order sent.
func checkFlows(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	byFlow := func(pkts [][]byte) map[uint16][][]byte {
		m := map[uint16][][]byte{}
		for _, p := range pkts {
			hl := 20
			if p[0]>>4 == 6 {
				hl = 40
			}
			sp := binary.BigEndian.Uint16(p[hl:])
			m[sp] = append(m[sp], p)
		}
		return m
	}
	g, w := byFlow(got), byFlow(want)
	for f, wp := range w {
		gp := g[f]
		if len(gp) != len(wp) {
			t.Fatalf("flow %d: got %d packets, want %d", f, len(gp), len(wp))
		}
		for i := range wp {
			if !bytes.Equal(gp[i], wp[i]) {
				t.Fatalf("flow %d: packet %d differs (order lost or packet changed)", f, i)
			}
		}
	}
}

// TestWorkersFlows runs two NICs with several workers each (the memory
// ports have one queue, so dispatchers spread the packets) and many flows
// both ways at once: every packet arrives once, every flow in order, every
// sequence number of the SA the workers share is used once, and nothing is
// dropped (the receive side keeps each SA on one worker, so replay
// protection sees the SA's packets in wire order).
func TestWorkersFlows(t *testing.T) {
	for _, w := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("workers=%d", w), func(t *testing.T) {
			tp := topo{alg: algGCM, cfg: Config{Workers: w}}
			a, b := build(t, tp)
			if got := len(a.nic.txw); got != w {
				t.Fatalf("%d transmit workers, want %d", got, w)
			}
			if w > 1 && len(a.nic.dispatchers) != 2 {
				t.Fatalf("%d dispatchers, want 2 (one host, one wire)", len(a.nic.dispatchers))
			}
			rec := &recorder{seqs: map[uint32][]uint32{}}
			go rec.forward(t, a.tap, b.tap)
			go rec.forward(t, b.tap, a.tap)
			a.run(t)
			b.run(t)
			ha, hb := tp.hosts()
			ab, ba := flows(ha, hb, 24, 80), flows(hb, ha, 24, 80)
			go func() {
				for i := 0; i < len(ab); i += 64 {
					write(t, a.app, ab[i:min(i+64, len(ab))]...)
				}
			}()
			go func() {
				for i := 0; i < len(ba); i += 64 {
					write(t, b.app, ba[i:min(i+64, len(ba))]...)
				}
			}()
			checkFlows(t, readN(t, b.app, len(ab)), ab)
			checkFlows(t, readN(t, a.app, len(ba)), ba)
			rec.check(t, true)
			for _, s := range []*side{a, b} {
				if st := s.nic.Stats(); st.TX.Dropped+st.RX.Dropped != 0 || st.RX.Protected != uint64(len(ab)) {
					t.Fatalf("stats %+v", st)
				}
			}
		})
	}
}

// perCPUSide is one NIC of the per-CPU SA tests: k outbound SAs under one
// per_cpu policy, k inbound SAs under one inbound policy.
func perCPUSide(t *testing.T, tp topo, k int, me, peer netip.Addr, myNet, peerNet string, outSPI, inSPI uint32, host, wire tun.Port, cfg Config) *NIC {
	t.Helper()
	tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var outs, ins []saspec.Ref
	for i := range k {
		o := tp.bundle(fmt.Sprintf("out%d", i), "out", me, peer, outSPI+uint32(i), byte(outSPI>>8)+byte(i))
		in := tp.bundle(fmt.Sprintf("in%d", i), "in", peer, me, inSPI+uint32(i), byte(inSPI>>8)+byte(i))
		for _, b := range []saspec.BundleSpec{o, in} {
			if _, err := tb.Add(b); err != nil {
				t.Fatalf("add %s: %v", b.Name, err)
			}
		}
		outs, ins = append(outs, saspec.Ref(o.Name)), append(ins, saspec.Ref(in.Name))
	}
	for _, p := range []saspec.PolicySpec{
		{Name: "out", Dir: "out", Src: myNet, Dst: peerNet, Bundles: outs, PerCPU: true},
		{Name: "in", Dir: "in", Src: peerNet, Dst: myNet, Bundles: ins},
	} {
		if _, err := tb.AddPolicy(p); err != nil {
			t.Fatalf("add policy %v: %v", p, err)
		}
	}
	n, err := New(cfg, tb, host, wire, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return n
}

// TestPerCPUSAs sends many flows through one tunnel of RFC 9611 per-CPU
// SAs: every transmit worker uses an SA of its own, so each SA's packets
// leave in sequence order; the receiver, with as many workers, handles
// each SA on one worker. A's host port is multiqueue (a queue per worker,
// as a multiqueue TUN device): the flows a test writes into queue i must
// leave through worker i's SA. B's ports have one queue (dispatchers).
func TestPerCPUSAs(t *testing.T) {
	const k = 4
	tp := topo{alg: algGCM, mode: "tunnel"}
	wcfg := tun.MemConfig{Batch: 64, MTU: 1500, Depth: 4096}
	wireA, tapA := tun.NewMemPairConfig(wcfg)
	wireB, tapB := tun.NewMemPairConfig(wcfg)
	hostA := tun.NewMemQueues(k, tun.MemConfig{Batch: 64, MTU: 9000, Depth: 4096})
	hostB, appB := tun.NewMemPairConfig(tun.MemConfig{Batch: 64, MTU: 9000, Depth: 4096})
	a := perCPUSide(t, tp, k, out4A, out4B, "10.1.0.0/16", "10.2.0.0/16", 0x1000, 0x2000, hostA, wireA, Config{Workers: k})
	b := perCPUSide(t, tp, k, out4B, out4A, "10.2.0.0/16", "10.1.0.0/16", 0x2000, 0x1000, hostB, wireB, Config{Workers: k})
	if len(a.dispatchers) != 1 || len(b.dispatchers) != 2 {
		t.Fatalf("dispatchers: A %d (want 1: the wire), B %d (want 2)", len(a.dispatchers), len(b.dispatchers))
	}
	rec := &recorder{seqs: map[uint32][]uint32{}}
	go rec.forward(t, tapA, tapB)
	go rec.forward(t, tapB, tapA)

	const nFlows, per = 16, 60
	all := flows(in4A, in4B, nFlows, per)
	queueOf := func(p []byte) int { return int(binary.BigEndian.Uint16(p[20:])-10000) % k }
	go func() {
		for q := range k {
			var pkts [][]byte
			for _, p := range all {
				if queueOf(p) == q {
					pkts = append(pkts, p)
				}
			}
			write(t, hostA.Peer(q), pkts...)
		}
	}()
	checkFlows(t, readN(t, appB, len(all)), all)
	rec.check(t, true)
	rec.mu.Lock()
	for i := range k {
		if got, want := len(rec.seqs[0x1000+uint32(i)]), len(all)/k; got != want {
			t.Errorf("SA %#x carried %d packets, want %d (the flows of queue %d)", 0x1000+i, got, want, i)
		}
	}
	rec.mu.Unlock()
	for _, n := range []*NIC{a, b} {
		if st := n.Stats(); st.TX.Dropped+st.RX.Dropped != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
	// Every inbound SA of B was used: RX counted by SA.
	st := b.Stats()
	used := 0
	for _, s := range st.SAs {
		if s.Dir == "in" && s.Packets > 0 {
			used++
		}
	}
	if used != k {
		t.Fatalf("%d of B's %d inbound SAs received packets", used, k)
	}
}

// TestPerCPUFallback: a per_cpu policy whose bundles are partly missing
// uses those that exist; with none it drops (OutNoStates).
func TestPerCPUFallback(t *testing.T) {
	tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	tp := topo{alg: algGCM, mode: "tunnel"}
	h0, err := tb.Add(tp.bundle("o0", "out", out4A, out4B, 0x1000, 1))
	if err != nil {
		t.Fatal(err)
	}
	h1, err := tb.Add(tp.bundle("o1", "out", out4A, out4B, 0x1001, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "out", Dir: "out", Dst: "10.2.0.0/16", Bundles: []saspec.Ref{"o0", "o1"}, PerCPU: true}); err != nil {
		t.Fatal(err)
	}
	flow := func() sadb.Resolved {
		r := tb.Snapshot().MatchOut(sa.Flow{Src: in4A, Dst: in4B, Proto: 17, SrcPort: 1, DstPort: 2})
		if r == nil {
			t.Fatal("no policy matched")
		}
		return *r
	}
	if r := flow(); !r.PerCPU || len(r.Bundles) != 2 {
		t.Fatalf("resolved %+v, want 2 per-CPU bundles", r)
	}
	if err := tb.Delete(h0); err != nil {
		t.Fatal(err)
	}
	if r := flow(); len(r.Bundles) != 1 || r.Bundles[0].ESP.SPI != 0x1001 {
		t.Fatalf("after deleting o0: %d bundles, want o1 alone", len(r.Bundles))
	}
	if err := tb.Delete(h1); err != nil {
		t.Fatal(err)
	}
	if r := flow(); len(r.Bundles) != 0 {
		t.Fatalf("after deleting both: %d bundles, want none (OutNoStates)", len(r.Bundles))
	}
}
