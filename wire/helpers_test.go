package wire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
)

// The outer (wire) addresses of the two sides, as in package nic's tests.
var (
	out4A = netip.MustParseAddr("192.0.2.1")
	out4B = netip.MustParseAddr("192.0.2.2")
	out6A = netip.MustParseAddr("2001:db8::1")
	out6B = netip.MustParseAddr("2001:db8::2")
)

// udp and udpWith build UDP datagrams (package packettest).
var udp, udpWith = packettest.UDP, packettest.UDPWith

// fragments4 splits an IPv4 datagram without options into fragments of at
// most size payload bytes (a multiple of 8), each with a valid checksum.
func fragments4(pkt []byte, size int) [][]byte {
	h := packet.IPv4(pkt)
	payload := pkt[packet.IPv4MinLen:]
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		f := make([]byte, packet.IPv4MinLen+end-off)
		copy(f[packet.IPv4MinLen:], payload[off:end])
		flags := 0
		if end < len(payload) {
			flags = 0x2000 // more fragments
		}
		packet.WriteIPv4(f, packet.IPv4Fields{TotalLen: len(f), ID: 0x4242, TTL: 64, Protocol: pkt[9], Src: h.Src(), Dst: h.Dst()})
		packet.IPv4(f).SetFlagsFrag(uint16(flags | off/8))
		packet.IPv4(f).UpdateChecksum()
		out = append(out, f)
	}
	return out
}

func mustEqualPackets(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d differs:\n got % x\nwant % x", i, got[i][:min(80, len(got[i]))], want[i][:min(80, len(want[i]))])
		}
	}
}
