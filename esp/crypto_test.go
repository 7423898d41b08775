package esp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// stackESP lays out a transport-mode ESP packet as a host stack does in
// crypto offload: IP header, SPI, sequence number, IV room, payload,
// padding, pad length, next header, ICV room. It returns the buffer and
// the ESP offset.
func stackESP(s *sa.SA, d []byte, seq uint32) (*packet.Buf, int) {
	sp, _ := packet.SplitIP(d)
	su := s.Suite
	pay := d[sp.HdrLen:]
	pad := (su.Align() - (len(pay)+2)%su.Align()) % su.Align()
	out := append([]byte(nil), d[:sp.HdrLen]...)
	h := make([]byte, HeaderLen+su.IVLen())
	binary.BigEndian.PutUint32(h, s.SPI)
	binary.BigEndian.PutUint32(h[4:], seq)
	out = append(out, h...)
	out = append(out, pay...)
	for i := range pad {
		out = append(out, byte(i+1))
	}
	out = append(out, byte(pad), sp.Proto)
	out = append(out, make([]byte, su.ICVLen())...)
	out[sp.NextOff] = packet.ProtoESP
	packet.SetLength(out)
	return bufOf(out), sp.HdrLen
}

// TestCryptoSealOpen: what Seal makes of a stack-built packet, the
// packet-offload Decap accepts (and restores the datagram); what the
// packet-offload Encap makes, Open verifies and decrypts in place. For
// every algorithm, IPv4 and IPv6, with and without ESN.
func TestCryptoSealOpen(t *testing.T) {
	for _, a := range allAlgs() {
		for _, v6 := range []bool{false, true} {
			for _, esn := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/v6=%v/esn=%v", a.name, v6, esn), func(t *testing.T) {
					out, in := newPair(t, a, pairOpts{mode: sa.Transport, outer6: v6, esn: esn})
					d := transportDatagram(v6, 77)
					for seq := uint32(1); seq <= 3; seq++ {
						p, off := stackESP(out, d, seq)
						// Bytes after the packet must survive the suite's slack.
						tail := p.B[p.Off+p.Len : p.Off+p.Len+32]
						for i := range tail {
							tail[i] = 0xa5
						}
						if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.ReasonNone {
							t.Fatalf("Seal: %v", r)
						}
						if !bytes.Equal(tail, bytes.Repeat([]byte{0xa5}, 32)) {
							t.Fatal("Seal changed the bytes after the packet")
						}
						if r := LocateAndDecap(in, p); r != sa.ReasonNone {
							t.Fatalf("packet-offload Decap of a sealed packet: %v", r)
						}
						if !bytes.Equal(p.Bytes(), d) {
							t.Fatal("Decap did not restore the datagram")
						}
					}
					// The same sequence number again, or one below: refused.
					p, off := stackESP(out, d, 3)
					if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.OutStateSeqError {
						t.Fatalf("repeated sequence number: %v, want OutStateSeqError", r)
					}
					// Packet offload out, crypto offload in.
					out2, in2 := newPair(t, a, pairOpts{mode: sa.Transport, outer6: v6, esn: esn})
					q := bufOf(d)
					if r := Encap(out2, q); r != sa.ReasonNone {
						t.Fatal(r)
					}
					w := bytes.Clone(q.Bytes())
					sp, _ := packet.SplitIP(w)
					next, pad, r := Open(in2, q.Bytes(), sp.HdrLen, q.Len, &q.CB)
					if r != OpenOK || next != packet.ProtoUDP {
						t.Fatalf("Open: %v next %d", r, next)
					}
					ptOff := sp.HdrLen + HeaderLen + in2.Suite.IVLen()
					if got := q.Bytes()[ptOff : ptOff+len(d)-sp.HdrLen]; !bytes.Equal(got, d[sp.HdrLen:]) {
						t.Fatal("Open did not decrypt in place")
					}
					if int(q.Bytes()[q.Len-in2.Suite.ICVLen()-2]) != int(pad) {
						t.Fatal("pad length")
					}
					// Tampered: the ICV fails; truncated: too short.
					w[len(w)-1] ^= 1
					q = bufOf(w)
					if _, _, r := Open(in2, q.Bytes(), sp.HdrLen, q.Len, &q.CB); r != OpenAuthFailed {
						t.Fatalf("tampered: %v", r)
					}
					if _, _, r := Open(in2, q.Bytes(), sp.HdrLen, sp.HdrLen+HeaderLen+2, &q.CB); r != OpenShort {
						t.Fatalf("short: %v", r)
					}
				})
			}
		}
	}
}

func TestCryptoSealRefusals(t *testing.T) {
	out, _ := newPair(t, alg{name: "gcm", enc: "aes-gcm-128", auth: "none"}, pairOpts{mode: sa.Transport})
	d := transportDatagram(false, 40)
	p, off := stackESP(out, d, 1)
	binary.BigEndian.PutUint32(p.Bytes()[off:], 0x9999)
	if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.OutError {
		t.Fatalf("wrong SPI: %v", r)
	}
	p, off = stackESP(out, d, 0)
	if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.OutStateSeqError {
		t.Fatalf("sequence number 0: %v", r)
	}
	p, off = stackESP(out, d, 5) // a gap is fine
	if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.ReasonNone || out.LastSeq() != 5 {
		t.Fatalf("gap: %v, last %d", r, out.LastSeq())
	}
	p, off = stackESP(out, d, 6)
	if r := Seal(out, p.Bytes(), off, p.Len-3, &p.CB); r != sa.OutError || out.LastSeq() != 5 {
		t.Fatalf("misaligned: %v (last %d), want OutError without spending the number", r, out.LastSeq())
	}
}
