package nic

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

func outSA(t *testing.T, s *side) *sa.SA {
	t.Helper()
	var out *sa.SA
	s.table.Snapshot().EachBundle(func(b *sa.Bundle) bool {
		if b.Dir == sa.Out {
			out = b.ESP
		}
		return true
	})
	if out == nil {
		t.Fatal("no outbound ESP SA")
	}
	return out
}

// checkTooBig verifies an ICMP fragmentation-needed / ICMPv6 packet-too-big
// answer to orig announcing mtu.
func checkTooBig(t *testing.T, msg, orig []byte, mtu int) {
	t.Helper()
	if packet.Version(orig) == 4 {
		h := packet.IPv4(msg)
		if !h.ChecksumValid() || h.Protocol() != packet.ProtoICMP || h.Src() != packet.IPv4(orig).Dst() || h.Dst() != packet.IPv4(orig).Src() {
			t.Fatalf("bad ICMP IP header % x", msg[:20])
		}
		m := msg[20:]
		if m[0] != 3 || m[1] != 4 || packet.Checksum(m, 0) != 0 {
			t.Fatalf("ICMP type %d code %d checksum ok=%v", m[0], m[1], packet.Checksum(m, 0) == 0)
		}
		if got := int(binary.BigEndian.Uint16(m[6:])); got != mtu {
			t.Fatalf("ICMP next-hop MTU %d, want %d", got, mtu)
		}
		if !bytes.HasPrefix(orig, m[8:]) || len(m[8:]) < 28 {
			t.Fatalf("ICMP does not quote the original datagram")
		}
		return
	}
	h := packet.IPv6(msg)
	if h.NextHeader() != packet.ProtoICMPv6 || h.Src() != packet.IPv6(orig).Dst() || h.Dst() != packet.IPv6(orig).Src() {
		t.Fatalf("bad ICMPv6 header % x", msg[:40])
	}
	m := msg[40:]
	if m[0] != 2 || m[1] != 0 || packet.Checksum(m, packet.PseudoHeaderSum(h.Src(), h.Dst(), packet.ProtoICMPv6, len(m))) != 0 {
		t.Fatalf("ICMPv6 type %d code %d, checksum bad", m[0], m[1])
	}
	if got := int(binary.BigEndian.Uint32(m[4:])); got != mtu {
		t.Fatalf("ICMPv6 MTU %d, want %d", got, mtu)
	}
	if !bytes.HasPrefix(orig, m[8:]) || len(msg) > minMTU6 {
		t.Fatalf("ICMPv6 does not quote the original datagram within 1280 bytes")
	}
}

func TestMTU(t *testing.T) {
	const wireMTU = 1400
	t.Run("host-mtu", func(t *testing.T) {
		a, _ := build(t, topo{alg: algGCM, wireMTU: wireMTU})
		s := outSA(t, a)
		want := wireMTU - esp.Overhead(s, wireMTU)
		if got := a.nic.HostMTU(); got != want {
			t.Fatalf("HostMTU = %d, want %d", got, want)
		}
		// Every datagram of HostMTU bytes fits the wire after protection.
		for _, df := range []bool{true, false} {
			pkt := udp(in4A, in4B, 1, 2, want-28, 0, df)
			w, h := a.stepTX(t, pkt)
			if len(w) != 1 || len(h) != 0 || len(w[0]) > wireMTU {
				t.Fatalf("df=%v: wire %d host %d", df, len(w), len(h))
			}
		}
	})

	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "v4", true: "v6"}[v6]
		t.Run("too-big-df-"+name, func(t *testing.T) {
			a, _ := build(t, topo{alg: algGCM, v6: v6, wireMTU: wireMTU})
			ha, hb := topo{v6: v6}.hosts()
			mtu := a.nic.HostMTU()
			pkt := udp(ha, hb, 1, 2, mtu+100, 0, true)
			w, h := a.stepTX(t, pkt)
			if len(w) != 0 || len(h) != 1 {
				t.Fatalf("wire %d host %d", len(w), len(h))
			}
			checkTooBig(t, h[0], pkt, mtu)
			st := a.nic.Stats()
			if st.ICMPTooBig != 1 || st.TX.Drops["SecnicFragNeeded"] != 1 {
				t.Fatalf("stats %+v", st)
			}
			if outSA(t, a).LastSeq() != 0 {
				t.Fatal("a sequence number was spent on a packet that was not sent")
			}
		})
	}

	t.Run("fragment-v4", func(t *testing.T) {
		a, b := build(t, topo{alg: algGCM, wireMTU: wireMTU})
		pkt := udp(in4A, in4B, 1, 2, 3000, 7, false)
		w, h := a.stepTX(t, pkt)
		if len(h) != 0 || len(w) != 3 {
			t.Fatalf("wire %d host %d", len(w), len(h))
		}
		for _, f := range w {
			if len(f) > wireMTU || !packet.IPv4(f).ChecksumValid() {
				t.Fatalf("bad fragment of %d bytes", len(f))
			}
		}
		// Out of order, with a duplicate of the middle one.
		got := b.stepRX(t, w[2], w[1], w[1], w[0])
		mustEqualPackets(t, got, [][]byte{pkt})
		st := b.nic.Stats()
		if st.FragmentsIn != 4 || st.Reassembled != 1 || st.RX.Drops["SecnicReasmDuplicate"] != 1 {
			t.Fatalf("stats: in %d reassembled %d drops %v", st.FragmentsIn, st.Reassembled, st.RX.Drops)
		}
		if a.nic.Stats().FragmentsOut != 3 {
			t.Fatalf("fragments out %d", a.nic.Stats().FragmentsOut)
		}
	})

	t.Run("fragment-v6-small-inner", func(t *testing.T) {
		// An IPv6 datagram of at most 1280 bytes must get through a tunnel
		// whose wire MTU is 1280: the outer IPv6 packet is fragmented.
		a, b := build(t, topo{alg: algGCM, v6: true, wireMTU: minMTU6})
		pkt := udp(in6A, in6B, 1, 2, minMTU6-48, 1, true)
		w, h := a.stepTX(t, pkt)
		if len(h) != 0 || len(w) != 2 {
			t.Fatalf("wire %d host %d", len(w), len(h))
		}
		for _, f := range w {
			if len(f) > minMTU6 || f[6] != packet.ProtoFragment {
				t.Fatalf("fragment of %d bytes, next header %d", len(f), f[6])
			}
		}
		got := b.stepRX(t, w[1], w[0])
		mustEqualPackets(t, got, [][]byte{pkt})
	})

	t.Run("fragment-v4-in-v6", func(t *testing.T) {
		a, b := build(t, topo{alg: algCBC, outer6: ptr(true), wireMTU: minMTU6})
		pkt := udp(in4A, in4B, 1, 2, 2000, 1, false)
		w, _ := a.stepTX(t, pkt)
		if len(w) != 2 {
			t.Fatalf("wire %d", len(w))
		}
		mustEqualPackets(t, b.stepRX(t, w...), [][]byte{pkt})
	})

	t.Run("bypass", func(t *testing.T) {
		a, b := build(t, topo{alg: algGCM, wireMTU: wireMTU})
		other := netip.MustParseAddr("10.9.0.1")
		big := udp(in4A, other, 1, 2, 2000, 1, true)
		w, h := a.stepTX(t, big)
		if len(w) != 0 || len(h) != 1 {
			t.Fatalf("DF: wire %d host %d", len(w), len(h))
		}
		checkTooBig(t, h[0], big, wireMTU)
		big = udp(in4A, other, 1, 2, 2000, 1, false)
		w, _ = a.stepTX(t, big)
		if len(w) != 2 || a.nic.Stats().TX.Bypassed != 1 {
			t.Fatalf("no DF: wire %d", len(w))
		}
		mustEqualPackets(t, b.stepRX(t, w...), [][]byte{big})
	})

	t.Run("icmp-rate-limit", func(t *testing.T) {
		a, _ := build(t, topo{alg: algGCM, wireMTU: wireMTU, cfg: Config{ICMPRate: 1}})
		big := udp(in4A, in4B, 1, 2, 2000, 1, true)
		_, h := a.stepTX(t, big, big, big)
		st := a.nic.Stats()
		if len(h) != 1 || st.TX.Drops["SecnicICMPRateLimited"] != 2 || st.TX.Drops["SecnicFragNeeded"] != 1 {
			t.Fatalf("host %d drops %v", len(h), st.TX.Drops)
		}
	})

	t.Run("no-icmp-for-icmp-errors", func(t *testing.T) {
		a, _ := build(t, topo{alg: algGCM, wireMTU: wireMTU})
		// An ICMP destination unreachable that is itself too big.
		msg := make([]byte, 1500)
		packet.WriteIPv4(msg, packet.IPv4Fields{TotalLen: len(msg), ID: 1, DF: true, TTL: 64, Protocol: packet.ProtoICMP, Src: in4A, Dst: in4B})
		msg[20], msg[21] = 3, 1
		binary.BigEndian.PutUint16(msg[22:], packet.Checksum(msg[20:], 0))
		w, h := a.stepTX(t, msg)
		if len(w) != 0 || len(h) != 0 || a.drops("tx", "SecnicFragNeeded") != 1 {
			t.Fatalf("wire %d host %d drops %v", len(w), len(h), a.nic.Stats().TX.Drops)
		}
	})
}

func TestFragment4Options(t *testing.T) {
	// A datagram with a copied option (0x83, loose source route) and a
	// non-copied one (0x07, record route), already a fragment at offset 800 with MF.
	opts := []byte{0x83, 7, 4, 1, 2, 3, 4, 0x07, 7, 4, 0, 0, 0, 0, 0, 0}
	hl := 20 + len(opts)
	pkt := make([]byte, hl+1000)
	packet.WriteIPv4(pkt, packet.IPv4Fields{TotalLen: len(pkt), ID: 99, TTL: 64, Protocol: packet.ProtoUDP, Src: in4A, Dst: in4B})
	pkt[0] = 0x40 | byte(hl/4)
	copy(pkt[20:], opts)
	for i := hl; i < len(pkt); i++ {
		pkt[i] = byte(i)
	}
	packet.IPv4(pkt).SetFlagsFrag(0x2000 | 100)
	packet.IPv4(pkt).UpdateChecksum()

	p := packet.NewBuf(len(pkt))
	if err := p.SetBytes(pkt); err != nil {
		t.Fatal(err)
	}
	sp := newSpares(8, 600)
	out, ok := fragment4(p, 400, sp, []*packet.Buf{p})
	if !ok || len(out) != 3 {
		t.Fatalf("ok=%v fragments %d", ok, len(out))
	}
	var data []byte
	for i, f := range out {
		b := f.Bytes()
		h := packet.IPv4(b)
		if len(b) > 400 || !h.ChecksumValid() || h.TotalLen() != len(b) {
			t.Fatalf("fragment %d: len %d checksum %v", i, len(b), h.ChecksumValid())
		}
		if !h.MoreFragments() {
			t.Fatalf("fragment %d lost MF (the original was not the last fragment)", i)
		}
		if want := 800 + len(data); h.FragOffset() != want {
			t.Fatalf("fragment %d at %d, want %d", i, h.FragOffset(), want)
		}
		wantHL := hl
		if i > 0 {
			wantHL = 28 // fixed header + the copied option, padded
			if !bytes.Equal(b[20:27], opts[:7]) {
				t.Fatalf("fragment %d lost the copied option", i)
			}
		}
		if h.HeaderLen() != wantHL {
			t.Fatalf("fragment %d header %d bytes, want %d", i, h.HeaderLen(), wantHL)
		}
		data = append(data, b[h.HeaderLen():]...)
	}
	if !bytes.Equal(data, pkt[hl:]) {
		t.Fatal("fragment data differs from the original")
	}
}
