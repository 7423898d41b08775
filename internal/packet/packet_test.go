package packet

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// refSum is a byte-at-a-time RFC 1071 one's complement sum, to check the
// word-at-a-time Sum against.
func refSum(b []byte, s uint32) uint16 {
	acc := uint64(s)
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		acc += uint64(b[len(b)-1]) << 8
	}
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// TestChecksumKnownAnswers checks the Internet checksum against published
// values: the numerical example of RFC 1071 section 3, and IP headers and
// ICMP messages printed in RFC 3602 section 4 (case #5, original and ESP
// packet; case #7, ESP packet) and RFC 7634 Appendix A (the inner packet).
func TestChecksumKnownAnswers(t *testing.T) {
	// RFC 1071 3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
	if got := Fold(Sum(unhex(t, "0001f203f4f5f6f7"), 0)); got != 0xddf2 {
		t.Errorf("RFC 1071 example sum = %#04x, want 0xddf2", got)
	}
	if got := Checksum(unhex(t, "0001f203f4f5f6f7"), 0); got != ^uint16(0xddf2) {
		t.Errorf("RFC 1071 example checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	cases := []struct {
		name, data string
		csumOff    int // offset of the published checksum field
	}{
		{"rfc3602-case5-original-ipv4", "45000054 08f20000 4001f9fe c0a87b03 c0a87b64", 10},
		{"rfc3602-case5-esp-ipv4", "4500007c 08f20000 4032f9a5 c0a87b03 c0a87b64", 10},
		{"rfc3602-case7-esp-ipv4", "4500008c 09050000 4032f91e c0a87b03 c0a87bc8", 10},
		{"rfc7634-inner-ipv4", "45000054 a6f20000 4001e778 c6336405 c0000205", 10},
		{"rfc3602-case5-icmp", "08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617" +
			"18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637", 2},
		{"rfc7634-inner-icmp", "08005b7a 3a080000 553bec10 00073627 08090a0b 0c0d0e0f 10111213 14151617" +
			"18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := unhex(t, c.data)
			if got := Checksum(b, 0); got != 0 {
				t.Fatalf("checksum over data with its published checksum = %#04x, want 0", got)
			}
			want := binary.BigEndian.Uint16(b[c.csumOff:])
			binary.BigEndian.PutUint16(b[c.csumOff:], 0)
			if got := Checksum(b, 0); got != want {
				t.Fatalf("computed checksum %#04x, published %#04x", got, want)
			}
			if c.csumOff == 10 {
				h := IPv4(b)
				h.UpdateChecksum()
				if h.Checksum() != want || !h.ChecksumValid() {
					t.Fatalf("UpdateChecksum wrote %#04x, want %#04x", h.Checksum(), want)
				}
			}
		})
	}
}

// TestTransportChecksumKnownAnswer checks the pseudo-header checksum on the
// IPv4/UDP DNS query that is the plaintext of draft-mcgrew-gcm-test-01's
// second AES-GCM case (192.168.1.2 -> 192.168.1.1, UDP checksum 0x2343).
func TestTransportChecksumKnownAnswer(t *testing.T) {
	dgram := unhex(t, `4500003e 698f0000 80114dcc c0a80102 c0a80101 0a980035 002a2343 b2d00100
		00010000 00000000 03736970 09637962 65726369 74790264 6b000001 0001`)
	h := IPv4(dgram)
	if !h.ChecksumValid() {
		t.Fatal("published IPv4 header checksum does not verify")
	}
	seg := append([]byte(nil), h.Payload()...)
	if got := TransportChecksum(h.Src(), h.Dst(), ProtoUDP, seg); got != 0 {
		t.Fatalf("checksum over a segment with its valid checksum = %#04x, want 0", got)
	}
	UDP(seg).SetChecksum(0)
	if got := TransportChecksum(h.Src(), h.Dst(), ProtoUDP, seg); got != 0x2343 {
		t.Fatalf("UDP checksum = %#04x, want the published 0x2343", got)
	}
	// The same via PseudoHeaderSum + Checksum, as callers that fold
	// incrementally use it.
	if got := Checksum(seg, PseudoHeaderSum(h.Src(), h.Dst(), ProtoUDP, len(seg))); got != 0x2343 {
		t.Fatalf("Checksum(seg, PseudoHeaderSum) = %#04x, want 0x2343", got)
	}
}

// TestSumMatchesReference checks the 8-bytes-at-a-time Sum against a
// byte-wise reference on every length up to 200 (odd lengths included)
// and with non-zero initial sums, including ones near the 32-bit limit.
func TestSumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for _, init := range []uint32{0, 1, 0xffff, 0x1fffe, 0xfffffff0, r.Uint32()} {
			if got, want := Fold(Sum(b, init)), refSum(b, init); got != want {
				t.Fatalf("len %d init %#x: Sum folds to %#04x, reference %#04x", n, init, got, want)
			}
		}
	}
	all := make([]byte, 4096)
	for i := range all {
		all[i] = 0xff
	}
	if got := Fold(Sum(all, 0xffffffff)); got != refSum(all, 0xffffffff) {
		t.Fatalf("all-ones input: Sum folds to %#04x, want %#04x", got, refSum(all, 0xffffffff))
	}
}

// ipv4 builds an IPv4 datagram: header with ihl 32-bit words (options
// zero), protocol proto, flags/fragment field ff, and payload.
func ipv4(ihl int, proto uint8, ff uint16, payload []byte) []byte {
	hl := ihl * 4
	b := make([]byte, hl+len(payload))
	b[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[6:], ff)
	b[8], b[9] = 64, proto
	copy(b[12:16], []byte{192, 0, 2, 1})
	copy(b[16:20], []byte{192, 0, 2, 2})
	copy(b[hl:], payload)
	IPv4(b).UpdateChecksum()
	return b
}

// ext is one IPv6 extension header for ipv6: its type and total length
// (a multiple of 8; 8 for a fragment header).
type ext struct {
	typ uint8
	len int
}

// ipv6 builds an IPv6 datagram with the given extension header chain,
// then upper-layer protocol upper with payload.
func ipv6(exts []ext, upper uint8, payload []byte) []byte {
	n := IPv6Len + len(payload)
	for _, e := range exts {
		n += e.len
	}
	b := make([]byte, n)
	a, d := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	first := upper
	if len(exts) > 0 {
		first = exts[0].typ
	}
	WriteIPv6(b, IPv6Fields{PayloadLen: n - IPv6Len, NextHeader: first, HopLimit: 64, Src: a, Dst: d})
	off := IPv6Len
	for i, e := range exts {
		next := upper
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		b[off] = next
		if e.typ != ProtoFragment {
			b[off+1] = byte(e.len/8 - 1)
		}
		off += e.len
	}
	copy(b[off:], payload)
	return b
}

func TestSplitIPv4(t *testing.T) {
	pl := make([]byte, 30)
	padded := append(ipv4(5, ProtoUDP, 0, pl), 0, 0, 0, 0) // link-layer padding after the datagram
	short := ipv4(5, ProtoUDP, 0, pl)
	binary.BigEndian.PutUint16(short[2:], uint16(len(short)+1)) // claims one byte more than present
	tooSmall := ipv4(6, ProtoUDP, 0, pl)
	binary.BigEndian.PutUint16(tooSmall[2:], 20) // total length below the header length
	ihl4 := ipv4(5, ProtoUDP, 0, pl)
	ihl4[0] = 0x44
	cases := []struct {
		name    string
		b       []byte
		want    Split
		wantErr error
	}{
		{"plain", ipv4(5, ProtoUDP, 0, pl), Split{HdrLen: 20, NextOff: 9, Proto: ProtoUDP, Len: 50}, nil},
		{"options", ipv4(6, ProtoTCP, 0x4000, pl), Split{HdrLen: 24, NextOff: 9, Proto: ProtoTCP, Len: 54}, nil},
		{"max-options", ipv4(15, ProtoESP, 0, pl), Split{HdrLen: 60, NextOff: 9, Proto: ProtoESP, Len: 90}, nil},
		{"padding-after-datagram", padded, Split{HdrLen: 20, NextOff: 9, Proto: ProtoUDP, Len: 50}, nil},
		{"more-fragments", ipv4(5, ProtoUDP, 0x2000, pl), Split{HdrLen: 20, NextOff: 9, Proto: ProtoUDP, Len: 50, Fragment: true}, nil},
		{"last-fragment", ipv4(5, ProtoUDP, 0x0010, pl), Split{HdrLen: 20, NextOff: 9, Proto: ProtoUDP, Len: 50, Fragment: true}, nil},
		{"df-only-is-not-a-fragment", ipv4(5, ProtoUDP, 0x4000, pl), Split{HdrLen: 20, NextOff: 9, Proto: ProtoUDP, Len: 50}, nil},
		{"empty", nil, Split{}, ErrMalformed},
		{"truncated-header", ipv4(5, ProtoUDP, 0, pl)[:19], Split{}, ErrMalformed},
		{"total-length-beyond-buffer", short, Split{}, ErrMalformed},
		{"total-length-below-header", tooSmall, Split{}, ErrMalformed},
		{"ihl-below-5", ihl4, Split{}, ErrMalformed},
		{"version-5", append([]byte{0x55}, make([]byte, 39)...), Split{}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SplitIP(c.b)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("SplitIP error = %v, want %v", err, c.wantErr)
			}
			if got != c.want {
				t.Fatalf("SplitIP = %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestSplitIPv6ExtensionHeaders checks which IPv6 extension headers stay in
// front of ESP/AH (RFC 4303 3.1.1, RFC 4302 3.1.1, RFC 8200 4.1):
// hop-by-hop, routing, fragment, and destination options only when they
// precede a routing header; destination options after the routing header
// (or without one) belong to the final destination and go behind ESP.
func TestSplitIPv6ExtensionHeaders(t *testing.T) {
	pl := make([]byte, 12)
	cases := []struct {
		name    string
		b       []byte
		want    Split
		wantErr error
	}{
		{"no-extensions", ipv6(nil, ProtoUDP, pl),
			Split{HdrLen: 40, NextOff: 6, Proto: ProtoUDP, Len: 52}, nil},
		{"hop-by-hop", ipv6([]ext{{ProtoHopByHop, 8}}, ProtoUDP, pl),
			Split{HdrLen: 48, NextOff: 40, Proto: ProtoUDP, Len: 60}, nil},
		{"hop-by-hop-long", ipv6([]ext{{ProtoHopByHop, 24}}, ProtoESP, pl),
			Split{HdrLen: 64, NextOff: 40, Proto: ProtoESP, Len: 76}, nil},
		{"hop-by-hop+routing", ipv6([]ext{{ProtoHopByHop, 8}, {ProtoRouting, 24}}, ProtoTCP, pl),
			Split{HdrLen: 72, NextOff: 48, Proto: ProtoTCP, Len: 84}, nil},
		{"dstopts-before-routing", ipv6([]ext{{ProtoHopByHop, 8}, {ProtoDstOpts, 16}, {ProtoRouting, 8}}, ProtoUDP, pl),
			Split{HdrLen: 72, NextOff: 64, Proto: ProtoUDP, Len: 84}, nil},
		{"dstopts-after-routing", ipv6([]ext{{ProtoRouting, 8}, {ProtoDstOpts, 8}}, ProtoUDP, pl),
			Split{HdrLen: 48, NextOff: 40, Proto: ProtoDstOpts, Len: 68}, nil},
		{"dstopts-alone", ipv6([]ext{{ProtoDstOpts, 8}}, ProtoUDP, pl),
			Split{HdrLen: 40, NextOff: 6, Proto: ProtoDstOpts, Len: 60}, nil},
		{"dstopts-both-sides-of-routing", ipv6([]ext{{ProtoDstOpts, 8}, {ProtoRouting, 8}, {ProtoDstOpts, 8}}, ProtoUDP, pl),
			Split{HdrLen: 56, NextOff: 48, Proto: ProtoDstOpts, Len: 76}, nil},
		{"fragment", ipv6([]ext{{ProtoFragment, 8}}, ProtoUDP, pl),
			Split{HdrLen: 48, NextOff: 40, Proto: ProtoUDP, Len: 60, Fragment: true}, nil},
		{"hop-by-hop+fragment", ipv6([]ext{{ProtoHopByHop, 8}, {ProtoFragment, 8}}, ProtoESP, pl),
			Split{HdrLen: 56, NextOff: 48, Proto: ProtoESP, Len: 68, Fragment: true}, nil},
		{"esp-after-hop-by-hop", ipv6([]ext{{ProtoHopByHop, 8}}, ProtoESP, nil),
			Split{HdrLen: 48, NextOff: 40, Proto: ProtoESP, Len: 48}, nil},
		{"extension-truncated", ipv6([]ext{{ProtoHopByHop, 8}}, ProtoUDP, nil)[:44], Split{}, ErrMalformed},
		{"extension-header-cut-by-payload-length", func() []byte {
			b := ipv6([]ext{{ProtoRouting, 16}}, ProtoUDP, pl)
			binary.BigEndian.PutUint16(b[4:], 12) // the routing header claims 16 bytes
			return b
		}(), Split{}, ErrMalformed},
		{"extension-length-beyond-datagram", func() []byte {
			b := ipv6([]ext{{ProtoHopByHop, 8}}, ProtoUDP, pl)
			b[41] = 3 // 32 bytes, but only 20 remain
			return b
		}(), Split{}, ErrMalformed},
		{"payload-length-beyond-buffer", func() []byte {
			b := ipv6(nil, ProtoUDP, pl)
			binary.BigEndian.PutUint16(b[4:], 13)
			return b
		}(), Split{}, ErrMalformed},
		{"truncated-fixed-header", ipv6(nil, ProtoUDP, nil)[:39], Split{}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SplitIP(c.b)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("SplitIP error = %v, want %v", err, c.wantErr)
			}
			if got != c.want {
				t.Fatalf("SplitIP = %+v, want %+v", got, c.want)
			}
			if err == nil && c.b[got.NextOff] != got.Proto {
				t.Fatalf("byte at NextOff %d is %d, not Proto %d", got.NextOff, c.b[got.NextOff], got.Proto)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	espHdr := []byte{0x00, 0x00, 0x12, 0x34, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd}
	ah := []byte{ProtoUDP, 4, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 9, 1, 2, 3, 4}
	udp := func(dport uint16, body []byte) []byte {
		b := make([]byte, UDPLen+len(body))
		UDP(b).SetSrcPort(4500)
		UDP(b).SetDstPort(dport)
		UDP(b).SetLength(len(b))
		copy(b[UDPLen:], body)
		return b
	}
	v4src, v4dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	v6src, v6dst := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	cutLen := ipv4(5, ProtoESP, 0, espHdr)
	binary.BigEndian.PutUint16(cutLen[2:], 26) // total length ends inside the ESP header
	IPv4(cutLen).UpdateChecksum()
	cases := []struct {
		name      string
		b         []byte
		port      uint16
		wantErr   error
		ipsec     uint8
		off       int
		spi       uint32
		udp       bool
		kind      Kind // for the cases without ipsec
		src, dst  netip.Addr
		checkAddr bool
	}{
		{name: "ipv4-esp", b: ipv4(5, ProtoESP, 0, espHdr), ipsec: ProtoESP, off: 20, spi: 0x1234, src: v4src, dst: v4dst, checkAddr: true},
		{name: "ipv4-options-esp", b: ipv4(7, ProtoESP, 0, espHdr), ipsec: ProtoESP, off: 28, spi: 0x1234},
		{name: "ipv4-ah", b: ipv4(5, ProtoAH, 0, ah), ipsec: ProtoAH, off: 20, spi: 0xdeadbeef},
		{name: "ipv4-udp-encap", b: ipv4(5, ProtoUDP, 0, udp(4500, espHdr)), port: 4500, ipsec: ProtoESP, off: 28, spi: 0x1234, udp: true},
		{name: "ipv4-udp-encap-other-port-number", b: ipv4(5, ProtoUDP, 0, udp(14500, espHdr)), port: 14500, ipsec: ProtoESP, off: 28, spi: 0x1234, udp: true},
		{name: "ipv6-esp", b: ipv6(nil, ProtoESP, espHdr), ipsec: ProtoESP, off: 40, spi: 0x1234, src: v6src, dst: v6dst, checkAddr: true},
		{name: "ipv6-hop-by-hop-routing-esp", b: ipv6([]ext{{ProtoHopByHop, 8}, {ProtoRouting, 8}}, ProtoESP, espHdr), ipsec: ProtoESP, off: 56, spi: 0x1234},
		{name: "ipv6-dstopts-esp", b: ipv6([]ext{{ProtoDstOpts, 8}}, ProtoESP, espHdr), ipsec: ProtoESP, off: 48, spi: 0x1234},
		{name: "ipv6-hop-by-hop-dstopts-dstopts-esp", b: ipv6([]ext{{ProtoHopByHop, 8}, {ProtoDstOpts, 16}, {ProtoDstOpts, 8}}, ProtoESP, espHdr), ipsec: ProtoESP, off: 72, spi: 0x1234},
		{name: "ipv6-udp-encap", b: ipv6(nil, ProtoUDP, udp(4500, espHdr)), port: 4500, ipsec: ProtoESP, off: 48, spi: 0x1234, udp: true},
		{name: "udp-length-zero", b: func() []byte { d := udp(4500, espHdr); UDP(d).SetLength(0); return ipv4(5, ProtoUDP, 0, d) }(), port: 4500, wantErr: ErrUDPLength},
		{name: "udp-length-short", b: func() []byte { d := udp(4500, espHdr); UDP(d).SetLength(9); return ipv4(5, ProtoUDP, 0, d) }(), port: 4500, wantErr: ErrUDPLength},
		{name: "udp-length-long", b: func() []byte { d := udp(4500, espHdr); UDP(d).SetLength(65535); return ipv4(5, ProtoUDP, 0, d) }(), port: 4500, wantErr: ErrUDPLength},
		{name: "ipv6-udp-length-long", b: func() []byte { d := udp(4500, espHdr); UDP(d).SetLength(100); return ipv6(nil, ProtoUDP, d) }(), port: 4500, wantErr: ErrUDPLength},
		{name: "non-esp-marker", b: ipv4(5, ProtoUDP, 0, udp(4500, []byte{0, 0, 0, 0, 0x21, 0x22})), port: 4500, kind: NonESP},
		{name: "nat-keepalive", b: ipv4(5, ProtoUDP, 0, udp(4500, []byte{0xff})), port: 4500, kind: Keepalive},
		{name: "one-byte-not-keepalive", b: ipv4(5, ProtoUDP, 0, udp(4500, []byte{0xfe})), port: 4500, wantErr: ErrMalformed},
		{name: "udp-esp-truncated", b: ipv4(5, ProtoUDP, 0, udp(4500, espHdr[:6])), port: 4500, wantErr: ErrMalformed},
		{name: "udp-empty", b: ipv4(5, ProtoUDP, 0, udp(4500, nil)), port: 4500, wantErr: ErrMalformed},
		{name: "udp-other-port", b: ipv4(5, ProtoUDP, 0, udp(53, espHdr)), port: 4500, kind: NotIPsec},
		{name: "udp-without-encap", b: ipv4(5, ProtoUDP, 0, udp(4500, espHdr)), port: 0, kind: NotIPsec},
		{name: "udp-header-truncated", b: ipv4(5, ProtoUDP, 0, []byte{0x11, 0x94, 0x11}), port: 4500, kind: NotIPsec},
		{name: "tcp", b: ipv4(5, ProtoTCP, 0, make([]byte, 20)), kind: NotIPsec},
		{name: "esp-truncated", b: ipv4(5, ProtoESP, 0, espHdr[:7]), wantErr: ErrMalformed},
		{name: "esp-cut-by-total-length", b: cutLen, wantErr: ErrMalformed},
		{name: "ah-truncated", b: ipv4(5, ProtoAH, 0, ah[:11]), wantErr: ErrMalformed},
		{name: "ipv4-fragment", b: ipv4(5, ProtoESP, 0x2000, espHdr), wantErr: ErrFragment},
		{name: "ipv6-fragment", b: ipv6([]ext{{ProtoFragment, 8}}, ProtoESP, espHdr), wantErr: ErrFragment},
		{name: "malformed", b: []byte{0x45, 0, 0}, wantErr: ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := Locate(c.b, c.port)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Locate error = %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			want := c.kind
			switch {
			case c.udp:
				want = UDPESP
			case c.ipsec == ProtoESP:
				want = ESP
			case c.ipsec == ProtoAH:
				want = AH
			}
			if l.Kind != want {
				t.Fatalf("Locate kind = %v, want %v", l.Kind, want)
			}
			if l.IPsec != c.ipsec || l.Off != c.off || l.SPI != c.spi || l.UDP != c.udp {
				t.Fatalf("Locate = IPsec %d Off %d SPI %#x UDP %v, want %d %d %#x %v", l.IPsec, l.Off, l.SPI, l.UDP, c.ipsec, c.off, c.spi, c.udp)
			}
			if c.checkAddr && (l.Src != c.src || l.Dst != c.dst) {
				t.Fatalf("Locate addresses %v -> %v, want %v -> %v", l.Src, l.Dst, c.src, c.dst)
			}
		})
	}
}

func TestBuf(t *testing.T) {
	p := NewBuf(100)
	if p.HeadroomLen() != Headroom || p.TailroomLen() != 100+Tailroom || p.Len != 0 {
		t.Fatalf("new buffer: headroom %d tailroom %d len %d", p.HeadroomLen(), p.TailroomLen(), p.Len)
	}
	if err := p.SetBytes([]byte{1, 2, 3}); err != nil {
		t.Fatalf("SetBytes: %v", err)
	}
	h, err := p.Prepend(2)
	if err != nil {
		t.Fatalf("Prepend: %v", err)
	}
	h[0], h[1] = 9, 8
	tl, err := p.Append(1)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	tl[0] = 7
	if got := p.Bytes(); string(got) != "\x09\x08\x01\x02\x03\x07" {
		t.Fatalf("Bytes = %x", got)
	}
	if d := p.Data(); len(d) != 6 || cap(d) != len(p.B)-p.Off {
		t.Fatalf("Data: len %d cap %d, want 6 and the tailroom", len(d), cap(d))
	}
	p.TrimFront(2)
	p.TrimBack(1)
	if got := p.Bytes(); string(got) != "\x01\x02\x03" {
		t.Fatalf("after trims Bytes = %x", got)
	}
	if _, err := p.Prepend(p.HeadroomLen() + 1); !errors.Is(err, ErrNoRoom) {
		t.Errorf("Prepend past the headroom = %v, want ErrNoRoom", err)
	}
	if _, err := p.Append(p.TailroomLen() + 1); !errors.Is(err, ErrNoRoom) {
		t.Errorf("Append past the tailroom = %v, want ErrNoRoom", err)
	}
	if err := p.SetBytes(make([]byte, 100+Tailroom+1)); !errors.Is(err, ErrNoRoom) {
		t.Errorf("SetBytes larger than the buffer = %v, want ErrNoRoom", err)
	}
	p.Reset()
	if p.Off != Headroom || p.Len != 0 {
		t.Errorf("Reset: Off %d Len %d", p.Off, p.Len)
	}
}

// TestDecapECN checks RFC 6040 section 4.2 (normal mode) for the outer CE
// mark: copied to an ECT inner header, the packet dropped for a Not-ECT
// inner header, nothing changed for other outer codepoints.
func TestDecapECN(t *testing.T) {
	cases := []struct {
		outer, inner, want uint8
		ok                 bool
	}{
		{outer: 0, inner: 2, want: 2, ok: true},
		{outer: 1, inner: 0, want: 0, ok: true},
		{outer: 2, inner: 1, want: 1, ok: true},
		{outer: 3, inner: 0, ok: false},
		{outer: 3, inner: 1, want: 3, ok: true},
		{outer: 3, inner: 2, want: 3, ok: true},
		{outer: 3, inner: 3, want: 3, ok: true},
	}
	for _, c := range cases {
		for _, v6 := range []bool{false, true} {
			var in []byte
			if v6 {
				in = ipv6(nil, ProtoUDP, make([]byte, 8))
				IPv6(in).SetTrafficClass(0xb8 | c.inner)
			} else {
				in = ipv4(5, ProtoUDP, 0, make([]byte, 8))
				IPv4(in).SetTOS(0xb8 | c.inner)
				IPv4(in).UpdateChecksum()
			}
			ok := DecapECN(0x20|c.outer, in)
			if ok != c.ok {
				t.Fatalf("outer %d inner %d v6=%v: DecapECN = %v, want %v", c.outer, c.inner, v6, ok, c.ok)
			}
			if !ok {
				continue
			}
			tos, _ := TOS(in)
			if tos != 0xb8|c.want {
				t.Fatalf("outer %d inner %d v6=%v: inner TOS %#x, want %#x", c.outer, c.inner, v6, tos, 0xb8|c.want)
			}
			if !v6 && !IPv4(in).ChecksumValid() {
				t.Fatalf("outer %d inner %d: IPv4 checksum not updated", c.outer, c.inner)
			}
		}
	}
}

// checkSplit checks the invariants of a successful SplitIP.
func checkSplit(t *testing.T, b []byte, s Split) {
	t.Helper()
	if s.Len > len(b) || s.HdrLen > s.Len || s.HdrLen < IPv4MinLen || s.NextOff >= s.HdrLen {
		t.Fatalf("SplitIP(%x) = %+v: inconsistent lengths", b, s)
	}
	if b[s.NextOff] != s.Proto {
		t.Fatalf("SplitIP(%x) = %+v: byte at NextOff is %d", b, s, b[s.NextOff])
	}
}

// FuzzSplitIP parses arbitrary bytes: SplitIP must not panic, and on
// success its result must lie within the datagram and name the upper
// protocol at NextOff.
func FuzzSplitIP(f *testing.F) {
	pl := make([]byte, 16)
	for _, b := range [][]byte{
		ipv4(5, ProtoUDP, 0, pl), ipv4(15, ProtoESP, 0x2000, pl), {0x45}, {0x60},
		ipv6(nil, ProtoESP, pl),
		ipv6([]ext{{ProtoHopByHop, 8}, {ProtoDstOpts, 16}, {ProtoRouting, 24}, {ProtoFragment, 8}, {ProtoDstOpts, 8}}, ProtoUDP, pl),
		ipv6([]ext{{ProtoHopByHop, 8}}, ProtoUDP, nil)[:44],
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := SplitIP(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("SplitIP error %v is not ErrMalformed", err)
			}
			return
		}
		checkSplit(t, b, s)
	})
}

// FuzzLocate parses arbitrary bytes as a received datagram, with and
// without a UDP encapsulation port: Locate must not panic, and a located
// ESP or AH header must lie within the datagram with the SPI read from it.
func FuzzLocate(f *testing.F) {
	esp := []byte{0, 0, 0x12, 0x34, 0, 0, 0, 1, 1, 2, 3, 4}
	u := make([]byte, UDPLen+len(esp))
	UDP(u).SetDstPort(4500)
	UDP(u).SetLength(len(u))
	copy(u[UDPLen:], esp)
	for _, b := range [][]byte{
		ipv4(5, ProtoESP, 0, esp), ipv4(5, ProtoAH, 0, append(esp, esp...)), ipv4(5, ProtoUDP, 0, u),
		ipv4(5, ProtoUDP, 0, u[:UDPLen+1]), ipv6([]ext{{ProtoHopByHop, 8}}, ProtoESP, esp), ipv6(nil, ProtoUDP, u),
	} {
		f.Add(b, uint16(4500))
		f.Add(b, uint16(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		l, err := Locate(b, port)
		if err != nil {
			for _, known := range []error{ErrMalformed, ErrFragment, ErrUDPLength} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Locate returned an unknown error %v", err)
		}
		if !l.Kind.IsIPsec() {
			if l.IPsec != 0 || l.UDP || l.SPI != 0 {
				t.Fatalf("Locate kind %v with IPsec fields set: %+v", l.Kind, l)
			}
			return
		}
		if l.UDP != (l.Kind == UDPESP) {
			t.Fatalf("Locate kind %v, UDP %v", l.Kind, l.UDP)
		}
		checkSplit(t, b, l.Split)
		if l.UDP && UDP(b[l.HdrLen:]).Length() != l.Len-l.HdrLen {
			t.Fatalf("UDP length %d accepted for a %d-byte UDP datagram", UDP(b[l.HdrLen:]).Length(), l.Len-l.HdrLen)
		}
		switch l.IPsec {
		case ProtoESP:
			if l.Off+8 > l.Len || binary.BigEndian.Uint32(b[l.Off:]) != l.SPI {
				t.Fatalf("ESP at %d (len %d): SPI %#x not in the datagram", l.Off, l.Len, l.SPI)
			}
		case ProtoAH:
			if l.Off+12 > l.Len || binary.BigEndian.Uint32(b[l.Off+4:]) != l.SPI {
				t.Fatalf("AH at %d (len %d): SPI %#x not in the datagram", l.Off, l.Len, l.SPI)
			}
		default:
			t.Fatalf("Locate succeeded with IPsec protocol %d", l.IPsec)
		}
		if l.UDP {
			if port == 0 || l.Proto != ProtoUDP || l.Off != l.HdrLen+UDPLen || UDP(b[l.HdrLen:]).DstPort() != port {
				t.Fatalf("UDP-encapsulated ESP at %d misdescribed (port %d): %+v", l.Off, port, l)
			}
		} else if l.Off != l.HdrLen || l.Proto != l.IPsec {
			t.Fatalf("ESP/AH at %d, header length %d, protocol %d: %+v", l.Off, l.HdrLen, l.Proto, l)
		}
	})
}
