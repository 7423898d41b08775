package nic

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
)

// FuzzReceive feeds arbitrary bytes from the wire to a NIC's receive path
// (reassembly, IPsec header parsing, SPI lookup, decapsulation, policy
// check). It must never panic, and whatever it delivers must be a
// well-formed IP datagram.
func FuzzReceive(f *testing.F) {
	// B's replay window and reassembly table carry state from one input to
	// the next, which is the point.
	a, b := build(f, topo{alg: algGCM, encap: true, wireMTU: 1280})
	wire, _ := a.stepTX(f, udp(in4A, in4B, 1, 2, 2000, 1, false), udp(in4A, in4B, 1, 2, 100, 2, false))
	for _, w := range wire {
		f.Add(w)
	}
	f.Add(frag6(1, 0, pattern(64), true))
	f.Add(frag4(1, 8, pattern(64), false))
	f.Add(udpWith(out4B, out4A, 4500, 4500, []byte{0xff}, false))
	// The hostile packets of TestHostilePackets.
	for _, hc := range hostileCases() {
		for _, p := range hc.build(f, a) {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1400 {
			return
		}
		for _, got := range b.stepRX(t, in) {
			if _, err := packet.SplitIP(got); err != nil {
				t.Fatalf("delivered a malformed datagram % x: %v", got, err)
			}
		}
	})
}

// FuzzReassembly files arbitrary fragment sequences (offsets, lengths,
// more-fragments flags, IDs, both families) into a small reassembly table
// with a short timeout: never a panic, a reassembled datagram is never
// larger than an IP datagram can be and is a well-formed unfragmented
// datagram, and every fragment is either kept, completed or counted.
func FuzzReassembly(f *testing.F) {
	f.Add([]byte{0, 0, 10, 1, 0, 1, 10, 0})
	f.Add([]byte{1, 0, 8, 1, 1, 2, 8, 0, 1, 1, 8, 1})
	f.Add([]byte{0, 0, 8, 1, 0, 0, 8, 1, 0, 1, 4, 0})
	f.Add([]byte{2, 255, 255, 0, 3, 0, 200, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var drops [numDrops]uint64Counter
		var done uint64Counter
		r := newReassembler(4, 50, &drops, &done)
		data := pattern(2048)
		now := int64(0)
		for len(in) >= 4 {
			// id (v6 if odd), offset in 8-byte blocks, length in 8-byte blocks (+ tail), more.
			id, offHi, offLo, flags := in[0], in[1], in[2], in[3]
			in = in[4:]
			off := (int(offHi)<<8 | int(offLo)) * 8 % 66000
			n := (int(flags>>1)%32)*8 + int(flags>>6)
			if n > len(data) {
				n = len(data)
			}
			more := flags&1 != 0
			var pkt []byte
			if id&1 != 0 {
				pkt = frag6(uint32(id), off, data[:n], more)
			} else {
				pkt = frag4(uint16(id), off&0xfff8, data[:n], more)
			}
			now += 10
			fi, _, ok := parseFrag(pkt)
			if !ok {
				continue
			}
			q, slot := r.add(fi, now)
			if q == nil {
				continue
			}
			got := q.Bytes()
			if len(got) > packet.MaxPacket+packet.IPv6Len {
				t.Fatalf("reassembled %d bytes", len(got))
			}
			if isFragment(got) {
				t.Fatalf("a reassembled datagram is still a fragment")
			}
			if _, err := packet.SplitIP(got); err != nil {
				t.Fatalf("reassembled a malformed datagram: %v", err)
			}
			r.release(slot)
		}
		r.expire(now + 1000)
		for i := range r.slots {
			if r.slots[i].used {
				t.Fatalf("slot %d still used after every timeout", i)
			}
		}
	})
}
