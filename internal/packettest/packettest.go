// Package packettest holds the packet fixtures of the tests: datagrams
// with valid headers and checksums that the datapath's tests feed to SAs,
// bundles, ports and NICs, the addresses they use, random keys, buffers,
// and capture files (pcap.go).
package packettest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

// The addresses of the two sides A and B the tests use: the SA endpoints
// (tunnel outer addresses, transport-mode hosts) and the inner hosts
// behind them (side A's network is 10.1/16 and fd00:1::/48, side B's
// 10.2/16 and fd00:2::/48).
var (
	EndA4  = netip.MustParseAddr("192.0.2.1")
	EndB4  = netip.MustParseAddr("192.0.2.2")
	EndA6  = netip.MustParseAddr("2001:db8::1")
	EndB6  = netip.MustParseAddr("2001:db8::2")
	HostA4 = netip.MustParseAddr("10.1.0.1")
	HostB4 = netip.MustParseAddr("10.2.0.1")
	HostA6 = netip.MustParseAddr("fd00:1::1")
	HostB6 = netip.MustParseAddr("fd00:2::1")
)

// Fields describes a UDP datagram for Build.
type Fields struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Payload          []byte
	// TOS is the IPv4 TOS or the IPv6 traffic class (DSCP and ECN).
	TOS uint8
	// ID is the IPv4 identification; DF the IPv4 don't-fragment flag.
	ID uint16
	DF bool
	// FlowLabel is the IPv6 flow label.
	FlowLabel uint32
}

// Build returns the IPv4 or IPv6 (by Src) UDP datagram f describes, with
// TTL or hop limit 64 and a valid UDP checksum.
func (f Fields) Build() []byte {
	hl := packet.IPv4MinLen
	if f.Src.Is6() {
		hl = packet.IPv6Len
	}
	b := make([]byte, hl+packet.UDPLen+len(f.Payload))
	u := packet.UDP(b[hl:])
	u.SetSrcPort(f.SrcPort)
	u.SetDstPort(f.DstPort)
	u.SetLength(packet.UDPLen + len(f.Payload))
	copy(b[hl+packet.UDPLen:], f.Payload)
	if f.Src.Is4() {
		packet.WriteIPv4(b, packet.IPv4Fields{TOS: f.TOS, TotalLen: len(b), ID: f.ID, DF: f.DF, TTL: 64, Protocol: packet.ProtoUDP, Src: f.Src, Dst: f.Dst})
	} else {
		packet.WriteIPv6(b, packet.IPv6Fields{TrafficClass: f.TOS, PayloadLen: len(b) - hl, NextHeader: packet.ProtoUDP, HopLimit: 64, Src: f.Src, Dst: f.Dst})
		binary.BigEndian.PutUint32(b, binary.BigEndian.Uint32(b)|f.FlowLabel&0xfffff)
	}
	u.SetChecksum(ChecksumOrFFFF(packet.TransportChecksum(f.Src, f.Dst, packet.ProtoUDP, b[hl:])))
	return b
}

// Pattern returns n bytes, byte i being i*mul+add: a payload a test can
// tell from its neighbours'.
func Pattern(n, mul, add int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*mul + add)
	}
	return b
}

// Datagram builds the datagram the esp, ah and bundle tests put through
// their SAs: UDP from port 12345 to 5201 carrying n bytes of Pattern(n, 7,
// 3), DSCP/ECN 0x28 (so that the tests see it copied to the outer header),
// IPv4 ID 77 with DF, TTL or hop limit 64, a valid checksum.
func Datagram(src, dst netip.Addr, n int) []byte {
	return Fields{Src: src, Dst: dst, SrcPort: 12345, DstPort: 5201, Payload: Pattern(n, 7, 3), TOS: 0x28, ID: 77, DF: true}.Build()
}

// ChecksumOrFFFF returns c, or 0xffff for 0: a UDP checksum that computes
// to zero is sent as all ones (RFC 768), zero meaning none.
func ChecksumOrFFFF(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// RandKey returns n random bytes, a fresh key.
func RandKey(n int) []byte {
	k := make([]byte, n)
	rand.Read(k)
	return k
}

// Buf returns a packet buffer holding b at packet.Headroom, with the
// standard tailroom and 1024 bytes to spare.
func Buf(b []byte) *packet.Buf {
	p := packet.NewBuf(len(b) + 1024)
	if err := p.SetBytes(b); err != nil {
		panic(err)
	}
	return p
}

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
	return Fields{Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Payload: payload, ID: 0x1234, DF: df}.Build()
}

// MustEqualPackets fails t unless got and want hold the same packets in
// the same order, showing the first 80 bytes of the first that differs.
func MustEqualPackets(t testing.TB, got, want [][]byte) {
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
