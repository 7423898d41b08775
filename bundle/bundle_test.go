package bundle

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/secnic/secnic/ah"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

type espAlg struct {
	enc  suite.Enc
	auth suite.Auth
}

var espAlgs = []espAlg{
	{suite.EncAESGCM128, suite.AuthNone},
	{suite.EncAESCBC128, suite.AuthSHA256},
}

var ahAlgs = []suite.Auth{suite.AuthSHA256, suite.AuthGMAC128}

type fam struct {
	name           string
	inner6, outer6 bool
}

var tunnelFams = []fam{{"4in4", false, false}, {"6in6", true, true}, {"4in6", false, true}, {"6in4", true, false}}

// TestAHESPTransport: one bundle, ESP then AH, transport mode, IPv4 and
// IPv6: IP | AH | ESP | payload on the wire, the original datagram back.
func TestAHESPTransport(t *testing.T) {
	for _, e := range espAlgs {
		for _, a := range ahAlgs {
			for _, v6 := range []bool{false, true} {
				for _, esn := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s+%s/%s/v6=%v/esn=%v", e.enc, e.auth, a, v6, esn), func(t *testing.T) {
						src, dst := endpoints(v6)
						espD := &saDesc{proto: sa.ESP, enc: e.enc, auth: e.auth, mode: sa.Transport, src: src, dst: dst, spi: 0x100, esn: esn}
						ahD := &saDesc{proto: sa.AH, auth: a, mode: sa.Transport, src: src, dst: dst, spi: 0x200, esn: esn}
						out, in := bundlePair(t, sa.Transport, espD, ahD)
						for _, n := range []int{0, 33, 1000} {
							orig := udpDatagram(src, dst, n)
							p := bufOf(orig)
							if err := ApplyOut(out, p); err != sa.ReasonNone {
								t.Fatal(err)
							}
							checkAHThenESP(t, p.Bytes(), out)
							if grew := p.Len - len(orig); grew > Overhead(out, len(orig)) {
								t.Fatalf("grew by %d, Overhead says at most %d", grew, Overhead(out, len(orig)))
							}
							r, err := ApplyIn(in, p)
							if err != sa.ReasonNone || r.Done != 2 || r.Failed != nil {
								t.Fatalf("ApplyIn: %v (%+v)", err, r)
							}
							if !bytes.Equal(p.Bytes(), orig) {
								t.Fatalf("round trip changed the datagram:\n got %x\nwant %x", p.Bytes(), orig)
							}
						}
					})
				}
			}
		}
	}
}

// checkAHThenESP checks that AH is right behind the (outer) IP header and
// ESP right behind AH.
func checkAHThenESP(t *testing.T, pkt []byte, b *sa.Bundle) {
	t.Helper()
	sp, err := packet.SplitIP(pkt)
	if err != nil || sp.Len != len(pkt) || sp.Proto != packet.ProtoAH {
		t.Fatalf("not an AH datagram: %+v %v", sp, err)
	}
	h := pkt[sp.HdrLen:]
	if h[0] != packet.ProtoESP || binary.BigEndian.Uint32(h[4:]) != b.AH.SPI {
		t.Fatalf("AH next header %d, SPI 0x%x", h[0], binary.BigEndian.Uint32(h[4:]))
	}
	ahLen := (int(h[1]) + 2) * 4
	if spi := binary.BigEndian.Uint32(h[ahLen:]); spi != b.ESP.SPI {
		t.Fatalf("ESP SPI behind AH 0x%x, want 0x%x", spi, b.ESP.SPI)
	}
}

// TestAHESPTunnel: one tunnel-mode bundle. ESP (tunnel) builds the outer
// header, AH goes over it in transport fashion: outer IP | AH | ESP |
// inner IP. The AH SA is tunnel mode like the bundle (as sa.Table makes
// it) or explicitly transport mode; both give the same packet.
func TestAHESPTunnel(t *testing.T) {
	for _, e := range espAlgs {
		for _, a := range ahAlgs {
			for _, f := range tunnelFams {
				for _, ahMode := range []sa.Mode{sa.Tunnel, sa.Transport} {
					t.Run(fmt.Sprintf("%s+%s/%s/%s/ah-%v", e.enc, e.auth, a, f.name, ahMode), func(t *testing.T) {
						src, dst := endpoints(f.outer6)
						espD := &saDesc{proto: sa.ESP, enc: e.enc, auth: e.auth, mode: sa.Tunnel, src: src, dst: dst, spi: 0x100, esn: true}
						ahD := &saDesc{proto: sa.AH, auth: a, mode: ahMode, src: src, dst: dst, spi: 0x200, esn: true}
						out, in := bundlePair(t, sa.Tunnel, espD, ahD)
						hs, hd := hosts(f.inner6)
						for _, n := range []int{0, 33, 1000} {
							orig := udpDatagram(hs, hd, n)
							p := bufOf(orig)
							if err := ApplyOut(out, p); err != sa.ReasonNone {
								t.Fatal(err)
							}
							pkt := p.Bytes()
							checkAHThenESP(t, pkt, out)
							if (packet.Version(pkt) == 6) != f.outer6 {
								t.Fatal("outer family wrong")
							}
							if f.outer6 {
								if packet.IPv6(pkt).Src() != src || packet.IPv6(pkt).Dst() != dst {
									t.Fatal("outer addresses are not the tunnel endpoints")
								}
							} else if packet.IPv4(pkt).Src() != src || packet.IPv4(pkt).Dst() != dst {
								t.Fatal("outer addresses are not the tunnel endpoints")
							}
							if grew := p.Len - len(orig); grew > Overhead(out, len(orig)) {
								t.Fatalf("grew by %d, Overhead says at most %d", grew, Overhead(out, len(orig)))
							}
							r, err := ApplyIn(in, p)
							if err != sa.ReasonNone || r.Done != 2 {
								t.Fatalf("ApplyIn: %v (%+v)", err, r)
							}
							if !bytes.Equal(p.Bytes(), orig) {
								t.Fatalf("round trip changed the datagram:\n got %x\nwant %x", p.Bytes(), orig)
							}
						}
					})
				}
			}
		}
	}
}

// TestAHESPTunnelAuthenticatesOuterHeader: in a tunnel AH+ESP bundle AH
// covers the outer header: its mutable fields may change, its addresses
// may not, and the failure is reported against the AH SA.
func TestAHESPTunnelAuthenticatesOuterHeader(t *testing.T) {
	for _, outer6 := range []bool{false, true} {
		src, dst := endpoints(outer6)
		espD := &saDesc{proto: sa.ESP, enc: suite.EncAESGCM256, auth: suite.AuthNone, mode: sa.Tunnel, src: src, dst: dst, spi: 0x100, window: -1}
		ahD := &saDesc{proto: sa.AH, auth: suite.AuthSHA256, mode: sa.Tunnel, src: src, dst: dst, spi: 0x200, window: -1}
		out, in := bundlePair(t, sa.Tunnel, espD, ahD)
		p := bufOf(udpDatagram(i4a, i4b, 50))
		if err := ApplyOut(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		prot := clone(p.Bytes())
		ttl, srcOff := 8, 12
		if outer6 {
			ttl, srcOff = 7, 8
		}
		q := bufOf(prot)
		q.Bytes()[ttl]--
		fixChecksum(q.Bytes())
		if _, err := ApplyIn(in, q); err != sa.ReasonNone {
			t.Fatalf("outer TTL decremented: %v", err)
		}
		q = bufOf(prot)
		q.Bytes()[srcOff] ^= 1
		fixChecksum(q.Bytes())
		r, err := ApplyIn(in, q)
		if err != sa.InStateProtoError || r.Failed != in.AH || r.FailedIn != in || r.Done != 0 {
			t.Fatalf("outer source changed: %v %+v, want an AH ICV failure", err, r)
		}
	}
}

func fixChecksum(pkt []byte) {
	if packet.Version(pkt) == 4 {
		packet.IPv4(pkt).UpdateChecksum()
	}
}

// TestESPFailureAfterAH: AH verifies, ESP refuses: one SA done, the ESP
// SA is the one that failed.
func TestESPFailureAfterAH(t *testing.T) {
	src, dst := endpoints(false)
	espD := &saDesc{proto: sa.ESP, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: sa.Transport, src: src, dst: dst, spi: 0x100}
	ahD := &saDesc{proto: sa.AH, auth: suite.AuthSHA1, mode: sa.Transport, src: src, dst: dst, spi: 0x200}
	out, _ := bundlePair(t, sa.Transport, espD, ahD)
	espD.encKey = nil // the inbound ESP SA gets another key
	_, in := bundlePair(t, sa.Transport, espD, &saDesc{proto: sa.AH, auth: suite.AuthSHA1, mode: sa.Transport, src: src, dst: dst, spi: 0x200, authKey: ahD.authKey})
	p := bufOf(udpDatagram(src, dst, 20))
	if err := ApplyOut(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	r, err := ApplyIn(in, p)
	if err != sa.InStateProtoError || r.Done != 1 || r.Failed != in.ESP {
		t.Fatalf("got %v %+v, want the ESP SA failing after AH verified", err, r)
	}
	if in.ESP.Stats.Dropped(sa.InStateProtoError) != 1 || in.AH.Stats.Packets.Load() != 1 {
		t.Fatal("counters not on the right SAs")
	}
}

// TestTransportOverTunnel: a transport-mode bundle (ESP or AH, between the
// inner hosts) inside a tunnel-mode bundle (ESP, AH or AH+ESP), IPv4 and
// IPv6 inside and outside.
func TestTransportOverTunnel(t *testing.T) {
	type layer struct {
		name    string
		esp, ah bool
	}
	inners := []layer{{"esp", true, false}, {"ah", false, true}}
	outers := []layer{{"esp", true, false}, {"ah", false, true}, {"ah+esp", true, true}}
	for _, il := range inners {
		for _, ol := range outers {
			for _, f := range tunnelFams {
				t.Run(fmt.Sprintf("%s-in-%s/%s", il.name, ol.name, f.name), func(t *testing.T) {
					hs, hd := hosts(f.inner6)
					es, ed := endpoints(f.outer6)
					var tEsp, tAh, oEsp, oAh *saDesc
					if il.esp {
						tEsp = &saDesc{proto: sa.ESP, enc: suite.EncAESCBC256, auth: suite.AuthSHA512, mode: sa.Transport, src: hs, dst: hd, spi: 0x301}
					}
					if il.ah {
						tAh = &saDesc{proto: sa.AH, auth: suite.AuthGMAC256, mode: sa.Transport, src: hs, dst: hd, spi: 0x302}
					}
					if ol.esp {
						oEsp = &saDesc{proto: sa.ESP, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: sa.Tunnel, src: es, dst: ed, spi: 0x401, esn: true}
					}
					if ol.ah {
						oAh = &saDesc{proto: sa.AH, auth: suite.AuthSHA256, mode: sa.Tunnel, src: es, dst: ed, spi: 0x402, esn: true}
					}
					tOut, tIn := bundlePair(t, sa.Transport, tEsp, tAh)
					oOut, oIn := bundlePair(t, sa.Tunnel, oEsp, oAh)
					outChain, inChain := []*sa.Bundle{tOut, oOut}, []*sa.Bundle{tIn, oIn}
					for _, c := range [][]*sa.Bundle{outChain, inChain} {
						if err := CheckChain(c); err != nil {
							t.Fatal(err)
						}
					}
					for _, n := range []int{0, 40, 1200} {
						orig := udpDatagram(hs, hd, n)
						p := bufOf(orig)
						if err := ApplyChainOut(outChain, p); err != sa.ReasonNone {
							t.Fatal(err)
						}
						pkt := p.Bytes()
						sp, err := packet.SplitIP(pkt)
						wantOuter := uint8(packet.ProtoESP)
						if ol.ah {
							wantOuter = packet.ProtoAH
						}
						if err != nil || sp.Proto != wantOuter || (packet.Version(pkt) == 6) != f.outer6 {
							t.Fatalf("outer header: %+v %v", sp, err)
						}
						if grew := p.Len - len(orig); grew > ChainOverhead(outChain, len(orig)) {
							t.Fatalf("grew by %d, ChainOverhead says at most %d", grew, ChainOverhead(outChain, len(orig)))
						}
						r, reason := ApplyChainIn(inChain, p)
						want := len(tIn.SAs()) + len(oIn.SAs())
						if reason != sa.ReasonNone || r.Done != want {
							t.Fatalf("ApplyChainIn: %v %+v (want %d SAs done)", reason, r, want)
						}
						if !bytes.Equal(p.Bytes(), orig) {
							t.Fatalf("round trip changed the datagram:\n got %x\nwant %x", p.Bytes(), orig)
						}
					}
					// With AH inside, the inner AH is visible once the tunnel is removed.
					if il.ah && !ol.esp {
						p := bufOf(udpDatagram(hs, hd, 10))
						if err := ApplyChainOut(outChain, p); err != sa.ReasonNone {
							t.Fatal(err)
						}
						if _, err := ApplyIn(oIn, p); err != sa.ReasonNone {
							t.Fatal(err)
						}
						if sp, _ := packet.SplitIP(p.Bytes()); sp.Proto != packet.ProtoAH {
							t.Fatalf("inner datagram is protocol %d, want AH", sp.Proto)
						}
					}
				})
			}
		}
	}
}

// TestTransportOverTunnelInnerFailure: the tunnel verifies, the transport
// SA refuses: Done counts the tunnel's SA and Failed names the inner one.
func TestTransportOverTunnelInnerFailure(t *testing.T) {
	tAh := &saDesc{proto: sa.AH, auth: suite.AuthSHA256, mode: sa.Transport, src: i4a, dst: i4b, spi: 0x302}
	oEsp := &saDesc{proto: sa.ESP, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: sa.Tunnel, src: v6a, dst: v6b, spi: 0x401}
	tOut, _ := bundlePair(t, sa.Transport, nil, tAh)
	oOut, oIn := bundlePair(t, sa.Tunnel, oEsp, nil)
	tAh.authKey = nil
	_, tIn := bundlePair(t, sa.Transport, nil, tAh)
	p := bufOf(udpDatagram(i4a, i4b, 10))
	if err := ApplyChainOut([]*sa.Bundle{tOut, oOut}, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	r, err := ApplyChainIn([]*sa.Bundle{tIn, oIn}, p)
	if err != sa.InStateProtoError || r.Done != 1 || r.Failed != tIn.AH || r.FailedIn != tIn {
		t.Fatalf("got %v %+v", err, r)
	}
}

// TestSingleSA: bundles of one SA behave like the SA alone.
func TestSingleSA(t *testing.T) {
	for _, mode := range []sa.Mode{sa.Transport, sa.Tunnel} {
		for _, proto := range []sa.Protocol{sa.ESP, sa.AH} {
			for _, v6 := range []bool{false, true} {
				src, dst := endpoints(v6)
				d := &saDesc{proto: proto, enc: suite.EncChaCha, auth: suite.AuthNone, mode: mode, src: src, dst: dst, spi: 0x500}
				var out, in *sa.Bundle
				if proto == sa.AH {
					d.auth = suite.AuthSHA384
					out, in = bundlePair(t, mode, nil, d)
				} else {
					out, in = bundlePair(t, mode, d, nil)
				}
				orig := udpDatagram(src, dst, 77)
				if mode == sa.Tunnel {
					hs, hd := hosts(!v6)
					orig = udpDatagram(hs, hd, 77)
				}
				p := bufOf(orig)
				if err := ApplyOut(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
				if sp, _ := packet.SplitIP(p.Bytes()); sp.Proto != uint8(proto) {
					t.Fatalf("%v %v: outer protocol %d", mode, proto, sp.Proto)
				}
				if r, err := ApplyIn(in, p); err != sa.ReasonNone || r.Done != 1 || !bytes.Equal(p.Bytes(), orig) {
					t.Fatalf("%v %v v6=%v: %v %+v", mode, proto, v6, err, r)
				}
			}
		}
	}
}

func TestCheck(t *testing.T) {
	mk := func(proto sa.Protocol, dir sa.Direction, mode sa.Mode, encap bool) *sa.SA {
		d := saDesc{proto: proto, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: mode, src: v4a, dst: v4b, spi: 0x600}
		if proto == sa.AH {
			d.auth = suite.AuthSHA256
		}
		d.keys()
		s := d.make(t, dir)
		if encap {
			s.Encap = &sa.UDPEncap{SrcPort: 4500, DstPort: 4500}
		}
		return s
	}
	espT := mk(sa.ESP, sa.Out, sa.Transport, false)
	espTun := mk(sa.ESP, sa.Out, sa.Tunnel, false)
	espTunUDP := mk(sa.ESP, sa.Out, sa.Tunnel, true)
	ahT := mk(sa.AH, sa.Out, sa.Transport, false)
	ahTun := mk(sa.AH, sa.Out, sa.Tunnel, false)
	ahIn := mk(sa.AH, sa.In, sa.Transport, false)
	cases := []struct {
		name string
		b    *sa.Bundle
		want string // "" = valid
	}{
		{"esp", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, ESP: espT}, ""},
		{"ah+esp-transport", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, ESP: espT, AH: ahT}, ""},
		{"ah+esp-tunnel", &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: espTun, AH: ahTun}, ""},
		{"ah+esp-tunnel-ah-transport", &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: espTun, AH: ahT}, ""},
		{"empty", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport}, "needs an ESP SA"},
		{"no-mode", &sa.Bundle{Dir: sa.Out, ESP: espT}, "mode must be"},
		{"direction", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, AH: ahIn}, "one direction"},
		{"ah-in-esp-slot", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, ESP: ahT}, "ESP slot holds"},
		{"esp-in-ah-slot", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, AH: espT}, "AH slot holds"},
		{"esp-mode", &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: espT}, "ESP SA is transport mode"},
		{"ah-tunnel-over-esp-transport", &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, ESP: espT, AH: ahTun}, "two bundles"},
		{"ah-transport-alone-in-tunnel", &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, AH: ahT}, "two bundles"},
		{"ah-over-udp-esp", &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: espTunUDP, AH: ahTun}, "NAT"},
	}
	for _, c := range cases {
		err := Check(c.b)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
	tb := &sa.Bundle{Dir: sa.Out, Mode: sa.Transport, ESP: espT}
	un := &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: espTun}
	chains := []struct {
		name  string
		chain []*sa.Bundle
		want  string
	}{
		{"one", []*sa.Bundle{un}, ""},
		{"transport-over-tunnel", []*sa.Bundle{tb, un}, ""},
		{"reversed", []*sa.Bundle{un, tb}, "transport-mode bundle first"},
		{"tunnel-in-tunnel", []*sa.Bundle{un, un}, "transport-mode bundle first"},
		{"none", nil, "not 0"},
		{"three", []*sa.Bundle{tb, tb, un}, "not 3"},
		{"directions", []*sa.Bundle{{Dir: sa.In, Mode: sa.Transport, AH: ahIn}, un}, "one direction"},
	}
	for _, c := range chains {
		err := CheckChain(c.chain)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("chain %s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("chain %s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
}

func TestEmptyBundleRefused(t *testing.T) {
	b := &sa.Bundle{Dir: sa.Out, Mode: sa.Transport}
	if err := ApplyOut(b, bufOf(udpDatagram(v4a, v4b, 1))); err != sa.OutNoStates {
		t.Fatalf("ApplyOut: %v", err)
	}
	if _, err := ApplyIn(b, bufOf(udpDatagram(v4a, v4b, 1))); err != sa.InNoStates {
		t.Fatalf("ApplyIn: %v", err)
	}
	if err := ApplyChainOut(nil, bufOf(udpDatagram(v4a, v4b, 1))); err != sa.OutNoStates {
		t.Fatalf("ApplyChainOut: %v", err)
	}
	if _, err := ApplyChainIn(nil, bufOf(udpDatagram(v4a, v4b, 1))); err != sa.InNoStates {
		t.Fatalf("ApplyChainIn: %v", err)
	}
}

// TestOverheadMatchesAH: the AH part of a tunnel AH+ESP bundle's overhead
// is the AH header for the outer family.
func TestOverheadMatchesAH(t *testing.T) {
	for _, outer6 := range []bool{false, true} {
		src, dst := endpoints(outer6)
		espD := &saDesc{proto: sa.ESP, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: sa.Tunnel, src: src, dst: dst, spi: 0x100}
		ahD := &saDesc{proto: sa.AH, auth: suite.AuthGMAC128, mode: sa.Tunnel, src: src, dst: dst, spi: 0x200}
		out, _ := bundlePair(t, sa.Tunnel, espD, ahD)
		espOnly := &sa.Bundle{Dir: sa.Out, Mode: sa.Tunnel, ESP: out.ESP}
		if got, want := Overhead(out, 100)-Overhead(espOnly, 100), ah.Len(out.AH, outer6); got != want {
			t.Fatalf("outer6=%v: AH adds %d to the overhead, want %d", outer6, got, want)
		}
	}
}
