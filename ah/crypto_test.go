package ah

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// stackAH lays out a transport-mode AH packet as a host stack does in
// crypto offload (Authentication Data zero) and returns it and AH's offset.
func stackAH(s *sa.SA, d []byte, seq uint32) (*packet.Buf, int) {
	sp, _ := packet.SplitIP(d)
	al := Len(s, packet.Version(d) == 6)
	h := make([]byte, al)
	h[0], h[1] = sp.Proto, byte(al/4-2)
	binary.BigEndian.PutUint32(h[4:], s.SPI)
	binary.BigEndian.PutUint32(h[8:], seq)
	out := append(append(append([]byte(nil), d[:sp.HdrLen]...), h...), d[sp.HdrLen:]...)
	out[sp.NextOff] = packet.ProtoAH
	packet.SetLength(out)
	p := packet.NewBuf(len(out) + 1024)
	p.SetBytes(out)
	return p, sp.HdrLen
}

// TestCryptoSealOpen: a stack-built AH packet sealed by Seal passes the
// packet-offload Decap; a packet-offload Encap passes Open; tampering
// fails. Every integrity transform, IPv4 and IPv6, with and without ESN.
func TestCryptoSealOpen(t *testing.T) {
	for _, a := range allAuths() {
		for _, v6 := range []bool{false, true} {
			for _, esn := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/v6=%v/esn=%v", a, v6, esn), func(t *testing.T) {
					src, dst := v4a, v4b
					if v6 {
						src, dst = v6a, v6b
					}
					d := udpDatagram(src, dst, 61)
					out, in := newPair(t, a, pairOpts{mode: sa.Transport, outer6: v6, esn: esn})
					for seq := uint32(1); seq <= 2; seq++ {
						p, off := stackAH(out, d, seq)
						tail := p.B[p.Off+p.Len : p.Off+p.Len+maxSave]
						for i := range tail {
							tail[i] = 0x5a
						}
						if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.ReasonNone {
							t.Fatalf("Seal: %v", r)
						}
						if !bytes.Equal(tail, bytes.Repeat([]byte{0x5a}, maxSave)) {
							t.Fatal("Seal changed the bytes after the packet")
						}
						w := bytes.Clone(p.Bytes())
						if Open(in, p.Bytes(), off, p.Len, &p.CB) != OpenOK || !bytes.Equal(p.Bytes(), w) {
							t.Fatal("Open of a sealed packet failed or changed it")
						}
						if r := LocateAndDecap(in, p); r != sa.ReasonNone || !bytes.Equal(p.Bytes(), d) {
							t.Fatalf("packet-offload Decap of a sealed packet: %v", r)
						}
					}
					p, off := stackAH(out, d, 2)
					if r := Seal(out, p.Bytes(), off, p.Len, &p.CB); r != sa.OutStateSeqError {
						t.Fatalf("repeated sequence number: %v", r)
					}
					out2, in2 := newPair(t, a, pairOpts{mode: sa.Transport, outer6: v6, esn: esn})
					q := packet.NewBuf(len(d) + 1024)
					q.SetBytes(d)
					if r := Encap(out2, q); r != sa.ReasonNone {
						t.Fatal(r)
					}
					sp, _ := packet.SplitIP(d)
					if r := Open(in2, q.Bytes(), sp.HdrLen, q.Len, &q.CB); r != OpenOK {
						t.Fatalf("Open of an Encap packet: %v", r)
					}
					q.Bytes()[q.Len-1] ^= 1
					if r := Open(in2, q.Bytes(), sp.HdrLen, q.Len, &q.CB); r != OpenAuthFailed {
						t.Fatalf("tampered: %v", r)
					}
					if r := Open(in2, q.Bytes(), sp.HdrLen, sp.HdrLen+8, &q.CB); r != OpenShort {
						t.Fatalf("short: %v", r)
					}
				})
			}
		}
	}
}
