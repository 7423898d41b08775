package wire

import (
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
)

// The outer (wire) addresses of the two sides, as in package nic's tests.
var out4A, out4B, out6A, out6B = packettest.EndA4, packettest.EndB4, packettest.EndA6, packettest.EndB6

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

// mustEqualPackets is packettest.MustEqualPackets.
var mustEqualPackets = packettest.MustEqualPackets
