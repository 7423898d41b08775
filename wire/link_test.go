package wire

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/tun"
)

// TestLinkFilter runs the per-family parts of the link port's BPF filter
// in x/net's BPF interpreter (which lacks the packet-type and protocol
// extensions the full program starts with; the root tests cover those).
func TestLinkFilter(t *testing.T) {
	esp4 := make([]byte, 60)
	packet.WriteIPv4(esp4, packet.IPv4Fields{TotalLen: 60, ID: 1, TTL: 64, Protocol: packet.ProtoESP, Src: out4A, Dst: out4B})
	ah4 := bytes.Clone(esp4)
	ah4[9] = packet.ProtoAH
	nat4 := udpWith(out4A, out4B, 4500, 4500, make([]byte, 20), false)
	dns4 := udpWith(out4A, out4B, 4500, 53, make([]byte, 20), false)
	frag4 := bytes.Clone(dns4)
	packet.IPv4(frag4).SetFlagsFrag(10)
	tcp4 := bytes.Clone(esp4)
	tcp4[9] = packet.ProtoTCP
	opts4 := make([]byte, 24+8+8) // IPv4 with 4 bytes of options, UDP to 4500
	packet.WriteIPv4(opts4, packet.IPv4Fields{TotalLen: len(opts4), ID: 1, TTL: 64, Protocol: packet.ProtoUDP, Src: out4A, Dst: out4B})
	opts4[0] = 0x46
	packet.UDP(opts4[24:]).SetDstPort(4500)

	esp6 := make([]byte, 80)
	packet.WriteIPv6(esp6, packet.IPv6Fields{PayloadLen: 40, NextHeader: packet.ProtoESP, HopLimit: 64, Src: out6A, Dst: out6B})
	nat6 := udpWith(out6A, out6B, 1, 4500, make([]byte, 20), false)
	dns6 := udpWith(out6A, out6B, 1, 53, make([]byte, 20), false)
	frag6 := bytes.Clone(esp6)
	frag6[6], frag6[40] = packet.ProtoFragment, packet.ProtoESP
	fragTCP6 := bytes.Clone(frag6)
	fragTCP6[40] = packet.ProtoTCP

	tests := []struct {
		name   string
		v6     bool
		port   uint16
		pkt    []byte
		accept bool
	}{
		{"esp4", false, 4500, esp4, true},
		{"ah4", false, 4500, ah4, true},
		{"natt4", false, 4500, nat4, true},
		{"natt4-disabled", false, 0, nat4, false},
		{"udp4-other-port", false, 4500, dns4, false},
		{"udp4-nonfirst-fragment", false, 4500, frag4, true},
		{"tcp4", false, 4500, tcp4, false},
		{"natt4-with-options", false, 4500, opts4, true},
		{"esp6", true, 4500, esp6, true},
		{"natt6", true, 4500, nat6, true},
		{"udp6-other-port", true, 4500, dns6, false},
		{"esp6-fragment", true, 4500, frag6, true},
		{"tcp6-fragment", true, 4500, fragTCP6, false},
		{"natt6-disabled", true, 0, nat6, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a asm
			if tc.v6 {
				filterV6(&a, tc.port)
			} else {
				filterV4(&a, tc.port)
			}
			raw, err := a.assemble()
			if err != nil {
				t.Fatal(err)
			}
			ins := make([]bpf.Instruction, len(raw))
			for i, r := range raw {
				ins[i] = r.Disassemble()
			}
			vm, err := bpf.NewVM(ins)
			if err != nil {
				t.Fatal(err)
			}
			n, err := vm.Run(tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.accept {
				t.Fatalf("filter returned %d, want accept=%v", n, tc.accept)
			}
		})
	}
	if _, err := linkFilter(4500); err != nil {
		t.Fatalf("full filter: %v", err)
	}
}

// vethEnv is two network namespaces joined by a veth pair, with
// 192.0.2.1/24 and 2001:db8::1/64 on side A and .2 / ::2 on side B.
type vethEnv struct {
	nsA, nsB string // /run/netns paths
	ifA, ifB string
}

func newVethEnv(t *testing.T) *vethEnv {
	t.Helper()
	p := testenv.VethPair(t, netlab.PairConfig{Prefix: "secnic-wire", V4A: out4A, V4B: out4B, V6A: out6A, V6B: out6B})
	return &vethEnv{nsA: p.A.Path, nsB: p.B.Path, ifA: p.A.Veth, ifB: p.B.Veth}
}

// collect reads a wire port on its own goroutine and hands out copies.
func collect(t *testing.T, p tun.Port) <-chan []byte {
	ch := make(chan []byte, 1024)
	go func() {
		bufs := make([][]byte, p.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, p.MTU()+100)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := p.Read(bufs, sizes, 0)
			if err != nil {
				close(ch)
				return
			}
			for i := range n {
				ch <- bytes.Clone(bufs[i][:sizes[i]])
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("port closed")
		}
		return b
	case <-time.After(20 * time.Second):
		t.Fatal("no packet arrived (watchdog)")
	}
	return nil
}

// snmp reads the kernel's ICMP counters of a namespace.
func snmp(t *testing.T, ns string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := netns.Do(ns, func() error {
		for _, f := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/snmp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			var head []string
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				if len(fields) == 2 && !strings.HasSuffix(fields[0], ":") {
					v, _ := strconv.ParseUint(fields[1], 10, 64)
					out[fields[0]] = v
					continue
				}
				if len(fields) > 1 && (fields[0] == "Icmp:" || fields[0] == "Ip:") {
					if head == nil || head[0] != fields[0] {
						head = fields
					} else {
						for i := 1; i < len(fields) && i < len(head); i++ {
							v, _ := strconv.ParseUint(fields[i], 10, 64)
							out[strings.TrimSuffix(fields[0], ":")+head[i]] = v
						}
						head = nil
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// linkMethods are the link port's methods as the tests run them: each name
// is a LinkConfig.Method, except "ring-v3", the rings with a TPACKET_V3
// receive ring.
var linkMethods = []string{LinkMmsg, LinkRing, "ring-v3", LinkXDP}

// forEachMethod runs test once per link method.
func forEachMethod(t *testing.T, test func(t *testing.T, method string)) {
	for _, m := range linkMethods {
		t.Run(m, func(t *testing.T) { test(t, useMethod(t, m)) })
	}
}

// useMethod returns the LinkConfig.Method for the linkMethods entry m;
// for "ring-v3" it switches the receive ring to TPACKET_V3 until tb ends.
func useMethod(tb testing.TB, m string) string {
	if m != "ring-v3" {
		return m
	}
	old := ringRXVersion
	ringRXVersion = unix.TPACKET_V3
	tb.Cleanup(func() { ringRXVersion = old })
	return LinkRing
}

// openLinkPair opens link ports with method on both sides of e.
func openLinkPair(t *testing.T, e *vethEnv, method string) (pA, pB *LinkPort) {
	t.Helper()
	pA, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA, Method: method})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pA.Close() })
	pB, err = OpenLink(LinkConfig{Interface: e.ifB, EncapPort: 4500, NetnsPath: e.nsB, Method: method})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pB.Close() })
	if pA.Method() != method || pB.Method() != method {
		t.Fatalf("methods %q and %q, want %q", pA.Method(), pB.Method(), method)
	}
	return pA, pB
}

// TestLinkAuto checks that a veth gets AF_XDP without asking, and the
// rings when XDP cannot attach (the interface has a program already).
func TestLinkAuto(t *testing.T) {
	e := newVethEnv(t)
	p, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Method() != LinkXDP {
		t.Fatalf("method %q on a veth, want %q", p.Method(), LinkXDP)
	}
	p2, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Method() != LinkRing {
		t.Errorf("method %q on a veth that has an XDP program, want %q", p2.Method(), LinkRing)
	}
	p2.Close()
	if _, err := OpenLink(LinkConfig{Interface: e.ifA, NetnsPath: e.nsA, Method: "carrier-pigeon"}); err == nil {
		t.Fatal("an unknown method was accepted")
	}
	// Loopback has no Ethernet next hop: auto falls back, ring refuses.
	if _, err := OpenLink(LinkConfig{Interface: "lo", NetnsPath: e.nsA, Method: LinkRing}); err == nil {
		t.Fatal("the rings opened on lo")
	}
	lo, err := OpenLink(LinkConfig{Interface: "lo", NetnsPath: e.nsA})
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	if lo.Method() != LinkMmsg {
		t.Fatalf("method %q on lo, want %q", lo.Method(), LinkMmsg)
	}
}

func TestLinkPort(t *testing.T) { forEachMethod(t, testLinkPort) }

func testLinkPort(t *testing.T, method string) {
	e := newVethEnv(t)
	pA, pB := openLinkPair(t, e, method)
	if pA.MTU() != 1500 || pA.Name() != "link:"+e.ifA {
		t.Fatalf("MTU %d name %s", pA.MTU(), pA.Name())
	}
	rxA, rxB := collect(t, pA), collect(t, pB)

	esp := func(src, dst netip.Addr, n int) []byte {
		var b []byte
		if src.Is4() {
			b = make([]byte, 20+n)
			packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: uint16(n), TTL: 64, Protocol: packet.ProtoESP, Src: src, Dst: dst})
		} else {
			b = make([]byte, 40+n)
			packet.WriteIPv6(b, packet.IPv6Fields{PayloadLen: n, NextHeader: packet.ProtoESP, HopLimit: 64, Src: src, Dst: dst})
		}
		for i := len(b) - n; i < len(b); i++ {
			b[i] = byte(i)
		}
		return b
	}
	send := func(p *LinkPort, pkts ...[]byte) {
		t.Helper()
		if n, err := p.Write(pkts, 0); err != nil || n != len(pkts) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	before := snmp(t, e.nsB)
	wanted := [][]byte{
		esp(out4A, out4B, 100),
		udpWith(out4A, out4B, 4500, 4500, append([]byte{1, 2, 3, 4}, make([]byte, 40)...), false),
		esp(out6A, out6B, 100),
		udpWith(out6A, out6B, 4500, 4500, append([]byte{1, 2, 3, 4}, make([]byte, 40)...), false),
	}
	for _, w := range wanted {
		// A packet the filter must hold back, then one it must pass.
		other := udpWith(packet.IPv4(w).Src(), packet.IPv4(w).Dst(), 1, 9, make([]byte, 10), false)
		if packet.Version(w) == 6 {
			other = udpWith(packet.IPv6(w).Src(), packet.IPv6(w).Dst(), 1, 9, make([]byte, 10), false)
		}
		send(pA, other, w)
		if got := next(t, rxB); !bytes.Equal(got, w) {
			t.Fatalf("B received % x, want % x", got[:min(48, len(got))], w[:min(48, len(w))])
		}
	}
	// A protected datagram sent as two fragments arrives as two fragments.
	big := esp(out4A, out4B, 2000)
	frags := fragments4(big, 1480)
	send(pA, frags...)
	got := [][]byte{next(t, rxB), next(t, rxB)}
	if !(bytes.Equal(got[0], frags[0]) && bytes.Equal(got[1], frags[1])) && !(bytes.Equal(got[1], frags[0]) && bytes.Equal(got[0], frags[1])) {
		t.Fatal("fragments did not arrive intact")
	}

	// The kernel of B received all of these too, and answered none of the
	// ESP, AH and port-4500 packets with ICMP: the absorber sockets hold
	// them. The UDP datagrams to port 9 (two per family) are answered with
	// port unreachable, as is the control, sent last, to port 4501.
	ctl := udpWith(out4A, out4B, 1, 4501, make([]byte, 10), false)
	send(pA, ctl)
	for i := 0; ; i++ {
		after := snmp(t, e.nsB)
		if d := after["IcmpOutDestUnreachs"] - before["IcmpOutDestUnreachs"]; d >= 3 {
			if d != 3 {
				t.Fatalf("B's kernel sent %d ICMP destination unreachables, want 3 (port 9 twice and the control)", d)
			}
			if d6 := after["Icmp6OutParmProblems"] - before["Icmp6OutParmProblems"]; d6 != 0 {
				t.Fatalf("B's kernel sent %d ICMPv6 parameter problems (ESP not absorbed)", d6)
			}
			if d6 := after["Icmp6OutDestUnreachs"] - before["Icmp6OutDestUnreachs"]; d6 != 2 {
				t.Fatalf("B's kernel sent %d ICMPv6 destination unreachables, want 2 (port 9 twice)", d6)
			}
			// B's kernel received the two datagrams to port 9 and the
			// control, and on every method but XDP also the ESP, the
			// NAT-T datagram and the two fragments.
			want := uint64(7)
			if method == LinkXDP {
				want = 3
			}
			if d := after["IpInReceives"] - before["IpInReceives"]; d != want {
				t.Fatalf("B's kernel received %d IPv4 packets, want %d", d, want)
			}
			break
		}
		if i > 2000 {
			t.Fatal("the control datagram got no ICMP answer (watchdog)")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// An IKE daemon on B can still bind the encapsulation port (with
	// SO_REUSEADDR, as the absorber does).
	if err := netns.Do(e.nsB, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
		c, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:4500")
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("an IKE daemon cannot bind port 4500 next to the absorber: %v", err)
	}

	// A sees what B sends, and not its own transmissions.
	w := esp(out4B, out4A, 64)
	send(pB, w)
	if got := next(t, rxA); !bytes.Equal(got, w) {
		t.Fatalf("A received % x first, want B's packet", got[:min(48, len(got))])
	}
	if method == LinkRing || method == LinkXDP {
		// The first packets to B went through the kernel, which resolved
		// B's MAC; once the port has it, they go through the TX ring.
		for _, dst := range []netip.Addr{out4B, out6B} {
			for i := 0; ; i++ {
				if _, ok := (*pA.hops.snap.Load())[dst]; ok {
					break
				}
				if i > 2000 {
					t.Fatalf("A never learnt the MAC of %v (watchdog)", dst)
				}
				time.Sleep(5 * time.Millisecond)
			}
			sent := func() uint64 {
				if pA.xsk != nil {
					return pA.xsk.sent.Load()
				}
				return pA.txr.sent.Load()
			}
			before := sent()
			src := out4A
			if dst.Is6() {
				src = out6A
			}
			w := esp(src, dst, 300)
			send(pA, w, w)
			if got := next(t, rxB); !bytes.Equal(got, w) {
				t.Fatalf("B received % x, want % x", got[:min(48, len(got))], w[:48])
			}
			next(t, rxB)
			if n := sent() - before; n != 2 {
				t.Fatalf("%d of 2 packets to %v went through A's TX ring", n, dst)
			}
		}
	}
}

// BenchmarkLinkPort sends batches of 64 ESP packets of 1400 bytes from A
// to B over a veth pair, B reading them on its own goroutine, on every
// method. An op is one batch; the allocations counted are those of the
// whole process, Write and Read included: there must be none.
func BenchmarkLinkPort(b *testing.B) {
	for _, m := range linkMethods {
		b.Run(m, func(b *testing.B) { benchLinkPort(b, useMethod(b, m)) })
	}
}

func benchLinkPort(b *testing.B, method string) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	p, err := netlab.NewPair(netlab.PairConfig{Prefix: "secnic-wb", V4A: out4A, V4B: out4B, V6A: out6A, V6B: out6B})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	pA, err := OpenLink(LinkConfig{Interface: p.A.Veth, NetnsPath: p.A.Path, Method: method})
	if err != nil {
		b.Fatal(err)
	}
	defer pA.Close()
	pB, err := OpenLink(LinkConfig{Interface: p.B.Veth, NetnsPath: p.B.Path, Method: method})
	if err != nil {
		b.Fatal(err)
	}
	defer pB.Close()
	var got atomic.Uint64
	go func() {
		bufs := make([][]byte, pB.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := pB.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			got.Add(uint64(n))
		}
	}()
	pkt := make([]byte, 1400)
	packet.WriteIPv4(pkt, packet.IPv4Fields{TotalLen: len(pkt), ID: 1, TTL: 64, Protocol: packet.ProtoESP, Src: out4A, Dst: out4B})
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = pkt
	}
	// Let A learn B's MAC (the first packets go through the kernel).
	for i := 0; got.Load() == 0 || (method == LinkRing && pA.txr.sent.Load() == 0) || (method == LinkXDP && pA.xsk.sent.Load() == 0); i++ {
		if i > 2000 {
			b.Fatal("nothing arrived (watchdog)")
		}
		pA.Write(batch[:1], 0)
		time.Sleep(5 * time.Millisecond)
	}
	start := got.Load()
	b.SetBytes(int64(len(batch) * len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if n, err := pA.Write(batch, 0); n != len(batch) || err != nil {
			b.Fatalf("Write: %d, %v", n, err)
		}
	}
	b.StopTimer()
	time.Sleep(50 * time.Millisecond)
	b.ReportMetric(float64(got.Load()-start)/float64(b.N*len(batch))*100, "%delivered")
}

// TestLinkXDPAttach checks that the XDP program leaves with the port (the
// next port can attach again), and that a port does not replace another
// program already on the interface.
func TestLinkXDPAttach(t *testing.T) {
	e := newVethEnv(t)
	for range 2 {
		p, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA, Method: LinkXDP})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA, Method: LinkXDP}); err == nil {
			t.Fatal("a second XDP port attached over the first")
		}
		// auto does not use XDP, so it opens next to it.
		q, err := OpenLink(LinkConfig{Interface: e.ifA, EncapPort: 4500, NetnsPath: e.nsA})
		if err != nil {
			t.Fatal(err)
		}
		q.Close()
		p.Close()
	}
	h, err := netns.Handle(e.nsA)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(e.ifA)
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Fatalf("an XDP program is still attached after Close: %+v", x)
	}
}
