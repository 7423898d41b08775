package ah

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

type family struct {
	name           string
	inner6, outer6 bool
	mode           sa.Mode
}

var families = []family{
	{"transport-v4", false, false, sa.Transport},
	{"transport-v6", true, true, sa.Transport},
	{"tunnel-4in4", false, false, sa.Tunnel},
	{"tunnel-6in6", true, true, sa.Tunnel},
	{"tunnel-4in6", false, true, sa.Tunnel},
	{"tunnel-6in4", true, false, sa.Tunnel},
}

func (f family) datagram(n int) []byte {
	if f.mode == sa.Transport {
		return transportDatagram(f.outer6, n)
	}
	return innerDatagram(f.inner6, n)
}

// TestRoundTrip runs every algorithm in every mode and IP-family
// combination, with and without ESN, checks the AH framing on the wire, and
// checks that Decap restores the original datagram byte for byte.
func TestRoundTrip(t *testing.T) {
	for _, a := range allAuths() {
		for _, f := range families {
			for _, esn := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/esn=%v", a, f.name, esn), func(t *testing.T) {
					out, in := newPair(t, a, pairOpts{mode: f.mode, outer6: f.outer6, esn: esn})
					if esn {
						// Start near the top of a 2^32 block so that the high half matters.
						out.SetSeq(3<<32 - 2)
						in.Replay.SetTop(3<<32 - 10)
					}
					for _, n := range []int{0, 1, 13, 100, 1400} {
						orig := f.datagram(n)
						p := bufOf(orig)
						if err := Encap(out, p); err != sa.ReasonNone {
							t.Fatalf("Encap(%d bytes): %v", n, err)
						}
						checkWire(t, p.Bytes(), out, orig, f)
						if err := LocateAndDecap(in, p); err != sa.ReasonNone {
							t.Fatalf("Decap(%d bytes): %v", n, err)
						}
						if !bytes.Equal(p.Bytes(), orig) {
							t.Fatalf("round trip of %d bytes changed the datagram:\n got %x\nwant %x", n, p.Bytes(), orig)
						}
					}
					if got := in.Stats.Packets.Load(); got != 5 {
						t.Fatalf("inbound SA counted %d packets, want 5", got)
					}
				})
			}
		}
	}
}

// wantLen is the AH header length for each transform behind IPv4 and IPv6
// (RFC 4302 2.6 and 3.3.3.2.1, RFC 4543 4 with erratum 3643).
var wantLen = map[suite.Auth][2]int{
	suite.AuthMD5:     {24, 24},
	suite.AuthSHA1:    {24, 24},
	suite.AuthSHA256:  {28, 32},
	suite.AuthSHA384:  {36, 40},
	suite.AuthSHA512:  {44, 48},
	suite.AuthGMAC128: {36, 40},
	suite.AuthGMAC192: {36, 40},
	suite.AuthGMAC256: {36, 40},
}

// checkWire checks the IP header and AH framing of a protected datagram.
func checkWire(t *testing.T, pkt []byte, s *sa.SA, orig []byte, f family) {
	t.Helper()
	sp, err := packet.SplitIP(pkt)
	if err != nil || sp.Len != len(pkt) || sp.Proto != packet.ProtoAH {
		t.Fatalf("protected datagram has a bad IP header (len %d, split %+v): %v", len(pkt), sp, err)
	}
	if (packet.Version(pkt) == 6) != f.outer6 {
		t.Fatalf("outer family: got version %d", packet.Version(pkt))
	}
	if !f.outer6 && !packet.IPv4(pkt).ChecksumValid() {
		t.Fatal("IPv4 header checksum invalid")
	}
	h := pkt[sp.HdrLen:]
	l := wantLen[s.Suite.Auth()][0]
	if f.outer6 {
		l = wantLen[s.Suite.Auth()][1]
	}
	if got := (int(h[1]) + 2) * 4; got != l {
		t.Fatalf("AH length %d (payload length field %d), want %d", got, h[1], l)
	}
	if Len(s, f.outer6) != l || Overhead(s, 100) != len(pkt)-len(orig) {
		t.Fatalf("Len %d, Overhead %d; the datagram grew by %d", Len(s, f.outer6), Overhead(s, 100), len(pkt)-len(orig))
	}
	wantNext := uint8(packet.ProtoUDP)
	if f.mode == sa.Tunnel {
		wantNext = packet.ProtoIPv4
		if f.inner6 {
			wantNext = packet.ProtoIPv6
		}
	}
	if h[0] != wantNext || h[2] != 0 || h[3] != 0 {
		t.Fatalf("AH next header %d (want %d), reserved %x", h[0], wantNext, h[2:4])
	}
	if spi := binary.BigEndian.Uint32(h[4:]); spi != s.SPI {
		t.Fatalf("SPI 0x%x, want 0x%x", spi, s.SPI)
	}
	if seq := binary.BigEndian.Uint32(h[8:]); uint64(seq) != s.LastSeq()&math.MaxUint32 {
		t.Fatalf("sequence number %d, want the low half of %d", seq, s.LastSeq())
	}
	auth := h[HeaderLen:l]
	used := s.Suite.IVLen() + s.Suite.ICVLen()
	if !bytes.Equal(auth[used:], make([]byte, l-HeaderLen-used)) {
		t.Fatalf("ICV padding not zero: %x", auth[used:])
	}
	if s.Suite.IsGMAC() {
		if iv := binary.BigEndian.Uint64(auth); iv != s.LastSeq() {
			t.Fatalf("AES-GMAC IV %d, want the 64-bit sequence number %d", iv, s.LastSeq())
		}
	}
	if bytes.Equal(auth[s.Suite.IVLen():used], make([]byte, s.Suite.ICVLen())) {
		t.Fatal("ICV is all zero")
	}
	// Transport mode keeps the IP header apart from protocol, length and checksum.
	if f.mode == sa.Transport {
		if !bytes.Equal(pkt[sp.HdrLen+l:], orig[sp.HdrLen:]) {
			t.Fatal("payload changed")
		}
	} else if !bytes.Equal(pkt[sp.HdrLen+l:], orig) {
		t.Fatal("inner datagram changed")
	}
}

// TestICVMatchesReference recomputes the ICV of protected datagrams with a
// straightforward reference (copy the datagram, zero the mutable fields,
// HMAC or GMAC it with the standard library) and compares.
func TestICVMatchesReference(t *testing.T) {
	for _, a := range allAuths() {
		for _, f := range families {
			for _, esn := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/esn=%v", a, f.name, esn), func(t *testing.T) {
					key := keyFor(t, a)
					out, _ := newPair(t, a, pairOpts{mode: f.mode, outer6: f.outer6, esn: esn, key: key})
					if esn {
						out.SetSeq(7<<32 + 99)
					} else {
						out.SetSeq(99)
					}
					p := bufOf(f.datagram(33))
					if err := Encap(out, p); err != sa.ReasonNone {
						t.Fatal(err)
					}
					checkReference(t, a, key, p.Bytes(), out.LastSeq(), esn)
				})
			}
		}
	}
}

// checkReference compares the ICV in pkt with the reference computation.
func checkReference(t *testing.T, a suite.Auth, key, pkt []byte, seq uint64, esn bool) {
	t.Helper()
	want, got := refICV(t, a, key, pkt, seq, esn)
	if !bytes.Equal(got, want) {
		t.Fatalf("ICV %x, reference computes %x\npacket %x", got, want, pkt)
	}
}

// TestMutableFieldsIPv4 changes every mutable IPv4 field in transit (with
// the header checksum recomputed as a router would): the packet still
// verifies, and in transport mode the delivered header keeps the values
// as received.
func TestMutableFieldsIPv4(t *testing.T) {
	edits := []struct {
		name string
		edit func(h []byte)
	}{
		{"dscp", func(h []byte) { h[1] ^= 0xfc }},
		{"ecn-ce", func(h []byte) { h[1] |= 3 }},
		{"ttl", func(h []byte) { h[8] -= 7 }},
		{"df-cleared", func(h []byte) { h[6] &^= 0x40 }},
		{"df-set", func(h []byte) { h[6] |= 0x40 }},
		{"reserved-flag", func(h []byte) { h[6] |= 0x80 }},
		{"all", func(h []byte) { h[1], h[8], h[6] = 0xb8, 1, h[6]^0xc0 }},
	}
	for _, a := range []suite.Auth{suite.AuthSHA256, suite.AuthGMAC128} {
		for _, mode := range []sa.Mode{sa.Transport, sa.Tunnel} {
			for _, e := range edits {
				t.Run(fmt.Sprintf("%s/%v/%s", a, mode, e.name), func(t *testing.T) {
					out, in := newPair(t, a, pairOpts{mode: mode})
					orig := innerDatagram(false, 50)
					if mode == sa.Transport {
						orig = transportDatagram(false, 50)
					}
					orig[1] = 0x2a // ECT(0), so a CE mark may be propagated
					fixIPv4Checksum(orig)
					p := bufOf(orig)
					if err := Encap(out, p); err != sa.ReasonNone {
						t.Fatal(err)
					}
					e.edit(p.Bytes())
					fixIPv4Checksum(p.Bytes())
					want := clone(p.Bytes()[:20])
					if err := LocateAndDecap(in, p); err != sa.ReasonNone {
						t.Fatalf("mutable field %s changed in transit: %v", e.name, err)
					}
					got := p.Bytes()
					if mode == sa.Transport {
						// Everything but protocol, length and checksum as received.
						for _, i := range []int{1, 6, 7, 8} {
							if got[i] != want[i] {
								t.Fatalf("delivered header byte %d is 0x%02x, received 0x%02x", i, got[i], want[i])
							}
						}
						if !packet.IPv4(got).ChecksumValid() || got[9] != packet.ProtoUDP || packet.IPv4(got).TotalLen() != len(orig) {
							t.Fatalf("delivered header not rebuilt: %x", got[:20])
						}
					} else if !bytes.Equal(got[20:], orig[20:]) || got[8] != orig[8] {
						t.Fatal("inner datagram changed")
					}
				})
			}
		}
	}
}

// TestMutableFieldsIPv6 changes the traffic class, flow label and hop
// limit, and the data of a mutable hop-by-hop and destination option.
func TestMutableFieldsIPv6(t *testing.T) {
	edits := []struct {
		name string
		off  int // offset of the byte to change, in the protected datagram
		mask byte
		ok   bool
	}{
		{"traffic-class-high", 0, 0x0f, true},
		{"traffic-class-low", 1, 0xf0, true},
		{"flow-label", 2, 0xff, true},
		{"flow-label-low", 3, 0x5a, true},
		{"hop-limit", 7, 0x3f, true},
		{"version", 0, 0x10, false},
		{"payload-length", 5, 0x01, false},
		{"src", 8, 0x01, false},
		{"dst", 39, 0x01, false},
		// Hop-by-hop header at 40: next, len, then options:
		// 0x3e (mutable) len 2 at 42, 0x1e (immutable) len 2 at 46.
		{"hbh-mutable-data", 44, 0xff, true},
		{"hbh-mutable-data-2", 45, 0x01, true},
		{"hbh-mutable-type", 42, 0x01, false},
		{"hbh-mutable-length", 43, 0x01, false},
		{"hbh-immutable-data", 48, 0x01, false},
		{"hbh-immutable-type", 46, 0x01, false},
		// Destination options header (before the routing header) at 56:
		// 0x3e len 4 at 58, PadN.
		{"dst-mutable-data", 61, 0x80, true},
		{"dst-pad", 65, 0x01, false},
	}
	hbh := []byte{0, 1, 0x3e, 2, 0xaa, 0xbb, 0x1e, 2, 0xcc, 0xdd, 1, 4, 0, 0, 0, 0}
	dst := []byte{packet.ProtoRouting, 1, 0x3e, 4, 1, 2, 3, 4, 1, 6, 0, 0, 0, 0, 0, 0}
	rt := []byte{0, 0, 0, 0, 0, 0, 0, 0} // type 0, no addresses, segments left 0
	ext := append(append(append([]byte{}, hbh...), dst...), rt...)
	ext[0] = packet.ProtoDstOpts
	for _, a := range []suite.Auth{suite.AuthSHA512, suite.AuthGMAC256} {
		for _, e := range edits {
			t.Run(fmt.Sprintf("%s/%s", a, e.name), func(t *testing.T) {
				out, in := newPair(t, a, pairOpts{mode: sa.Transport, outer6: true})
				orig := withIPv6Ext(transportDatagram(true, 40), packet.ProtoHopByHop, ext, 32)
				p := bufOf(orig)
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
				if off := ahOffset(t, p.Bytes()); off != 40+len(ext) {
					t.Fatalf("AH at %d, want after the extension headers (%d)", off, 40+len(ext))
				}
				p.Bytes()[e.off] ^= e.mask
				want := clone(p.Bytes()[:40+len(ext)])
				err := LocateAndDecap(in, p)
				if !e.ok {
					if err == sa.ReasonNone {
						t.Fatalf("changing immutable byte %d went undetected", e.off)
					}
					return
				}
				if err != sa.ReasonNone {
					t.Fatalf("changing mutable byte %d: %v", e.off, err)
				}
				got := p.Bytes()
				want[72] = packet.ProtoUDP // the routing header's next header
				binary.BigEndian.PutUint16(want[4:], uint16(len(orig)-40))
				if !bytes.Equal(got[:40+len(ext)], want) || !bytes.Equal(got[40+len(ext):], orig[40+len(ext):]) {
					t.Fatalf("delivered datagram:\n got %x\nwant %x (headers as received)", got, want)
				}
			})
		}
	}
}

// TestTamper flips bits in every byte of protected datagrams: a flip in an
// immutable field must fail, one in a mutable field must verify. IPv4
// checksums are recomputed so that the ICV, not the checksum, decides.
func TestTamper(t *testing.T) {
	for _, a := range allAuths() {
		for _, f := range families {
			t.Run(fmt.Sprintf("%s/%s", a, f.name), func(t *testing.T) {
				out, in := newPair(t, a, pairOpts{mode: f.mode, outer6: f.outer6, esn: true, window: -1})
				p := bufOf(f.datagram(40))
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
				prot := clone(p.Bytes())
				for i := range prot {
					for _, mask := range []byte{0x01, 0x80} {
						q := bufOf(prot)
						q.Bytes()[i] ^= mask
						if !f.outer6 {
							// Also undoes a flip of the checksum itself.
							fixIPv4Checksum(q.Bytes())
						}
						err := LocateAndDecap(in, q)
						if mutableBit(f.outer6, i, mask) {
							if err != sa.ReasonNone {
								t.Fatalf("flipping mutable bit 0x%02x of byte %d: %v", mask, i, err)
							}
						} else if err == sa.ReasonNone {
							t.Fatalf("flipping bit 0x%02x of byte %d of %d went undetected", mask, i, len(prot))
						}
					}
				}
			})
		}
	}
}

// mutableBit reports whether bit mask of byte i of a header without
// options or extension headers is mutable for AH.
func mutableBit(v6 bool, i int, mask byte) bool {
	if v6 {
		switch i {
		case 0:
			return mask&0xf0 == 0
		case 1, 2, 3, 7:
			return true
		}
		return false
	}
	switch i {
	case 1, 8, 10, 11:
		return true
	case 6:
		return mask&0x3f == 0 // DF and the reserved flag, not MF or the offset
	}
	return false
}

func TestIPv4Options(t *testing.T) {
	// NOP, Router Alert (immutable), Record Route with one empty slot and
	// Timestamp (mutable), EOL and padding.
	opts := []byte{
		1,             // NOP
		0x94, 4, 0, 0, // Router Alert
		7, 7, 4, 0, 0, 0, 0, // Record Route, pointer at the first slot
		0x44, 8, 5, 0, 0, 0, 0, 0, // Timestamp, one slot
		0, 0, 0, 0, // EOL and padding
	}
	for _, a := range []suite.Auth{suite.AuthSHA1, suite.AuthGMAC192} {
		t.Run(string(a), func(t *testing.T) {
			key := keyFor(t, a)
			out, in := newPair(t, a, pairOpts{mode: sa.Transport, key: key, window: -1})
			orig := withIPv4Options(transportDatagram(false, 30), opts)
			p := bufOf(orig)
			if err := Encap(out, p); err != sa.ReasonNone {
				t.Fatal(err)
			}
			prot := clone(p.Bytes())
			checkReference(t, a, key, prot, out.LastSeq(), false)
			cases := []struct {
				name string
				edit func(h []byte)
				ok   bool
			}{
				{"as-sent", func(h []byte) {}, true},
				{"record-route-filled", func(h []byte) { copy(h[28:32], []byte{198, 51, 100, 1}); h[27] = 8 }, true},
				{"timestamp-filled", func(h []byte) { h[34] = 9; copy(h[35:39], []byte{1, 2, 3, 4}) }, true},
				{"router-alert-value", func(h []byte) { h[24] = 1 }, false},
				{"nop-to-eol", func(h []byte) { h[20] = 0 }, false},
				{"padding-after-eol", func(h []byte) { h[41] = 1 }, false},
			}
			for _, c := range cases {
				q := bufOf(prot)
				c.edit(q.Bytes())
				fixIPv4Checksum(q.Bytes())
				want := clone(q.Bytes()[:44])
				err := LocateAndDecap(in, q)
				if (err == sa.ReasonNone) != c.ok {
					t.Fatalf("%s: got %v, want success %v", c.name, err, c.ok)
				}
				if c.ok {
					want[9] = packet.ProtoUDP
					got := q.Bytes()
					if !bytes.Equal(got[20:44], want[20:44]) || !bytes.Equal(got[44:], orig[44:]) {
						t.Fatalf("%s: options or payload not delivered as received:\n got %x\nwant %x", c.name, got, want)
					}
				}
			}
		})
	}
}

// TestIPv4SourceRoute: with a loose or strict source route, the sender
// computes the ICV over the final destination; routers then rewrite the
// destination and the route, and the final destination verifies.
func TestIPv4SourceRoute(t *testing.T) {
	hop1, hop2 := [4]byte{198, 51, 100, 1}, [4]byte{198, 51, 100, 2}
	final := v4b.As4()
	for _, typ := range []byte{optLSRR, optSSRR} {
		t.Run(fmt.Sprintf("type-%d", typ), func(t *testing.T) {
			out, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport})
			d := transportDatagram(false, 20)
			// Route: first hop in the destination, then hop2 and the final destination.
			opts := append([]byte{1, typ, 11, 4}, append(hop2[:], final[:]...)...)
			d = withIPv4Options(d, opts)
			copy(d[16:20], hop1[:])
			fixIPv4Checksum(d)
			p := bufOf(d)
			if err := Encap(out, p); err != sa.ReasonNone {
				t.Fatal(err)
			}
			if got := [4]byte(p.Bytes()[16:20]); got != hop1 {
				t.Fatalf("destination on the wire %v, want the first hop %v", got, hop1)
			}
			// Each router takes the next address as destination and records its own.
			h := p.Bytes()
			for _, rec := range [][4]byte{hop1, hop2} {
				ptr := int(h[23]) // 1-based within the option at 21
				copy(h[16:20], h[20+ptr:24+ptr])
				copy(h[20+ptr:], rec[:])
				h[23] += 4
				h[8]--
			}
			fixIPv4Checksum(h)
			if got := [4]byte(h[16:20]); got != final {
				t.Fatalf("simulated routing ended at %v", got)
			}
			if err := LocateAndDecap(in, p); err != sa.ReasonNone {
				t.Fatalf("source-routed datagram at its final destination: %v", err)
			}
		})
	}
}

// TestIPv6RoutingHeader: the sender computes the ICV over the routing
// header and destination as they arrive; the simulated routing hops then
// produce exactly that.
func TestIPv6RoutingHeader(t *testing.T) {
	hop := func(i byte) [16]byte { a := v6b.As16(); a[15] = 0x10 + i; return a }
	final := v6b.As16()
	type tc struct {
		name  string
		rh    []byte
		first [16]byte
		route func(b []byte) // simulate the network until the final destination
	}
	type0 := func(typ byte, addrs ...[16]byte) []byte {
		rh := []byte{0, byte(2 * len(addrs)), typ, byte(len(addrs)), 0, 0, 0, 0}
		for _, a := range addrs {
			rh = append(rh, a[:]...)
		}
		return rh
	}
	swapRoute := func(b []byte) {
		for b[43] > 0 {
			n := int(b[41]) / 2
			i := n - int(b[43])
			b[43]--
			a := b[48+16*i : 64+16*i]
			var t [16]byte
			copy(t[:], a)
			copy(a, b[24:40])
			copy(b[24:40], t[:])
			b[7]--
		}
	}
	// SRH: segment list in reverse order, Segment List[0] is the final one.
	srh := func() []byte {
		h2, h1 := hop(2), hop(1)
		rh := []byte{0, 6, rtSegment, 2, 2, 0, 0, 0}
		rh = append(rh, final[:]...)
		rh = append(rh, h2[:]...)
		rh = append(rh, h1[:]...)
		return rh
	}
	srhRoute := func(b []byte) {
		for b[43] > 0 {
			b[43]--
			sl := int(b[43])
			copy(b[24:40], b[48+16*sl:64+16*sl])
		}
	}
	cases := []tc{
		{"type0", type0(rtType0, hop(2), hop(3), final), hop(1), swapRoute},
		{"type2", type0(rtType2, final), hop(1), swapRoute},
		{"srh", srh(), hop(1), srhRoute},
	}
	for _, a := range []suite.Auth{suite.AuthSHA384, suite.AuthGMAC128} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", a, c.name), func(t *testing.T) {
				key := keyFor(t, a)
				out, in := newPair(t, a, pairOpts{mode: sa.Transport, outer6: true, key: key})
				d := withIPv6Ext(transportDatagram(true, 20), packet.ProtoRouting, c.rh, 0)
				copy(d[24:40], c.first[:])
				p := bufOf(d)
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
				if !bytes.Equal(p.Bytes()[:40+len(c.rh)], d[:40+len(c.rh)]) && !onlyProtoLen(p.Bytes(), d, len(c.rh)) {
					t.Fatal("the routing header or destination was not restored after the ICV")
				}
				c.route(p.Bytes())
				if !bytes.Equal(p.Bytes()[24:40], final[:]) {
					t.Fatalf("simulated routing ended at %x", p.Bytes()[24:40])
				}
				checkReference(t, a, key, p.Bytes(), out.LastSeq(), false)
				if err := LocateAndDecap(in, p); err != sa.ReasonNone {
					t.Fatalf("routed datagram at its final destination: %v", err)
				}
			})
		}
	}
	t.Run("unpredictable", func(t *testing.T) {
		out, _ := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport, outer6: true})
		rh := type0(3, final) // RPL source route: not predicted
		d := withIPv6Ext(transportDatagram(true, 20), packet.ProtoRouting, rh, 0)
		if err := Encap(out, bufOf(d)); err != sa.OutError {
			t.Fatalf("got %v, want XfrmOutError", err)
		}
	})
}

// onlyProtoLen reports whether a protected datagram's headers differ from
// the original's only in the payload length and the routing header's next header.
func onlyProtoLen(prot, orig []byte, rhLen int) bool {
	a, b := clone(prot[:40+rhLen]), clone(orig[:40+rhLen])
	a[4], a[5], b[4], b[5] = 0, 0, 0, 0
	a[40], b[40] = 0, 0
	return bytes.Equal(a, b)
}

func TestReplayBehaviour(t *testing.T) {
	out, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Tunnel, window: 64})
	packettest.CheckReplayWindow(t, in, func() []byte {
		p := bufOf(innerDatagram(false, 10))
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		return clone(p.Bytes())
	}, func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
}

// TestReplayWindowNotMovedByForgery: a packet with a high sequence number
// and a bad ICV must not advance the window.
func TestReplayWindowNotMovedByForgery(t *testing.T) {
	out, in := newPair(t, suite.AuthGMAC128, pairOpts{mode: sa.Transport})
	var pkts [][]byte
	for range 3 {
		p := bufOf(transportDatagram(false, 10))
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		pkts = append(pkts, clone(p.Bytes()))
	}
	forged := clone(pkts[0])
	binary.BigEndian.PutUint32(forged[28:], 1000) // sequence number
	if err := LocateAndDecap(in, bufOf(forged)); err != sa.InStateProtoError {
		t.Fatalf("forged packet: got %v, want XfrmInStateProtoError", err)
	}
	if in.Replay.Top() != 0 {
		t.Fatalf("window moved to %d by a forged packet", in.Replay.Top())
	}
	for i, pk := range pkts {
		if err := LocateAndDecap(in, bufOf(pk)); err != sa.ReasonNone {
			t.Fatalf("packet %d after the forgery: %v", i+1, err)
		}
	}
}

func TestESNBoundary(t *testing.T) {
	for _, a := range []suite.Auth{suite.AuthSHA1, suite.AuthGMAC256} {
		t.Run(string(a), func(t *testing.T) {
			out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, esn: true, window: 128})
			packettest.CheckESNBoundary(t, out, in, func() (*packet.Buf, sa.Reason) {
				p := bufOf(innerDatagram(false, 20))
				return p, Encap(out, p)
			}, func(pkt []byte) uint32 { return binary.BigEndian.Uint32(pkt[28:]) },
				func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
		})
	}
}

// TestESNHighBitsAuthenticated: a receiver whose idea of the high half
// differs rejects the packet as an ICV failure; without ESN the same
// low half verifies.
func TestESNHighBitsAuthenticated(t *testing.T) {
	for _, a := range []suite.Auth{suite.AuthSHA256, suite.AuthGMAC128} {
		out, in := newPair(t, a, pairOpts{mode: sa.Transport, esn: true})
		if err := out.SetSeq(5 << 32); err != nil {
			t.Fatal(err)
		}
		p := bufOf(transportDatagram(false, 20))
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		if err := LocateAndDecap(in, p); err != sa.InStateProtoError {
			t.Fatalf("%s: got %v, want XfrmInStateProtoError", a, err)
		}
		in.Replay.SetTop(5 << 32)
		if err := LocateAndDecap(in, p); err != sa.ReasonNone {
			t.Fatalf("%s with the right high half: %v", a, err)
		}
	}
}

func TestSequenceNeverWraps(t *testing.T) {
	for _, esn := range []bool{false, true} {
		out, _ := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Tunnel, esn: esn})
		packettest.CheckSeqNeverWraps(t, out, esn, func() sa.Reason { return Encap(out, bufOf(innerDatagram(false, 10))) })
	}
}

func TestFragmentsRefused(t *testing.T) {
	out4, in4 := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport})
	out6, in6 := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport, outer6: true})
	mf := transportDatagram(false, 30)
	mf[6] = 0x20
	fixIPv4Checksum(mf)
	off := transportDatagram(false, 30)
	off[7] = 0x10
	fixIPv4Checksum(off)
	frag6 := withIPv6Ext(transportDatagram(true, 30), packet.ProtoFragment, []byte{0, 0, 0, 1, 0, 0, 0, 9}, 0)
	for name, c := range map[string]struct {
		s *sa.SA
		d []byte
	}{"ipv4-mf": {out4, mf}, "ipv4-offset": {out4, off}, "ipv6-fragment-header": {out6, frag6}} {
		if err := Encap(c.s, bufOf(c.d)); err != sa.OutFragment {
			t.Fatalf("Encap %s: got %v, want SecnicOutFragment", name, err)
		}
	}

	// Inbound: a valid AH datagram that arrives as a fragment.
	p := bufOf(transportDatagram(false, 30))
	if err := Encap(out4, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	p.Bytes()[6] |= 0x20
	fixIPv4Checksum(p.Bytes())
	if err := LocateAndDecap(in4, p); err != sa.InFragment {
		t.Fatalf("Decap IPv4 fragment: got %v, want SecnicInFragment", err)
	}
	p6 := bufOf(transportDatagram(true, 30))
	if err := Encap(out6, p6); err != sa.ReasonNone {
		t.Fatal(err)
	}
	f6 := withIPv6Ext(p6.Bytes(), packet.ProtoFragment, []byte{0, 0, 0, 1, 0, 0, 0, 9}, 0)
	if err := LocateAndDecap(in6, bufOf(f6)); err != sa.InFragment {
		t.Fatalf("Decap IPv6 fragment: got %v, want SecnicInFragment", err)
	}
	if in4.Stats.Dropped(sa.InFragment) != 1 || out6.Stats.Dropped(sa.OutFragment) != 1 {
		t.Fatal("fragments not counted")
	}
}

func TestMalformedInput(t *testing.T) {
	for _, a := range []suite.Auth{suite.AuthSHA256, suite.AuthGMAC128} {
		for _, f := range families {
			out, in := newPair(t, a, pairOpts{mode: f.mode, outer6: f.outer6, window: -1})
			if err := Encap(out, bufOf([]byte{0x45, 0, 0})); err != sa.OutError {
				t.Fatalf("short datagram: got %v", err)
			}
			p := bufOf(f.datagram(10))
			if err := Encap(out, p); err != sa.ReasonNone {
				t.Fatal(err)
			}
			prot := clone(p.Bytes())
			for cut := 0; cut < len(prot); cut++ {
				q := bufOf(prot[:cut])
				if err := LocateAndDecap(in, q); err == sa.ReasonNone {
					t.Fatalf("truncated to %d bytes but accepted", cut)
				}
			}
			// Every other payload length field value is refused before the ICV.
			ahOff := ahOffset(t, prot)
			for v := range 256 {
				if v == int(prot[ahOff+1]) {
					continue
				}
				q := bufOf(prot)
				q.Bytes()[ahOff+1] = byte(v)
				if err := LocateAndDecap(in, q); err == sa.ReasonNone {
					t.Fatalf("payload length %d accepted", v)
				}
			}
		}
	}
}

// TestAcceptsEightByteAlignedIPv4: an IPv4 AH header padded to 8 bytes (as
// some implementations send) verifies.
func TestAcceptsEightByteAlignedIPv4(t *testing.T) {
	key := keyFor(t, suite.AuthSHA256)
	// A 32-byte AH (ICV 16, padding 4) behind an IPv4 header.
	in4 := newSA(t, suite.AuthSHA256, sa.In, pairOpts{mode: sa.Transport, key: key})
	d := transportDatagram(false, 16)
	prot := make([]byte, 0, len(d)+32)
	prot = append(prot, d[:20]...)
	prot = append(prot, make([]byte, 32)...)
	prot = append(prot, d[20:]...)
	prot[9] = packet.ProtoAH
	h := prot[20:52]
	h[0], h[1] = packet.ProtoUDP, 32/4-2
	binary.BigEndian.PutUint32(h[4:], 0x1234)
	binary.BigEndian.PutUint32(h[8:], 1)
	packet.IPv4(prot).SetTotalLen(len(prot))
	fixIPv4Checksum(prot)
	icv, _ := refICV(t, suite.AuthSHA256, key, prot, 1, false)
	copy(h[12:], icv)
	p := bufOf(prot)
	if err := LocateAndDecap(in4, p); err != sa.ReasonNone {
		t.Fatalf("8-byte-aligned AH behind IPv4: %v", err)
	}
	if !bytes.Equal(p.Bytes(), d) {
		t.Fatal("datagram not restored")
	}
}

func TestMismatch(t *testing.T) {
	out, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Tunnel})
	p := bufOf(innerDatagram(false, 10))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	prot := clone(p.Bytes())
	q := bufOf(prot)
	binary.BigEndian.PutUint32(q.Bytes()[24:], 0x9999)
	if err := LocateAndDecap(in, q); err != sa.InStateMismatch {
		t.Fatalf("other SPI: got %v, want XfrmInStateMismatch", err)
	}
	q = bufOf(prot)
	q.Bytes()[9] = packet.ProtoESP
	fixIPv4Checksum(q.Bytes())
	if err := LocateAndDecap(in, q); err != sa.InStateMismatch {
		t.Fatalf("ESP packet: got %v, want XfrmInStateMismatch", err)
	}
	q = bufOf(prot)
	q.Bytes()[9] = packet.ProtoUDP
	fixIPv4Checksum(q.Bytes())
	if err := LocateAndDecap(in, q); err != sa.InHdrError {
		t.Fatalf("not IPsec: got %v, want XfrmInHdrError", err)
	}
	q = bufOf(prot)
	q.Bytes()[10] ^= 1 // bad IPv4 header checksum
	if err := LocateAndDecap(in, q); err != sa.InHdrError {
		t.Fatalf("bad checksum: got %v, want XfrmInHdrError", err)
	}
}

// TestModeMismatch: a tunnel-mode SA refuses a verified packet whose AH
// next header is not an IP datagram.
func TestModeMismatch(t *testing.T) {
	key := keyFor(t, suite.AuthSHA256)
	out, _ := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport, key: key})
	in := newSA(t, suite.AuthSHA256, sa.In, pairOpts{mode: sa.Tunnel, key: key})
	p := bufOf(transportDatagram(false, 10))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	if err := LocateAndDecap(in, p); err != sa.InStateModeError {
		t.Fatalf("got %v, want XfrmInStateModeError", err)
	}
}

func TestWrongProtocolSA(t *testing.T) {
	su, err := suite.New(suite.Params{Enc: suite.EncAESGCM128, Auth: suite.AuthNone, EncKey: randKey(20)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sa.New(sa.Params{SPI: 0x1234, Proto: sa.ESP, Dir: sa.Out, Mode: sa.Transport}, su)
	if err != nil {
		t.Fatal(err)
	}
	if err := Encap(s, bufOf(transportDatagram(false, 10))); err != sa.OutError {
		t.Fatalf("ESP SA given to AH Encap: got %v", err)
	}
	if err := LocateAndDecap(s, bufOf(transportDatagram(false, 10))); err != sa.InStateMismatch {
		t.Fatalf("ESP SA given to AH Decap: got %v", err)
	}
}

func TestDeletedSARefuses(t *testing.T) {
	for _, a := range []suite.Auth{suite.AuthSHA256, suite.AuthGMAC128} {
		out, in := newPair(t, a, pairOpts{mode: sa.Tunnel})
		packettest.CheckDeletedSARefuses(t, out, in, func() (*packet.Buf, sa.Reason) {
			p := bufOf(innerDatagram(false, 10))
			return p, Encap(out, p)
		}, func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
	}
}

func TestECNDecap(t *testing.T) {
	out, in := newPair(t, suite.AuthGMAC128, pairOpts{mode: sa.Tunnel, window: -1})
	packettest.CheckECNDecap(t, func(p *packet.Buf) sa.Reason { return Encap(out, p) },
		func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
}

func TestTunnelOuterHeader(t *testing.T) {
	for _, df := range []sa.DFMode{sa.DFCopy, sa.DFSet, sa.DFClear} {
		out := newSA(t, suite.AuthSHA256, sa.Out, pairOpts{mode: sa.Tunnel, key: keyFor(t, suite.AuthSHA256)})
		out.DF = df
		p := bufOf(innerDatagram(false, 10)) // DF set inside
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		h := packet.IPv4(p.Bytes())
		wantDF := df != sa.DFClear
		if h.DF() != wantDF || h.TTL() != sa.DefaultTTL || h.Src() != v4a || h.Dst() != v4b || h.Protocol() != packet.ProtoAH {
			t.Fatalf("DF mode %d: outer header %x", df, p.Bytes()[:20])
		}
	}
}

func TestBufferTooSmall(t *testing.T) {
	out, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Tunnel})
	d := innerDatagram(false, 10)
	p := &packet.Buf{B: make([]byte, 30+len(d)+TailScratch), Off: 30}
	p.Len = copy(p.B[30:], d)
	if err := Encap(out, p); err != sa.OutBufferError {
		t.Fatalf("no headroom: got %v, want SecnicOutBufferError", err)
	}
	p = &packet.Buf{B: make([]byte, 100+len(d)+TailScratch-1), Off: 100}
	p.Len = copy(p.B[100:], d)
	if err := Encap(out, p); err != sa.OutBufferError {
		t.Fatalf("no tailroom: got %v, want SecnicOutBufferError", err)
	}
	p = bufOf(d)
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	prot := clone(p.Bytes())
	q := &packet.Buf{B: make([]byte, len(prot)+10)}
	q.Len = copy(q.B, prot)
	if err := LocateAndDecap(in, q); err != sa.InBufferError {
		t.Fatalf("no tailroom inbound: got %v, want XfrmInBufferError", err)
	}
	if !bytes.Equal(q.Bytes(), prot) {
		t.Fatal("failed Decap changed the packet")
	}
}

// TestFailedDecapLeavesPacket: whatever the failure, the datagram bytes are
// as they arrived (the NIC may still indicate the packet with an error).
func TestFailedDecapLeavesPacket(t *testing.T) {
	for _, a := range []suite.Auth{suite.AuthSHA1, suite.AuthGMAC256} {
		out, in := newPair(t, a, pairOpts{mode: sa.Transport, outer6: true})
		hbh := []byte{0, 0, 0x3e, 4, 9, 9, 9, 9}
		p := bufOf(withIPv6Ext(transportDatagram(true, 24), packet.ProtoHopByHop, hbh, 0))
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		p.Bytes()[len(p.Bytes())-1] ^= 1
		prot := clone(p.Bytes())
		if err := LocateAndDecap(in, p); err != sa.InStateProtoError {
			t.Fatalf("%s: got %v, want XfrmInStateProtoError", a, err)
		}
		if !bytes.Equal(p.Bytes(), prot) {
			t.Fatalf("%s: failed Decap changed the packet:\n got %x\nwant %x", a, p.Bytes(), prot)
		}
	}
}

func TestLinkLayerPaddingIgnored(t *testing.T) {
	out, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Transport})
	orig := transportDatagram(false, 5)
	p := bufOf(orig)
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	q := bufOf(append(clone(p.Bytes()), 0, 0, 0, 0, 0, 0)) // Ethernet minimum-frame padding
	if err := LocateAndDecap(in, q); err != sa.ReasonNone {
		t.Fatal(err)
	}
	if !bytes.Equal(q.Bytes(), orig) {
		t.Fatalf("got %x, want %x", q.Bytes(), orig)
	}
}

// TestLegacyRefused: HMAC-MD5-96 needs allow_legacy.
func TestLegacyRefused(t *testing.T) {
	if _, err := suite.New(suite.Params{Auth: suite.AuthMD5, AuthKey: randKey(16)}); err == nil {
		t.Fatal("HMAC-MD5-96 accepted without allow_legacy")
	}
}

// TestDecapRefusesAnUnlocatedPacket: Decap trusts the caller's Loc, but one
// that locates no datagram (the zero Loc, what bundle.Decap leaves for a
// datagram Locate refused) is a header error, not a crash.
func TestDecapRefusesAnUnlocatedPacket(t *testing.T) {
	_, in := newPair(t, suite.AuthSHA256, pairOpts{mode: sa.Tunnel})
	for _, d := range [][]byte{{0x45}, innerDatagram(false, 10)} {
		if r := Decap(in, bufOf(d), &packet.Loc{}); r != sa.InHdrError {
			t.Fatalf("Decap of %d bytes with the zero Loc: %v, want XfrmInHdrError", len(d), r)
		}
	}
}
