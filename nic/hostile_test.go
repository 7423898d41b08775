package nic

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

// hostileCase is one packet an attacker or a broken network could send,
// with what the receiving NIC must do with it: drop it and count it under
// want, or (for the few that are not drops) "delivered", "ike" (passed to
// the host as IKE) or "keepalive" (absorbed and counted).
type hostileCase struct {
	name string
	// udpEncap: the packet is sent by a NIC whose SAs use UDP
	// encapsulation; plainRX: it is received by a NIC whose SAs do not.
	udpEncap, plainRX bool
	// build returns the packets to send: the last is the hostile one; the
	// ones before it must not be dropped.
	build func(t testing.TB, a *side) [][]byte
	want  string
}

// sealed returns n packets protected by a's outbound SA (sequence 1..n).
func sealed(t testing.TB, a *side, n int) [][]byte {
	t.Helper()
	var in [][]byte
	for i := range n {
		in = append(in, udp(in4A, in4B, 1000, 2000, 64, uint32(i), false))
	}
	wire, _ := a.stepTX(t, in...)
	if len(wire) != n {
		t.Fatalf("%d packets on the wire, want %d", len(wire), n)
	}
	return wire
}

// one returns a's first protected packet changed by f (IPv4 header
// checksum recomputed unless f breaks it on purpose afterwards).
func one(f func(p []byte)) func(testing.TB, *side) [][]byte {
	return func(t testing.TB, a *side) [][]byte {
		p := bytes.Clone(sealed(t, a, 1)[0])
		f(p)
		return [][]byte{p}
	}
}

func fixSum(p []byte) { packet.IPv4(p).UpdateChecksum() }

// setUDPLen sets the UDP length of a UDP-encapsulated packet.
func setUDPLen(n int) func(p []byte) {
	return func(p []byte) { packet.UDP(p[packet.IPv4MinLen:]).SetLength(n) }
}

// espOff is where the ESP header of a's packet starts.
func espOff(t testing.TB, p []byte) int {
	l, err := packet.Locate(p, 4500)
	if err != nil {
		t.Fatal(err)
	}
	return l.Off
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "valid", build: one(func([]byte) {}), want: "delivered"},
		{name: "outer-source-spoofed", build: one(func(p []byte) { p[15] ^= 0x55; fixSum(p) }), want: "delivered"}, // documented: Linux does not check it either
		{name: "truncated-esp-header", build: func(t testing.TB, a *side) [][]byte {
			p := sealed(t, a, 1)[0]
			p = bytes.Clone(p[:espOff(t, p)+6])
			packet.IPv4(p).SetTotalLen(len(p))
			fixSum(p)
			return [][]byte{p}
		}, want: "XfrmInHdrError"},
		{name: "truncated-ciphertext", build: func(t testing.TB, a *side) [][]byte {
			p := sealed(t, a, 1)[0]
			p = bytes.Clone(p[:espOff(t, p)+8+8+3])
			packet.IPv4(p).SetTotalLen(len(p))
			fixSum(p)
			return [][]byte{p}
		}, want: "XfrmInHdrError"},
		{name: "ipv4-total-length-beyond-datagram", build: one(func(p []byte) { packet.IPv4(p).SetTotalLen(len(p) + 100); fixSum(p) }), want: "XfrmInHdrError"},
		{name: "ipv4-ihl-below-5", build: one(func(p []byte) { p[0] = 0x44; fixSum(p) }), want: "XfrmInHdrError"},
		{name: "ipv4-bad-checksum", build: one(func(p []byte) { p[8]-- }), want: "XfrmInHdrError"},
		{name: "unknown-spi", build: func(t testing.TB, a *side) [][]byte {
			p := bytes.Clone(sealed(t, a, 1)[0])
			binary.BigEndian.PutUint32(p[espOff(t, p):], 0xdeadbeef)
			return [][]byte{p}
		}, want: "XfrmInNoStates"},
		{name: "other-destination", build: one(func(p []byte) { p[19] ^= 1; fixSum(p) }), want: "XfrmInNoStates"},
		{name: "tampered-icv", build: one(func(p []byte) { p[len(p)-1] ^= 0x80 }), want: "XfrmInStateProtoError"},
		{name: "tampered-ciphertext", build: one(func(p []byte) { p[len(p)-20] ^= 1 }), want: "XfrmInStateProtoError"},
		{name: "replay", build: func(t testing.TB, a *side) [][]byte {
			w := sealed(t, a, 1)
			return [][]byte{w[0], bytes.Clone(w[0])}
		}, want: "XfrmInStateSeqError"},
		{name: "left-of-window", build: func(t testing.TB, a *side) [][]byte {
			w := sealed(t, a, 70)
			return [][]byte{w[69], w[0]}
		}, want: "XfrmInStateSeqError"},
		{name: "window-edge-accepted", build: func(t testing.TB, a *side) [][]byte {
			w := sealed(t, a, 70)
			return [][]byte{w[69], w[69-63]} // seq 7 with top 70: the last slot of a 64-packet window
		}, want: "delivered"},
		{name: "reassembly-overlap", build: func(testing.TB, *side) [][]byte {
			return [][]byte{frag4(5, 0, pattern(64), true), frag4(5, 32, pattern(64), true)}
		}, want: "SecnicReasmOverlap"},
		{name: "reassembly-duplicate", build: func(testing.TB, *side) [][]byte {
			return [][]byte{frag4(6, 0, pattern(64), true), frag4(6, 0, pattern(64), true)}
		}, want: "SecnicReasmDuplicate"},
		{name: "reassembly-unaligned", build: func(testing.TB, *side) [][]byte {
			return [][]byte{frag4(7, 0, pattern(61), true)}
		}, want: "SecnicReasmInvalid"},
		{name: "reassembly-beyond-64k", build: func(testing.TB, *side) [][]byte {
			return [][]byte{frag4(8, 65528, pattern(16), false)}
		}, want: "SecnicReasmInvalid"},
		{name: "plain-bad-checksum", build: func(testing.TB, *side) [][]byte {
			p := udp(out4A, out4B, 1, 2, 40, 1, false)
			p[8]--
			return [][]byte{p}
		}, want: "XfrmInHdrError"},
		{name: "plain-where-protection-required", build: func(testing.TB, *side) [][]byte {
			return [][]byte{udp(in4A, in4B, 1, 2, 40, 1, false)}
		}, want: "XfrmInNoPols"},
		{name: "udp-length-0", udpEncap: true, build: one(setUDPLen(0)), want: "SecnicUDPLengthError"},
		{name: "udp-length-8", udpEncap: true, build: one(setUDPLen(8)), want: "SecnicUDPLengthError"},
		{name: "udp-length-9", udpEncap: true, build: one(setUDPLen(9)), want: "SecnicUDPLengthError"},
		{name: "udp-length-100", udpEncap: true, build: one(setUDPLen(100)), want: "SecnicUDPLengthError"},
		{name: "udp-length-65535", udpEncap: true, build: one(setUDPLen(65535)), want: "SecnicUDPLengthError"},
		{name: "udp-encap-valid", udpEncap: true, build: one(func([]byte) {}), want: "delivered"},
		{name: "udp-encap-for-sa-without-it", udpEncap: true, plainRX: true, build: one(func([]byte) {}), want: "XfrmInStateMismatch"},
		{name: "esp-without-udp-for-sa-with-it", plainRX: true, build: func(t testing.TB, a *side) [][]byte {
			return [][]byte{bytes.Clone(sealed(t, a, 1)[0])}
		}, want: "XfrmInStateMismatch"},
		{name: "ike-non-esp-marker", udpEncap: true, build: func(testing.TB, *side) [][]byte {
			return [][]byte{udpWith(out4A, out4B, 4500, 4500, []byte{0, 0, 0, 0, 0x21, 0x20, 0x22, 0x08}, false)}
		}, want: "ike"},
		{name: "nat-keepalive", udpEncap: true, build: func(testing.TB, *side) [][]byte {
			return [][]byte{udpWith(out4A, out4B, 4500, 4500, []byte{0xff}, false)}
		}, want: "keepalive"},
	}
}

// TestHostilePackets sends each hostile packet to a fresh NIC and checks
// the one counter it must move: every case moves exactly its counter by
// one, and delivers nothing unless it is "delivered".
func TestHostilePackets(t *testing.T) {
	for _, hc := range hostileCases() {
		t.Run(hc.name, func(t *testing.T) {
			a, b := build(t, topo{alg: algGCM, encap: hc.udpEncap})
			if hc.plainRX {
				// The receiver's SAs differ from the sender's in udp_encap only.
				_, b = build(t, topo{alg: algGCM, encap: !hc.udpEncap})
			}
			pkts := hc.build(t, a)
			b.stepRX(t, pkts[:len(pkts)-1]...)
			if d := b.nic.Stats().RX.Dropped; d != 0 {
				t.Fatalf("the %d packets before the hostile one were dropped: %v", len(pkts)-1, b.nic.Stats().RX.Drops)
			}
			before := b.nic.Stats()
			got := b.stepRX(t, pkts[len(pkts)-1])
			after := b.nic.Stats()
			switch hc.want {
			case "delivered":
				if len(got) != 1 || after.RX.Dropped != before.RX.Dropped {
					t.Fatalf("delivered %d, drops %v", len(got), after.RX.Drops)
				}
				return
			case "ike":
				if len(got) != 1 || after.IKEPassthrough != before.IKEPassthrough+1 {
					t.Fatalf("IKE: delivered %d, passthrough %d", len(got), after.IKEPassthrough)
				}
				return
			case "keepalive":
				if len(got) != 0 || after.Keepalives != before.Keepalives+1 {
					t.Fatalf("keepalive: delivered %d, keepalives %d", len(got), after.Keepalives)
				}
				return
			}
			if len(got) != 0 {
				t.Fatalf("a hostile packet was delivered")
			}
			if d := after.RX.Drops[hc.want] - before.RX.Drops[hc.want]; d != 1 || after.RX.Dropped-before.RX.Dropped != 1 {
				t.Fatalf("%s moved by %d and all drops by %d, want 1 and 1: %v", hc.want, d, after.RX.Dropped-before.RX.Dropped, after.RX.Drops)
			}
		})
	}
}
