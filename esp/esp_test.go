package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/sa"
)

// TestRoundTrip runs every algorithm in every mode and IP-family combination,
// with and without ESN and UDP encapsulation, and checks that decapsulation
// restores the original datagram byte for byte.
func TestRoundTrip(t *testing.T) {
	type fam struct {
		name           string
		inner6, outer6 bool
		mode           sa.Mode
	}
	fams := []fam{
		{"transport-v4", false, false, sa.Transport},
		{"transport-v6", true, true, sa.Transport},
		{"tunnel-4in4", false, false, sa.Tunnel},
		{"tunnel-6in6", true, true, sa.Tunnel},
		{"tunnel-4in6", false, true, sa.Tunnel},
		{"tunnel-6in4", true, false, sa.Tunnel},
	}
	for _, a := range allAlgs() {
		for _, f := range fams {
			for _, esn := range []bool{false, true} {
				for _, encap := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/esn=%v/udp=%v", a.name, f.name, esn, encap)
					t.Run(name, func(t *testing.T) {
						out, in := newPair(t, a, pairOpts{mode: f.mode, outer6: f.outer6, esn: esn, encap: encap})
						for _, n := range []int{0, 1, 13, 100, 1400} {
							var orig []byte
							if f.mode == sa.Transport {
								orig = transportDatagram(f.outer6, n)
							} else {
								orig = datagram(f.inner6, n)
							}
							p := bufOf(orig)
							if err := Encap(out, p); err != sa.ReasonNone {
								t.Fatalf("Encap(%d bytes): %v", n, err)
							}
							checkWire(t, p.Bytes(), out, f.outer6, encap)
							if err := LocateAndDecap(in, p); err != sa.ReasonNone {
								t.Fatalf("Decap(%d bytes): %v", n, err)
							}
							if !bytes.Equal(p.Bytes(), orig) {
								t.Fatalf("round trip of %d bytes changed the datagram:\n got %x\nwant %x", n, p.Bytes(), orig)
							}
						}
					})
				}
			}
		}
	}
}

// checkWire checks the outer header and ESP framing of a protected datagram.
func checkWire(t *testing.T, pkt []byte, s *sa.SA, outer6, encap bool) {
	t.Helper()
	sp, err := packet.SplitIP(pkt)
	if err != nil || sp.Len != len(pkt) {
		t.Fatalf("protected datagram has bad IP header (len %d, split %+v): %v", len(pkt), sp, err)
	}
	if (packet.Version(pkt) == 6) != outer6 {
		t.Fatalf("outer family: got version %d", packet.Version(pkt))
	}
	if !outer6 && !packet.IPv4(pkt).ChecksumValid() {
		t.Fatalf("outer IPv4 checksum invalid")
	}
	want := uint8(packet.ProtoESP)
	if encap {
		want = packet.ProtoUDP
	}
	if sp.Proto != want {
		t.Fatalf("outer protocol %d, want %d", sp.Proto, want)
	}
	l, err := packet.Locate(pkt, 4500)
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	if l.SPI != s.SPI {
		t.Fatalf("SPI 0x%x, want 0x%x", l.SPI, s.SPI)
	}
	if got := uint64(binary.BigEndian.Uint32(pkt[l.Off+4:])); got != s.LastSeq()&math.MaxUint32 {
		t.Fatalf("seq %d, want %d", got, s.LastSeq())
	}
	if encap {
		u := packet.UDP(pkt[sp.HdrLen:])
		if u.Length() != len(pkt)-sp.HdrLen || u.DstPort() != 4500 {
			t.Fatalf("bad UDP header: len %d port %d", u.Length(), u.DstPort())
		}
	}
	// E6/E7: ciphertext aligned, ICV 4-byte aligned.
	ctLen := len(pkt) - l.Off - HeaderLen - s.Suite.IVLen() - s.Suite.ICVLen()
	if ctLen%s.Suite.Align() != 0 || (len(pkt)-l.Off-s.Suite.ICVLen())%4 != 0 {
		t.Fatalf("misaligned ESP payload: ct %d", ctLen)
	}
}

// TestTamper flips every byte of protected packets and expects a drop,
// never a panic and never a delivered packet.
func TestTamper(t *testing.T) {
	for _, a := range allAlgs() {
		t.Run(a.name, func(t *testing.T) {
			for _, mode := range []sa.Mode{sa.Transport, sa.Tunnel} {
				out, in := newPair(t, a, pairOpts{mode: mode, esn: true, window: -1})
				var orig []byte
				if mode == sa.Transport {
					orig = transportDatagram(false, 40)
				} else {
					orig = datagram(false, 40)
				}
				p := bufOf(orig)
				if err := Encap(out, p); err != sa.ReasonNone {
					t.Fatal(err)
				}
				prot := append([]byte(nil), p.Bytes()...)
				sp, _ := packet.SplitIP(prot)
				for i := sp.HdrLen; i < len(prot); i++ {
					q := bufOf(prot)
					q.Bytes()[i] ^= 0x01
					if err := LocateAndDecap(in, q); err == sa.ReasonNone {
						t.Fatalf("%v: flipping byte %d of %d went undetected", mode, i, len(prot))
					}
				}
				// The untouched packet still verifies (anti-replay off).
				if err := LocateAndDecap(in, bufOf(prot)); err != sa.ReasonNone {
					t.Fatalf("untampered packet: %v", err)
				}
			}
		})
	}
}

func TestReplayBehaviour(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, window: 64})
	packettest.CheckReplayWindow(t, in, func() []byte {
		p := bufOf(datagram(false, 10))
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		return append([]byte(nil), p.Bytes()...)
	}, func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
}

// TestESNBoundary crosses the 2^32 boundary: the wire carries only the low
// half, the receiver reconstructs the high half, and a packet whose high
// half was guessed wrong fails the ICV.
func TestESNBoundary(t *testing.T) {
	for _, a := range []alg{
		{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"},
		{name: "aes-gmac-128", enc: "aes-gmac-128", auth: "none"},
		{name: "chacha20-poly1305", enc: "chacha20-poly1305", auth: "none"},
		{name: "aes-cbc-128+hmac-sha256-128", enc: "aes-cbc-128", auth: "hmac-sha256-128"},
	} {
		t.Run(a.name, func(t *testing.T) {
			out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, esn: true, window: 128})
			packettest.CheckESNBoundary(t, out, in, func() (*packet.Buf, sa.Reason) {
				p := bufOf(datagram(false, 20))
				return p, Encap(out, p)
			}, func(pkt []byte) uint32 { return seqOf(t, pkt) },
				func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
		})
	}
}

// TestESNHighBitsAuthenticated: without ESN the same packet verifies; with
// ESN a receiver whose high bits differ rejects it as an ICV failure.
func TestESNHighBitsAuthenticated(t *testing.T) {
	a := alg{name: "aes-cbc-128+hmac-sha1-96", enc: "aes-cbc-128", auth: "hmac-sha1-96"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, esn: true})
	if err := out.SetSeq(5 << 32); err != nil {
		t.Fatal(err)
	}
	p := bufOf(datagram(false, 20))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	// The receiver believes the high half is 0.
	if err := LocateAndDecap(in, p); err != sa.InStateProtoError {
		t.Fatalf("got %v, want XfrmInStateProtoError", err)
	}
}

func TestSequenceNeverWraps(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	for _, esn := range []bool{false, true} {
		out, _ := newPair(t, a, pairOpts{mode: sa.Tunnel, esn: esn})
		packettest.CheckSeqNeverWraps(t, out, esn, func() sa.Reason { return Encap(out, bufOf(datagram(false, 10))) })
	}
}

func TestDummyPacketDropped(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Transport})
	p := bufOf(transportDatagram(false, 30))
	// Make the upper-layer protocol 59: ESP's next header becomes 59.
	p.Bytes()[9] = packet.ProtoNoNext
	packet.IPv4(p.Bytes()).UpdateChecksum()
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	if err := LocateAndDecap(in, p); err != sa.InDummy {
		t.Fatalf("got %v, want SecnicInDummy", err)
	}
	if in.Stats.Dropped(sa.InDummy) != 1 {
		t.Fatal("dummy packet not counted")
	}
}

func TestTFCPaddingRemoved(t *testing.T) {
	a := alg{name: "aes-gcm-256", enc: "aes-gcm-256", auth: "none"}
	for _, inner6 := range []bool{false, true} {
		out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, tfc: 1000})
		orig := datagram(inner6, 50)
		p := bufOf(orig)
		if err := Encap(out, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		if p.Len < 1000 {
			t.Fatalf("TFC padding not applied: %d bytes", p.Len)
		}
		if err := LocateAndDecap(in, p); err != sa.ReasonNone {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Bytes(), orig) {
			t.Fatalf("TFC padding not removed: %d bytes, want %d", p.Len, len(orig))
		}
	}
}

func TestBadPaddingRejected(t *testing.T) {
	// NULL encryption lets the test edit the padding and recompute nothing:
	// the ICV then fails, so instead build the packet with a wrong pad
	// byte before sealing by corrupting the plaintext through a custom SA.
	a := alg{name: "null+hmac-sha256-128", enc: "null", auth: "hmac-sha256-128"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel})
	p := bufOf(datagram(false, 21)) // 21+20 = 41 bytes + 2 => 1 pad byte to align 4
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	pkt := p.Bytes()
	icv := out.Suite.ICVLen()
	padLenOff := len(pkt) - icv - 2
	if pkt[padLenOff] == 0 {
		t.Fatal("test datagram produced no padding")
	}
	pkt[padLenOff-1] = 0x77 // corrupt the padding byte
	// Re-seal with the same sequence number (the test owns both SAs).
	l, _ := packet.Locate(pkt, 0)
	if err := out.Suite.SealESP(p.Data(), l.Off, out.LastSeq(), false, &p.CB); err != nil {
		t.Fatal(err)
	}
	if err := LocateAndDecap(in, p); err != sa.InPadError {
		t.Fatalf("got %v, want SecnicInPadError", err)
	}
}

func TestFragmentsRefused(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, _ := newPair(t, a, pairOpts{mode: sa.Transport})
	d := transportDatagram(false, 30)
	d[6] = 0x20 // MF
	packet.IPv4(d).UpdateChecksum()
	if err := Encap(out, bufOf(d)); err != sa.OutFragment {
		t.Fatalf("got %v, want SecnicOutFragment", err)
	}
}

func TestMalformedInput(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel})
	if err := Encap(out, bufOf([]byte{0x45, 0, 0})); err != sa.OutError {
		t.Fatalf("short datagram: got %v", err)
	}
	p := bufOf(datagram(false, 10))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	prot := append([]byte(nil), p.Bytes()...)
	for cut := 1; cut < len(prot); cut++ {
		q := bufOf(prot[:cut])
		if err := LocateAndDecap(in, q); err == sa.ReasonNone {
			t.Fatalf("truncated to %d bytes but accepted", cut)
		}
	}
}

func TestUnknownSPIMismatch(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel})
	p := bufOf(datagram(false, 10))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	l, _ := packet.Locate(p.Bytes(), 0)
	binary.BigEndian.PutUint32(p.Bytes()[l.Off:], 0x9999)
	if err := LocateAndDecap(in, p); err != sa.InStateMismatch {
		t.Fatalf("got %v", err)
	}
}

func TestDeletedSARefuses(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel})
	packettest.CheckDeletedSARefuses(t, out, in, func() (*packet.Buf, sa.Reason) {
		p := bufOf(datagram(false, 10))
		return p, Encap(out, p)
	}, func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
}

func TestECNDecap(t *testing.T) {
	a := alg{name: "aes-gcm-128", enc: "aes-gcm-128", auth: "none"}
	out, in := newPair(t, a, pairOpts{mode: sa.Tunnel, window: -1})
	packettest.CheckECNDecap(t, func(p *packet.Buf) sa.Reason { return Encap(out, p) },
		func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
}
