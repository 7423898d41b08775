package nic

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

func roundTripTopos() []topo {
	return []topo{
		{mode: "tunnel", alg: algGCM},
		{mode: "tunnel", v6: true, alg: algGCM},
		{mode: "tunnel", outer6: ptr(true), alg: algCBC},
		{mode: "tunnel", v6: true, outer6: ptr(false), alg: algCBC},
		{mode: "tunnel", alg: algChaCha},
		{mode: "tunnel", alg: algNull},
		{mode: "transport", alg: algGCM},
		{mode: "transport", v6: true, alg: algCBC},
		{mode: "tunnel", alg: algGCM, encap: true},
		{mode: "transport", alg: algGCM, encap: true},
		{mode: "tunnel", ah: "hmac-sha256-128"},
		{mode: "transport", ah: "hmac-sha1-96"},
		{mode: "transport", v6: true, ah: "aes-gmac-128"},
		{mode: "transport", alg: algGCM, ah: "hmac-sha256-128"},
		{mode: "tunnel", v6: true, alg: algCBC, ah: "hmac-sha512-256"},
	}
}

// TestRoundTrip sends packets each way between two NICs and checks the
// wire format (SPI, sequence numbers, encapsulation, outer addresses) and
// that the receiver delivers exactly what the sender's host sent.
func TestRoundTrip(t *testing.T) {
	for _, tp := range roundTripTopos() {
		t.Run(tp.String(), func(t *testing.T) {
			a, b := build(t, tp)
			ha, hb := tp.hosts()
			ea, eb := tp.ends()
			for _, dir := range []struct {
				name         string
				from, to     *side
				src, dst     netip.Addr
				osrc, odst   netip.Addr
				spi          uint32
				outer        bool
				hostMTU, num int
			}{
				{name: "a->b", from: a, to: b, src: ha, dst: hb, osrc: ea, odst: eb, spi: 0x1000},
				{name: "b->a", from: b, to: a, src: hb, dst: ha, osrc: eb, odst: ea, spi: 0x2000},
			} {
				hdr := packet.IPv4MinLen + packet.UDPLen
				if tp.v6 || (tp.mode == "transport" && tp.outerV6()) {
					hdr = packet.IPv6Len + packet.UDPLen
				}
				maxPayload := dir.from.nic.HostMTU() - hdr
				var pkts [][]byte
				for i, n := range []int{0, 1, 17, 100, 1000, maxPayload} {
					pkts = append(pkts, udp(dir.src, dir.dst, 4000, 5000, n, uint32(i), true))
				}
				wire, host := dir.from.stepTX(t, pkts...)
				if len(host) != 0 {
					t.Fatalf("%s: %d packets came back to the host", dir.name, len(host))
				}
				if len(wire) != len(pkts) {
					t.Fatalf("%s: %d packets on the wire, want %d (tx drops %v)", dir.name, len(wire), len(pkts), dir.from.nic.Stats().TX.Drops)
				}
				wantSPI := dir.spi
				if tp.ah != "" {
					wantSPI++ // AH is outermost
				}
				for i, w := range wire {
					if len(w) > dir.from.nic.WireMTU() {
						t.Fatalf("%s: packet %d is %d bytes, over the wire MTU %d", dir.name, i, len(w), dir.from.nic.WireMTU())
					}
					loc, err := packet.Locate(w, 4500)
					if err != nil {
						t.Fatalf("%s: wire packet %d: %v", dir.name, i, err)
					}
					spi, seq := espSPI(t, w)
					if spi != wantSPI || seq != uint32(i+1) {
						t.Errorf("%s: packet %d has SPI %#x seq %d, want %#x seq %d", dir.name, i, spi, seq, wantSPI, i+1)
					}
					if tp.ah != "" && tp.alg.enc != "" && (loc.IPsec != packet.ProtoAH || w[loc.Off] != packet.ProtoESP) {
						t.Errorf("%s: AH+ESP packet %d is not IP|AH|ESP (outer protocol %d, AH next header %d)", dir.name, i, loc.IPsec, w[loc.Off])
					}
					if loc.UDP != tp.encap {
						t.Errorf("%s: packet %d UDP-encapsulated = %v, want %v", dir.name, i, loc.UDP, tp.encap)
					}
					if loc.Src != dir.osrc || loc.Dst != dir.odst {
						t.Errorf("%s: outer %v -> %v, want %v -> %v", dir.name, loc.Src, loc.Dst, dir.osrc, dir.odst)
					}
					if bytes.Contains(w, pkts[i][len(pkts[i])-min(16, len(pkts[i])-hdr):]) && tp.alg.enc != "" && tp.alg.enc != "null" && len(pkts[i])-hdr >= 16 {
						t.Errorf("%s: packet %d payload visible on the wire", dir.name, i)
					}
				}
				got := dir.to.stepRX(t, wire...)
				mustEqualPackets(t, got, pkts)
				if st := dir.to.nic.Stats(); st.RX.Protected < uint64(len(pkts)) || st.RX.Dropped != 0 {
					t.Errorf("%s: receiver stats %+v", dir.name, st.RX)
				}
			}
			// Per-SA counters: A's outbound SAs and B's inbound SAs saw 6 packets.
			for _, s := range []*side{a, b} {
				for _, x := range s.nic.Stats().SAs {
					if x.Packets != 6 {
						t.Errorf("%s SA %s %s: %d packets, want 6", s.nic.Name(), x.SPI, x.Dir, x.Packets)
					}
				}
			}
		})
	}
}

// TestPolicies checks bypass, discard and protect outbound and the
// handling of unprotected packets inbound.
func TestPolicies(t *testing.T) {
	other4 := netip.MustParseAddr("10.9.0.1")
	blocked := netip.MustParseAddr("10.3.0.1")
	extraA := []saspec.PolicySpec{
		{Name: "block", Dir: "out", Dst: "10.3.0.0/16", Action: "discard", Priority: 10},
		{Name: "pass-dns", Dir: "out", Src: "10.1.0.0/16", Dst: "10.2.0.0/16", Proto: "udp", DstPort: 53, Action: "bypass", Priority: 10},
	}
	extraB := []saspec.PolicySpec{
		{Name: "no-from-4", Dir: "in", Src: "10.4.0.0/16", Action: "discard", Priority: 10},
		{Name: "pass-dns", Dir: "in", Src: "10.1.0.0/16", Dst: "10.2.0.0/16", Proto: "udp", DstPort: 53, Action: "bypass", Priority: 10},
	}
	tests := []struct {
		name     string
		tp       topo
		pkt      []byte
		wantWire int    // packets on A's wire
		plain    bool   // the wire packet is the host packet unchanged
		txDrop   string // A's tx drop counter that must be 1
		rxHost   int    // packets B delivers when given A's wire output
		rxDrop   string
	}{
		{name: "default-bypass", tp: topo{}, pkt: udp(in4A, other4, 1, 2, 10, 0, false), wantWire: 1, plain: true, rxHost: 1},
		{name: "default-discard-out", tp: topo{defOut: saspec.Discard}, pkt: udp(in4A, other4, 1, 2, 10, 0, false), txDrop: "XfrmOutPolBlock"},
		{name: "discard-policy", tp: topo{extraA: extraA}, pkt: udp(in4A, blocked, 1, 2, 10, 0, false), txDrop: "XfrmOutPolBlock"},
		{name: "bypass-policy-beats-protect", tp: topo{extraA: extraA, extraB: extraB}, pkt: udp(in4A, in4B, 1, 53, 10, 0, false), wantWire: 1, plain: true, rxHost: 1},
		{name: "protect", tp: topo{}, pkt: udp(in4A, in4B, 1, 2, 10, 0, false), wantWire: 1, rxHost: 1},
		{name: "default-discard-in", tp: topo{defIn: saspec.Discard}, pkt: udp(in4A, other4, 1, 2, 10, 0, false), wantWire: 1, plain: true, rxDrop: "XfrmInPolBlock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.tp.alg = algGCM
			a, b := build(t, tc.tp)
			wire, _ := a.stepTX(t, tc.pkt)
			if len(wire) != tc.wantWire {
				t.Fatalf("%d packets on the wire, want %d", len(wire), tc.wantWire)
			}
			if tc.txDrop != "" {
				if got := a.drops("tx", tc.txDrop); got != 1 {
					t.Fatalf("tx drop %s = %d, want 1 (%v)", tc.txDrop, got, a.nic.Stats().TX.Drops)
				}
				return
			}
			if tc.plain && !bytes.Equal(wire[0], tc.pkt) {
				t.Fatalf("bypassed packet changed on the wire")
			}
			if !tc.plain {
				espSPI(t, wire[0])
			}
			got := b.stepRX(t, wire...)
			if len(got) != tc.rxHost {
				t.Fatalf("B delivered %d packets, want %d (rx drops %v)", len(got), tc.rxHost, b.nic.Stats().RX.Drops)
			}
			if tc.rxDrop != "" && b.drops("rx", tc.rxDrop) != 1 {
				t.Fatalf("rx drop %s = %d, want 1 (%v)", tc.rxDrop, b.drops("rx", tc.rxDrop), b.nic.Stats().RX.Drops)
			}
			if tc.rxHost == 1 && !bytes.Equal(got[0], tc.pkt) {
				t.Fatalf("delivered packet differs")
			}
		})
	}

	// Unprotected packets inbound.
	t.Run("inbound-plain", func(t *testing.T) {
		_, b := build(t, topo{alg: algGCM, extraB: extraB})
		for _, tc := range []struct {
			name    string
			pkt     []byte
			deliver bool
			drop    string
		}{
			{"protected-traffic-in-clear", udp(in4A, in4B, 1, 2, 10, 0, false), false, "XfrmInNoPols"},
			{"discard-policy", udp(netip.MustParseAddr("10.4.0.1"), in4B, 1, 2, 10, 0, false), false, "XfrmInPolBlock"},
			{"bypass-policy", udp(in4A, in4B, 1, 53, 10, 0, false), true, ""},
			{"no-policy", udp(other4, in4B, 1, 2, 10, 0, false), true, ""},
		} {
			before := b.drops("rx", tc.drop)
			got := b.stepRX(t, tc.pkt)
			if (len(got) == 1) != tc.deliver {
				t.Errorf("%s: delivered %d, want deliver=%v", tc.name, len(got), tc.deliver)
			}
			if tc.drop != "" && b.drops("rx", tc.drop) != before+1 {
				t.Errorf("%s: %s did not count", tc.name, tc.drop)
			}
		}
	})

	// Protect policy whose bundle is gone: XfrmOutNoStates.
	t.Run("protect-without-sa", func(t *testing.T) {
		a, _ := build(t, topo{alg: algGCM})
		h, err := a.table.Resolve("out")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.table.Delete(h); err != nil {
			t.Fatal(err)
		}
		wire, _ := a.stepTX(t, udp(in4A, in4B, 1, 2, 10, 0, false))
		if len(wire) != 0 || a.drops("tx", "XfrmOutNoStates") != 1 {
			t.Fatalf("wire %d, drops %v", len(wire), a.nic.Stats().TX.Drops)
		}
	})
}

// TestInjected feeds the receiver packets an attacker or a broken network
// could produce and checks each is dropped and counted under its reason.
func TestInjected(t *testing.T) {
	a, b := build(t, topo{alg: algGCM, inSrcA: "10.2.0.0/24"})
	wire, _ := a.stepTX(t, udp(in4A, in4B, 1, 2, 200, 1, false), udp(in4A, in4B, 1, 2, 200, 2, false))
	if len(wire) != 2 {
		t.Fatalf("wire %d", len(wire))
	}
	loc, err := packet.Locate(wire[0], 4500)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func([]byte)) []byte {
		c := bytes.Clone(wire[0])
		f(c)
		return c
	}
	tests := []struct {
		name string
		pkt  []byte
		drop string
	}{
		{"unknown-spi", mod(func(p []byte) { binary.BigEndian.PutUint32(p[loc.Off:], 0xdead) }), "XfrmInNoStates"},
		{"tampered-payload", mod(func(p []byte) { p[len(p)-30] ^= 1 }), "XfrmInStateProtoError"},
		{"tampered-icv", mod(func(p []byte) { p[len(p)-1] ^= 0x80 }), "XfrmInStateProtoError"},
		{"truncated", mod(func(p []byte) {})[:loc.Off+6], "XfrmInHdrError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := tc.pkt
			if tc.name == "truncated" {
				pkt = bytes.Clone(pkt)
				packet.IPv4(pkt).SetTotalLen(len(pkt))
				packet.IPv4(pkt).UpdateChecksum()
			}
			before := b.drops("rx", tc.drop)
			if got := b.stepRX(t, pkt); len(got) != 0 {
				t.Fatalf("delivered %d packets", len(got))
			}
			if b.drops("rx", tc.drop) != before+1 {
				t.Fatalf("%s = %d, want %d (%v)", tc.drop, b.drops("rx", tc.drop), before+1, b.nic.Stats().RX.Drops)
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		if got := b.stepRX(t, wire[1], wire[0]); len(got) != 2 {
			t.Fatalf("first delivery: %d packets (%v)", len(got), b.nic.Stats().RX.Drops)
		}
		if got := b.stepRX(t, wire[0], wire[1]); len(got) != 0 {
			t.Fatalf("replays delivered: %d", len(got))
		}
		if n := b.drops("rx", "XfrmInStateSeqError"); n != 2 {
			t.Fatalf("XfrmInStateSeqError = %d, want 2", n)
		}
		for _, x := range b.nic.Stats().SAs {
			if x.Dir == "in" && x.Drops["XfrmInStateSeqError"] != 2 {
				t.Fatalf("SA counters %+v", x)
			}
		}
	})
	t.Run("selector-mismatch", func(t *testing.T) {
		// B protects 10.2.0.0/16 -> 10.1.0.0/16, but A accepts only
		// 10.2.0.0/24 through that SA (RFC 4301 5.2).
		w, _ := b.stepTX(t, udp(netip.MustParseAddr("10.2.5.1"), in4A, 1, 2, 50, 0, false), udp(in4B, in4A, 1, 2, 50, 1, false))
		got := a.stepRX(t, w...)
		if len(got) != 1 || a.drops("rx", "XfrmInTmplMismatch") != 1 {
			t.Fatalf("delivered %d, drops %v", len(got), a.nic.Stats().RX.Drops)
		}
	})
	t.Run("wrong-bundle", func(t *testing.T) {
		// A valid packet of A's outbound SA looped back to A: A has no inbound SA 0x1000.
		w, _ := a.stepTX(t, udp(in4A, in4B, 1, 2, 50, 0, false))
		before := a.drops("rx", "XfrmInNoStates")
		if got := a.stepRX(t, w...); len(got) != 0 || a.drops("rx", "XfrmInNoStates") != before+1 {
			t.Fatalf("delivered %d, drops %v", len(got), a.nic.Stats().RX.Drops)
		}
	})
}

// TestNATT checks RFC 3948 traffic on the encapsulation port: IKE with the
// non-ESP marker goes to the host untouched, keepalives are absorbed.
func TestNATT(t *testing.T) {
	ike := udpWith(out4A, out4B, 4500, 4500, append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{0x21}, 40)...), false)
	keepalive := udpWith(out4A, out4B, 4500, 4500, []byte{0xff}, false)
	t.Run("enabled", func(t *testing.T) {
		_, b := build(t, topo{alg: algGCM, encap: true})
		got := b.stepRX(t, ike, keepalive)
		mustEqualPackets(t, got, [][]byte{ike})
		st := b.nic.Stats()
		if st.IKEPassthrough != 1 || st.Keepalives != 1 || st.RX.Dropped != 0 {
			t.Fatalf("stats: ike %d keepalives %d drops %v", st.IKEPassthrough, st.Keepalives, st.RX.Drops)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		_, b := build(t, topo{alg: algGCM, cfg: Config{EncapPort: -1}})
		got := b.stepRX(t, ike, keepalive)
		mustEqualPackets(t, got, [][]byte{ike, keepalive}) // ordinary UDP, bypassed
		if st := b.nic.Stats(); st.Keepalives != 0 || st.IKEPassthrough != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestTransportOverTunnel applies two bundles to one packet: transport
// (innermost) then tunnel, and removes both on the other side.
func TestTransportOverTunnel(t *testing.T) {
	mk := func(me, peer netip.Addr, seedOut, seedIn byte, spiOut, spiIn uint32) *sadb.Table {
		tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		hostMe, hostPeer := in4A, in4B
		if me == out4B {
			hostMe, hostPeer = in4B, in4A
		}
		specs := []saspec.BundleSpec{
			{Name: "tr-out", Dir: "out", Mode: "transport", Src: hostMe.String(), Dst: hostPeer.String(), ESP: espSpec(algCBC, spiOut, seedOut)},
			{Name: "tu-out", Dir: "out", Mode: "tunnel", Src: me.String(), Dst: peer.String(), ESP: espSpec(algGCM, spiOut+1, seedOut+10)},
			{Name: "tr-in", Dir: "in", Mode: "transport", Src: hostPeer.String(), Dst: hostMe.String(), ESP: espSpec(algCBC, spiIn, seedIn)},
			{Name: "tu-in", Dir: "in", Mode: "tunnel", Src: peer.String(), Dst: me.String(), ESP: espSpec(algGCM, spiIn+1, seedIn+10)},
		}
		for _, s := range specs {
			if _, err := tb.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []saspec.PolicySpec{
			{Dir: "out", Src: hostMe.String(), Dst: hostPeer.String(), Bundles: []saspec.Ref{"tr-out", "tu-out"}},
			{Dir: "in", Src: hostPeer.String(), Dst: hostMe.String(), Bundles: []saspec.Ref{"tr-in", "tu-in"}},
		} {
			if _, err := tb.AddPolicy(p); err != nil {
				t.Fatal(err)
			}
		}
		return tb
	}
	ta := mk(out4A, out4B, 1, 2, 0x100, 0x200)
	tb := mk(out4B, out4A, 2, 1, 0x200, 0x100)
	a, _ := build(t, topo{alg: algGCM})
	b, _ := build(t, topo{alg: algGCM})
	a.nic.table, b.nic.table = ta, tb
	pkt := udp(in4A, in4B, 7, 8, 300, 9, false)
	wire, _ := a.stepTX(t, pkt)
	if len(wire) != 1 {
		t.Fatalf("wire %d, drops %v", len(wire), a.nic.Stats().TX.Drops)
	}
	if spi, _ := espSPI(t, wire[0]); spi != 0x101 {
		t.Fatalf("outer SPI %#x, want the tunnel SA 0x101", spi)
	}
	got := b.stepRX(t, wire...)
	mustEqualPackets(t, got, [][]byte{pkt})

	// Without the transport layer the inbound policy does not match: a
	// packet through the tunnel only is refused.
	if _, err := ta.AddPolicy(saspec.PolicySpec{Dir: "out", Src: in4A.String(), Dst: "10.2.0.7", Bundles: []saspec.Ref{"tu-out"}, Priority: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.AddPolicy(saspec.PolicySpec{Dir: "in", Src: in4A.String(), Dst: "10.2.0.7", Bundles: []saspec.Ref{"tr-in"}, Priority: -1}); err != nil {
		t.Fatal(err)
	}
	wire, _ = a.stepTX(t, udp(in4A, netip.MustParseAddr("10.2.0.7"), 7, 8, 30, 1, false))
	if got := b.stepRX(t, wire...); len(got) != 0 || b.drops("rx", "XfrmInTmplMismatch") != 1 {
		t.Fatalf("tunnel-only packet: delivered %d, drops %v", len(got), b.nic.Stats().RX.Drops)
	}
}
