package sa

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

func ipv4Pkt(proto uint8, frag uint16, l4 []byte) []byte {
	b := make([]byte, 20+len(l4))
	packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: 1, TTL: 64, Protocol: proto, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")})
	binary.BigEndian.PutUint16(b[6:], frag)
	packet.IPv4(b).UpdateChecksum()
	copy(b[20:], l4)
	return b
}

func ipv6Pkt(next uint8, ext []byte, l4 []byte) []byte {
	b := make([]byte, 40+len(ext)+len(l4))
	packet.WriteIPv6(b, packet.IPv6Fields{PayloadLen: len(ext) + len(l4), NextHeader: next, HopLimit: 64, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2")})
	copy(b[40:], ext)
	copy(b[40+len(ext):], l4)
	return b
}

func TestFlowOf(t *testing.T) {
	ports := []byte{0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 0} // 12345 -> 443
	v4a, v4b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	fragHdr := func(next uint8, off uint16) []byte {
		h := []byte{next, 0, 0, 0, 0, 0, 0, 1}
		binary.BigEndian.PutUint16(h[2:], off<<3)
		return h
	}
	hbh := []byte{packet.ProtoTCP, 0, 1, 4, 0, 0, 0, 0}
	cases := []struct {
		name string
		pkt  []byte
		want Flow
		ok   bool
	}{
		{"v4 tcp", ipv4Pkt(6, 0, ports), Flow{v4a, v4b, 6, 12345, 443}, true},
		{"v4 udp", ipv4Pkt(17, 0, ports), Flow{v4a, v4b, 17, 12345, 443}, true},
		{"v4 sctp", ipv4Pkt(132, 0, ports), Flow{v4a, v4b, 132, 12345, 443}, true},
		{"v4 icmp echo", ipv4Pkt(1, 0, []byte{8, 0, 0, 0}), Flow{v4a, v4b, 1, 8, 0}, true},
		{"v4 gre no ports", ipv4Pkt(47, 0, ports), Flow{v4a, v4b, 47, 0, 0}, true},
		{"v4 first fragment", ipv4Pkt(6, 0x2000, ports), Flow{v4a, v4b, 6, 12345, 443}, true},
		{"v4 later fragment", ipv4Pkt(6, 0x0010, ports), Flow{v4a, v4b, 6, 0, 0}, true},
		{"v4 truncated tcp", ipv4Pkt(6, 0, ports[:3]), Flow{}, false},
		{"v6 udp", ipv6Pkt(17, nil, ports), Flow{v6a, v6b, 17, 12345, 443}, true},
		{"v6 hop-by-hop then tcp", ipv6Pkt(0, hbh, ports), Flow{v6a, v6b, 6, 12345, 443}, true},
		{"v6 icmpv6", ipv6Pkt(58, nil, []byte{128, 0, 0, 0}), Flow{v6a, v6b, 58, 128, 0}, true},
		{"v6 first fragment", ipv6Pkt(44, fragHdr(17, 0), ports), Flow{v6a, v6b, 17, 12345, 443}, true},
		{"v6 later fragment", ipv6Pkt(44, fragHdr(17, 100), ports), Flow{v6a, v6b, 17, 0, 0}, true},
		{"empty", nil, Flow{}, false},
		{"garbage", []byte{0x45, 1, 2}, Flow{}, false},
		{"v6 short", ipv6Pkt(17, nil, nil)[:30], Flow{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := FlowOf(c.pkt)
			if ok != c.ok || got != c.want {
				t.Fatalf("FlowOf = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
			if loc, err := packet.Locate(c.pkt, 0); err == nil {
				if got, ok := FlowOfLoc(c.pkt, &loc); ok != c.ok || got != c.want {
					t.Fatalf("FlowOfLoc = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
				}
			}
		})
	}
	p := ipv4Pkt(6, 0, ports)
	if allocs := testing.AllocsPerRun(1000, func() { FlowOf(p) }); allocs != 0 {
		t.Errorf("FlowOf allocates %.1f times per call", allocs)
	}
	loc, err := packet.Locate(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(1000, func() { FlowOfLoc(p, &loc) }); allocs != 0 {
		t.Errorf("FlowOfLoc allocates %.1f times per call", allocs)
	}
}

func FuzzFlowOf(f *testing.F) {
	f.Add(ipv4Pkt(6, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8}))
	f.Add(ipv6Pkt(44, []byte{17, 0, 0, 8, 0, 0, 0, 1}, []byte{1, 2, 3, 4}))
	f.Add(ipv6Pkt(0, []byte{6, 0, 1, 4, 0, 0, 0, 0}, []byte{1, 2, 3, 4}))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		fl, ok := FlowOf(pkt)
		// FlowOfLoc of what Locate found (with or without an encapsulation
		// port), or of nothing, is FlowOf.
		for _, port := range []uint16{0, 4500} {
			if loc, err := packet.Locate(pkt, port); err == nil {
				if fl2, ok2 := FlowOfLoc(pkt, &loc); fl2 != fl || ok2 != ok {
					t.Fatalf("FlowOfLoc (port %d) = %+v, %v; FlowOf = %+v, %v", port, fl2, ok2, fl, ok)
				}
			}
		}
		if fl2, ok2 := FlowOfLoc(pkt, &packet.Loc{}); fl2 != fl || ok2 != ok {
			t.Fatalf("FlowOfLoc (zero Loc) = %+v, %v; FlowOf = %+v, %v", fl2, ok2, fl, ok)
		}
		if !ok {
			if fl != (Flow{}) {
				t.Fatalf("failed FlowOf returned %+v", fl)
			}
			return
		}
		if !fl.Src.IsValid() || !fl.Dst.IsValid() || fl.Src.Is4() != fl.Dst.Is4() {
			t.Fatalf("flow with bad addresses: %+v", fl)
		}
		if !HasPorts(fl.Proto) && (fl.SrcPort != 0 || fl.DstPort != 0) {
			t.Fatalf("ports for protocol %d: %+v", fl.Proto, fl)
		}
	})
}

func BenchmarkFlowOfLoc(b *testing.B) {
	p := ipv4Pkt(6, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	loc, err := packet.Locate(p, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := FlowOfLoc(p, &loc); !ok {
			b.Fatal("bad packet")
		}
	}
}

func BenchmarkFlowOf(b *testing.B) {
	p := ipv4Pkt(6, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := FlowOf(p); !ok {
			b.Fatal("bad packet")
		}
	}
}
