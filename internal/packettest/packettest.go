// Package packettest builds packets for tests: datagrams with valid
// headers and checksums that the datapath's tests feed to ports and NICs.
package packettest

import (
	"encoding/binary"
	"net/netip"

	"github.com/secnic/secnic/internal/packet"
)

// UDP builds an IPv4 or IPv6 UDP datagram with a payload of n bytes (a
// recognisable pattern that starts with seq).
func UDP(src, dst netip.Addr, sport, dport uint16, n int, seq uint32, df bool) []byte {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*13 + int(seq))
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(payload, seq)
	}
	return UDPWith(src, dst, sport, dport, payload, df)
}

// UDPWith builds an IPv4 or IPv6 UDP datagram carrying payload, with DF set
// as asked (IPv4), IP ID 0x1234, TTL or hop limit 64 and a valid checksum.
func UDPWith(src, dst netip.Addr, sport, dport uint16, payload []byte, df bool) []byte {
	hl := packet.IPv4MinLen
	if src.Is6() {
		hl = packet.IPv6Len
	}
	b := make([]byte, hl+packet.UDPLen+len(payload))
	u := packet.UDP(b[hl:])
	u.SetSrcPort(sport)
	u.SetDstPort(dport)
	u.SetLength(packet.UDPLen + len(payload))
	copy(b[hl+packet.UDPLen:], payload)
	if src.Is4() {
		packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: 0x1234, DF: df, TTL: 64, Protocol: packet.ProtoUDP, Src: src, Dst: dst})
	} else {
		packet.WriteIPv6(b, packet.IPv6Fields{PayloadLen: len(b) - hl, NextHeader: packet.ProtoUDP, HopLimit: 64, Src: src, Dst: dst})
	}
	c := packet.TransportChecksum(src, dst, packet.ProtoUDP, b[hl:])
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
	return b
}
