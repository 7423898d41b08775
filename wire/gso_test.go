package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/testenv"

	"github.com/secnic/secnic/internal/netlab"
)

// gsoOff is the headroom the tests leave in front of every packet.
const gsoOff = 16

// udpPairCfg opens two UDP wire ports on random loopback addresses, each
// configured by cfg after the addresses are set.
func udpPairCfg(t testing.TB, cfg func(*UDPConfig)) (a, b *UDPPort) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		x, y := byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)
		ca := UDPConfig{Local: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, x, y, 1}), 4789), Peer: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, x, y, 2}), 4789), MTU: 1500}
		cb := UDPConfig{Local: ca.Peer, Peer: ca.Local, MTU: 1500}
		if cfg != nil {
			cfg(&ca)
			cfg(&cb)
		}
		var err error
		a, err = OpenUDP(ca)
		if err == nil {
			b, err = OpenUDP(cb)
			if err == nil {
				t.Cleanup(func() { a.Close(); b.Close() })
				return a, b
			}
			a.Close()
		}
		if attempt > 10 {
			t.Fatalf("cannot open loopback UDP ports: %v", err)
		}
	}
}

// requireGSO fails the test when the kernel offers no UDP segmentation
// offload (Linux >= 5.0 has both directions).
func requireGSO(t testing.TB, p *UDPPort) {
	t.Helper()
	if !p.SegmentOffload() || !p.ReceiveOffload() {
		t.Fatalf("%s: no UDP_SEGMENT/UDP_GRO (SegmentOffload %v, ReceiveOffload %v); this kernel is too old for the offload tests", p.Name(), p.SegmentOffload(), p.ReceiveOffload())
	}
}

// mixedPackets returns packets of the shapes a NIC writes: TSO-like runs
// (equal size, shorter last), a run longer than udpMaxSegments, a longer
// packet that breaks a run, singles and random sizes. Every packet is
// distinct (its index is in its first bytes).
func mixedPackets(maxLen int) [][]byte {
	var sizes []int
	add := func(n, size int) {
		for range n {
			sizes = append(sizes, size)
		}
	}
	add(45, 1400)
	add(1, 600) // the TSO tail
	add(150, 1000)
	add(1, 77)
	add(3, 1200)
	add(1, 1300) // longer: starts a new run
	add(1, 1300)
	add(2, 20)
	r := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		sizes = append(sizes, 8+r.IntN(maxLen-8))
	}
	add(64, 900) // exactly udpMaxSegments
	add(65, 900) // one more
	out := make([][]byte, len(sizes))
	for i, s := range sizes {
		p := make([]byte, s)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint32(p, uint32(i))
		out[i] = p
	}
	return out
}

// withHeadroom copies pkts behind gsoOff bytes of headroom.
func withHeadroom(pkts [][]byte) [][]byte {
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, gsoOff), p...)
	}
	return bufs
}

// receiveN reads from p until n packets came (copies), or fails after a
// watchdog (the port is closed then, which unblocks Read).
func receiveN(t *testing.T, p *UDPPort, n int) [][]byte {
	t.Helper()
	type result struct {
		got [][]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		var got [][]byte
		bufs := make([][]byte, p.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, gsoOff+p.MTU())
		}
		sizes := make([]int, len(bufs))
		for len(got) < n {
			k, err := p.Read(bufs, sizes, gsoOff)
			if err != nil {
				done <- result{got, err}
				return
			}
			for i := range k {
				got = append(got, bytes.Clone(bufs[i][gsoOff:gsoOff+sizes[i]]))
			}
		}
		done <- result{got, nil}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("Read after %d of %d packets: %v", len(r.got), n, r.err)
		}
		return r.got
	case <-time.After(20 * time.Second):
		p.Close()
		r := <-done
		t.Fatalf("received %d of %d packets (watchdog)", len(r.got), n)
		return nil
	}
}

// roundTrip writes pkts from a in one Write and checks that b receives
// exactly them, in order, with their boundaries.
func roundTrip(t *testing.T, a, b *UDPPort, pkts [][]byte) {
	t.Helper()
	n, err := a.Write(withHeadroom(pkts), gsoOff)
	if err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(pkts))
	}
	mustEqualPackets(t, receiveN(t, b, len(pkts)), pkts)
}

func TestUDPGSORoundTripLoopback(t *testing.T) {
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 128 })
	requireGSO(t, a)
	requireGSO(t, b)
	pkts := mixedPackets(1500)
	roundTrip(t, a, b, pkts)
	// The segmented runs reached b as coalesced receives (loopback hands
	// the super-datagram to a UDP_GRO socket whole).
	if _, c := b.OffloadStats(); c == 0 {
		t.Fatal("no coalesced receive: the runs did not go out segmented")
	}
	if f, _ := a.OffloadStats(); f != 0 || !a.SegmentOffload() {
		t.Fatalf("fallbacks %d, SegmentOffload %v", f, a.SegmentOffload())
	}
	// And back, with small reader batches: a coalesced receive that does
	// not fit one Read is delivered over several.
	roundTrip(t, b, a, pkts)
}

func TestUDPGSOSmallReads(t *testing.T) {
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 3 })
	requireGSO(t, a)
	pkts := mixedPackets(1500)
	// Batch 3 on the writer: runs of at most 3; the reader's 3 buffers
	// take each coalesced receive apart across Reads.
	roundTrip(t, a, b, pkts)
}

func TestUDPGSONoOffload(t *testing.T) {
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 128; c.NoSegmentOffload = true })
	if a.SegmentOffload() || a.ReceiveOffload() {
		t.Fatal("NoSegmentOffload: offload still on")
	}
	pkts := mixedPackets(1500)
	roundTrip(t, a, b, pkts)
	if _, c := b.OffloadStats(); c != 0 {
		t.Fatalf("%d coalesced receives without UDP_GRO", c)
	}
}

// setNoCheck sets SO_NO_CHECK on p's socket: the kernel then refuses
// segmented sends (EINVAL) and still sends single datagrams (IPv4, UDP
// checksum zero). It is the refusal the fallback is for.
func setNoCheck(t *testing.T, p *UDPPort) {
	t.Helper()
	rc, err := p.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_NO_CHECK: %v %v", err, serr)
	}
}

// logCount is a slog handler that counts records containing a substring.
type logCount struct {
	mu   sync.Mutex
	sub  string
	seen int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(r.Message, l.sub) {
		l.seen++
	}
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen
}

func TestUDPGSOFallback(t *testing.T) {
	logs := &logCount{sub: "refuses segmented sends"}
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 128; c.Logger = slog.New(logs) })
	requireGSO(t, a)
	setNoCheck(t, a)
	pkts := mixedPackets(1500)
	// The first segmented send is refused: that run goes out one
	// datagram each, segmentation is switched off, the rest follows
	// without it; every packet arrives once.
	roundTrip(t, a, b, pkts)
	if a.SegmentOffload() {
		t.Fatal("SegmentOffload still true after the kernel refused it")
	}
	if f, _ := a.OffloadStats(); f != 1 {
		t.Fatalf("fallbacks = %d, want 1", f)
	}
	roundTrip(t, a, b, pkts)
	if n := logs.count(); n != 1 {
		t.Fatalf("%d warnings, want 1", n)
	}
}

func TestUDPGSORefusedAfterSuccess(t *testing.T) {
	logs := &logCount{sub: "refuses segmented sends"}
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 128; c.Logger = slog.New(logs) })
	requireGSO(t, a)
	pkts := mixedPackets(1500)
	roundTrip(t, a, b, pkts) // segmentation confirmed
	setNoCheck(t, a)
	// Now every segmented message is refused (EINVAL) and resent one
	// datagram each; after a confirmed success that is not taken as the
	// socket lacking it, so it stays on.
	roundTrip(t, a, b, pkts)
	f, _ := a.OffloadStats()
	if f == 0 || !a.SegmentOffload() || logs.count() != 0 {
		t.Fatalf("fallbacks %d, SegmentOffload %v, warnings %d; want >0, true, 0", f, a.SegmentOffload(), logs.count())
	}
}

// TestUDPGSODestinationChange sends runs to two receivers from one
// unconnected socket: a run ends where the destination changes.
func TestUDPGSODestinationChange(t *testing.T) {
	x, y := byte(rand.IntN(250)+1), byte(rand.IntN(250)+1)
	ip := func(z byte) netip.Addr { return netip.AddrFrom4([4]byte{127, x, y, z}) }
	src := netip.AddrPortFrom(ip(1), 4789)
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(src))
	if err != nil {
		t.Skipf("loopback address in use: %v", err)
	}
	defer c.Close()
	var rx [2]*UDPPort
	for i := range rx {
		rx[i], err = OpenUDP(UDPConfig{Local: netip.AddrPortFrom(ip(byte(2+i)), 4789), Peer: src, Batch: 128})
		if err != nil {
			t.Fatal(err)
		}
		defer rx[i].Close()
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var gso bool
	_ = rc.Control(func(fd uintptr) { gso = probeGSO(int(fd)) })
	if !gso {
		t.Fatal("no UDP_SEGMENT on this kernel")
	}
	s := newGSOSender(rc, 128, gsoMaxBytes4, true, nil, "test")

	pkts := mixedPackets(1500)
	dst := make([]netip.AddrPort, len(pkts))
	var want [2][][]byte
	to := 0
	r := rand.New(rand.NewPCG(3, 4))
	for i := range pkts {
		if r.IntN(20) == 0 || i == 30 || i == 31 {
			to ^= 1 // also inside runs of equal size
		}
		dst[i] = rx[to].LocalAddr()
		want[to] = append(want[to], pkts[i])
	}
	n, err := s.write(withHeadroom(pkts), gsoOff, dst)
	if err != nil || n != len(pkts) {
		t.Fatalf("write = %d, %v", n, err)
	}
	for i := range rx {
		mustEqualPackets(t, receiveN(t, rx[i], len(want[i])), want[i])
		if _, c := rx[i].OffloadStats(); c == 0 {
			t.Errorf("receiver %d: no coalesced receive", i)
		}
	}
}

func TestRunEnd(t *testing.T) {
	mk := func(sizes ...int) [][]byte {
		out := make([][]byte, len(sizes))
		for i, s := range sizes {
			out[i] = make([]byte, 4+s)
		}
		return out
	}
	for _, tc := range []struct {
		sizes    []int
		maxBytes int
		want     []int // run ends from 0
	}{
		{[]int{100, 100, 100, 50, 100}, gsoMaxBytes4, []int{4, 5}},
		{[]int{100, 200, 100}, gsoMaxBytes4, []int{1, 3}},
		{[]int{100, 200, 200, 300}, gsoMaxBytes4, []int{1, 3, 4}},
		{[]int{100, 100, 0, 100}, gsoMaxBytes4, []int{2, 3, 4}},
		{[]int{1000, 1000, 1000, 1000}, 2500, []int{2, 4}},
		{[]int{70000}, gsoMaxBytes4, []int{1}},
	} {
		bufs := mk(tc.sizes...)
		var got []int
		for i := 0; i < len(bufs); {
			i = runEnd(bufs, 4, i, len(bufs), tc.maxBytes, nil)
			got = append(got, i)
		}
		if !equalInts(got, tc.want) {
			t.Errorf("sizes %v max %d: runs end at %v, want %v", tc.sizes, tc.maxBytes, got, tc.want)
		}
	}
	// At most udpMaxSegments per run.
	bufs := mk(make([]int, 200)...)
	for i := range bufs {
		bufs[i] = make([]byte, 104)
	}
	if e := runEnd(bufs, 4, 0, len(bufs), gsoMaxBytes4, nil); e != udpMaxSegments {
		t.Fatalf("run of 200 equal packets ends at %d, want %d", e, udpMaxSegments)
	}
	// A destination change ends a run.
	dst := make([]netip.AddrPort, len(bufs))
	dst[10] = netip.MustParseAddrPort("127.0.0.1:1")
	if e := runEnd(bufs, 4, 0, len(bufs), gsoMaxBytes4, dst); e != 10 {
		t.Fatalf("run ends at %d, want 10 (destination change)", e)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkSplit takes src apart with splitGRO into nbuf buffers of room bytes
// at a time and checks every datagram against the definition: cut every
// seg bytes (seg <= 0: whole), too long for its buffer = size 0.
func checkSplit(t *testing.T, src []byte, seg, nbuf, room, offset int) {
	t.Helper()
	dst := make([][]byte, nbuf)
	for i := range dst {
		dst[i] = make([]byte, offset+room)
	}
	sizes := make([]int, nbuf)
	step := seg
	if step <= 0 {
		step = len(src)
	}
	pos, want := 0, 0
	for calls := 0; pos < len(src); calls++ {
		if calls > len(src)+1 {
			t.Fatalf("no progress at %d of %d", pos, len(src))
		}
		k, next := splitGRO(dst, sizes, offset, 0, src, seg, pos)
		if k == 0 || k > nbuf || next <= pos || next > len(src) {
			t.Fatalf("splitGRO(pos %d) = %d, %d", pos, k, next)
		}
		for i := range k {
			end := min(want+step, len(src))
			seg := src[want:end]
			switch {
			case len(seg) > room:
				if sizes[i] != 0 {
					t.Fatalf("datagram at %d (%d bytes) into %d: size %d, want 0", want, len(seg), room, sizes[i])
				}
			case sizes[i] != len(seg) || !bytes.Equal(dst[i][offset:offset+sizes[i]], seg):
				t.Fatalf("datagram at %d: size %d, want %d (or contents differ)", want, sizes[i], len(seg))
			}
			want = end
		}
		if next != want {
			t.Fatalf("next = %d, want %d", next, want)
		}
		pos = next
	}
}

func TestSplitGROProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		src := make([]byte, r.IntN(5000))
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		checkSplit(t, src, r.IntN(1600)-100, 1+r.IntN(8), 1+r.IntN(2000), r.IntN(32))
	}
}

func FuzzSplitGRO(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789"), 7, 3, 7, 4)
	f.Add(make([]byte, 3000), 1400, 1, 1500, 16)
	f.Add(make([]byte, 3000), 1400, 2, 1000, 0)
	f.Add([]byte{1}, 0, 1, 1, 0)
	f.Fuzz(func(t *testing.T, src []byte, seg, nbuf, room, offset int) {
		nbuf = 1 + abs(nbuf)%16
		room = 1 + abs(room)%4096
		offset = abs(offset) % 64
		seg %= 1 << 16
		checkSplit(t, src, seg, nbuf, room, offset)
	})
}

func abs(x int) int {
	if x < 0 {
		if x == -x { // math.MinInt
			return 0
		}
		return -x
	}
	return x
}

// groCmsg builds a UDP_GRO control message carrying size, as the kernel
// writes it (an int).
func groCmsg(size int32) []byte {
	c := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(c[unix.CmsgLen(0):], uint32(size))
	return c
}

func TestGROSize(t *testing.T) {
	if g := groSize(groCmsg(1400)); g != 1400 {
		t.Fatalf("groSize = %d, want 1400", g)
	}
	// Behind another control message.
	other := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&other[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SCM_RIGHTS
	h.SetLen(unix.CmsgLen(4))
	if g := groSize(append(other, groCmsg(900)...)); g != 900 {
		t.Fatalf("groSize behind SCM_RIGHTS = %d, want 900", g)
	}
	for _, c := range [][]byte{nil, make([]byte, 15), make([]byte, 64), groCmsg(1400)[:17]} {
		if g := groSize(c); g != 0 {
			t.Fatalf("groSize(% x) = %d, want 0", c, g)
		}
	}
}

func FuzzGROSize(f *testing.F) {
	f.Add(groCmsg(1400))
	f.Add([]byte{})
	f.Add(append(groCmsg(1), 0xff, 0xff))
	f.Fuzz(func(t *testing.T, c []byte) {
		_ = groSize(c) // must not panic on any bytes
	})
}

// tsoBatch is what the NIC writes for one TCP super-packet: 45 ESP packets
// of 1438 bytes and a shorter tail, with headroom.
func tsoBatch() [][]byte {
	bufs := make([][]byte, 46)
	for i := range bufs {
		n := 1438
		if i == len(bufs)-1 {
			n = 700
		}
		bufs[i] = make([]byte, gsoOff+n)
		binary.BigEndian.PutUint32(bufs[i][gsoOff:], uint32(i))
	}
	return bufs
}

// exchange writes bufs from a and reads them all at b, without allocating.
func exchange(a, b *UDPPort, bufs, rb [][]byte, sizes []int) error {
	if _, err := a.Write(bufs, gsoOff); err != nil {
		return err
	}
	for got := 0; got < len(bufs); {
		k, err := b.Read(rb, sizes, gsoOff)
		if err != nil {
			return err
		}
		got += k
	}
	return nil
}

func readBufs(p *UDPPort) ([][]byte, []int) {
	rb := make([][]byte, p.BatchSize())
	for i := range rb {
		rb[i] = make([]byte, gsoOff+p.MTU())
	}
	return rb, make([]int, len(rb))
}

func TestUDPGSOAllocs(t *testing.T) {
	for _, off := range []bool{false, true} {
		a, b := udpPairCfg(t, func(c *UDPConfig) { c.NoSegmentOffload = off })
		bufs := tsoBatch()
		rb, sizes := readBufs(b)
		var err error
		allocs := testing.AllocsPerRun(50, func() {
			if e := exchange(a, b, bufs, rb, sizes); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if allocs != 0 {
			t.Fatalf("NoSegmentOffload %v: %.1f allocations per batch, want 0", off, allocs)
		}
	}
}

// BenchmarkUDPWire moves one TSO-like batch (46 ESP-sized packets) per
// iteration from one UDP wire port to another on loopback, with and without
// segmentation offload.
func BenchmarkUDPWire(b *testing.B) {
	for _, mode := range []string{"gso", "plain"} {
		b.Run(mode, func(b *testing.B) {
			pa, pb := udpPairCfg(b, func(c *UDPConfig) { c.NoSegmentOffload = mode == "plain" })
			bufs := tsoBatch()
			rb, sizes := readBufs(pb)
			n := 0
			for _, x := range bufs {
				n += len(x) - gsoOff
			}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := exchange(pa, pb, bufs, rb, sizes); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bufs)), "ns/pkt")
		})
	}
}

// TestUDPGSONetns runs the round trip between two namespaces over a veth
// pair (MTU 1500), IPv4 and IPv6.
func TestUDPGSONetns(t *testing.T) {
	p := testenv.VethPair(t, netlab.PairConfig{Prefix: "secnic-gso", V4A: out4A, V4B: out4B, V6A: out6A, V6B: out6B})
	for _, fam := range []struct {
		name string
		a, b netip.Addr
		mtu  int
	}{{"ipv4", out4A, out4B, 1500 - 28}, {"ipv6", out6A, out6B, 1500 - 48}} {
		t.Run(fam.name, func(t *testing.T) {
			la, lb := netip.AddrPortFrom(fam.a, 4789), netip.AddrPortFrom(fam.b, 4789)
			a, err := OpenUDP(UDPConfig{Local: la, Peer: lb, MTU: fam.mtu, Batch: 128, NetnsPath: p.A.Path})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := OpenUDP(UDPConfig{Local: lb, Peer: la, MTU: fam.mtu, Batch: 128, NetnsPath: p.B.Path})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			requireGSO(t, a)
			pkts := mixedPackets(fam.mtu)
			// Neighbour resolution first, so that no run waits in
			// its queue.
			waitReachable(t, a, b)
			roundTrip(t, a, b, pkts)
			roundTrip(t, b, a, pkts)
			if _, c := b.OffloadStats(); c == 0 {
				t.Error("no coalesced receive across the veth")
			}
			if f, _ := a.OffloadStats(); f != 0 {
				t.Errorf("%d fallbacks", f)
			}
		})
	}
}

// waitReachable sends probes from a until b receives one (routes and
// addresses of a new namespace may take a moment).
func waitReachable(t *testing.T, a, b *UDPPort) {
	t.Helper()
	got := make(chan struct{})
	go func() {
		rb, sizes := readBufs(b)
		for {
			k, err := b.Read(rb, sizes, gsoOff)
			if err != nil {
				return
			}
			for i := range k {
				if sizes[i] == 5 && string(rb[i][gsoOff:gsoOff+5]) == "probe" {
					close(got)
					return
				}
			}
		}
	}()
	probe := [][]byte{append(make([]byte, gsoOff), "probe"...)}
	deadline := time.After(10 * time.Second)
	for {
		_, _ = a.Write(probe, gsoOff)
		select {
		case <-got:
			return
		case <-time.After(time.Second):
			// One probe in flight at a time: a late one would land
			// in the round trip.
		case <-deadline:
			t.Fatal("the peer never received a probe (watchdog)")
		}
	}
}
