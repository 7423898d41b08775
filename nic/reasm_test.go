package nic

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/packet"
)

// frag4 builds an IPv4 fragment of datagram id carrying data at offset off.
func frag4(id uint16, off int, data []byte, more bool) []byte {
	b := make([]byte, 20+len(data))
	packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: id, TTL: 64, Protocol: packet.ProtoESP, Src: out4A, Dst: out4B})
	ff := uint16(off / 8)
	if more {
		ff |= 0x2000
	}
	packet.IPv4(b).SetFlagsFrag(ff)
	packet.IPv4(b).UpdateChecksum()
	copy(b[20:], data)
	return b
}

// frag6 builds an IPv6 fragment.
func frag6(id uint32, off int, data []byte, more bool) []byte {
	b := make([]byte, 48+len(data))
	packet.WriteIPv6(b, packet.IPv6Fields{PayloadLen: 8 + len(data), NextHeader: packet.ProtoFragment, HopLimit: 64, Src: out6A, Dst: out6B})
	writeFragHdr(b[40:], packet.ProtoESP, off, more, id)
	copy(b[48:], data)
	return b
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestReassembly(t *testing.T) {
	data := pattern(3000)
	type step struct {
		pkt []byte
		at  time.Duration
	}
	v4 := func(id uint16, parts ...[3]int) []step { // {off, len, more}
		var s []step
		for _, p := range parts {
			s = append(s, step{pkt: frag4(id, p[0], data[p[0]:p[0]+p[1]], p[2] == 1)})
		}
		return s
	}
	tests := []struct {
		name     string
		slots    int
		steps    []step
		complete int // datagrams completed
		drops    map[dropReason]uint64
		check    func(t *testing.T, got []byte)
	}{
		{name: "in-order", steps: v4(1, [3]int{0, 1000, 1}, [3]int{1000, 1000, 1}, [3]int{2000, 1000, 0}), complete: 1,
			check: func(t *testing.T, got []byte) {
				h := packet.IPv4(got)
				if h.TotalLen() != 3020 || h.IsFragment() || !h.ChecksumValid() || !bytes.Equal(got[20:], data) {
					t.Fatalf("reassembled datagram wrong: len %d frag %v", h.TotalLen(), h.IsFragment())
				}
			}},
		{name: "reverse", steps: v4(1, [3]int{2000, 1000, 0}, [3]int{1000, 1000, 1}, [3]int{0, 1000, 1}), complete: 1},
		{name: "overlap", steps: v4(1, [3]int{0, 1000, 1}, [3]int{992, 1008, 1}, [3]int{2000, 1000, 0}),
			drops: map[dropReason]uint64{dropReasmOverlap: 1}},
		{name: "duplicate", steps: v4(1, [3]int{0, 1000, 1}, [3]int{0, 1000, 1}, [3]int{1000, 200, 0}), complete: 1,
			drops: map[dropReason]uint64{dropReasmDuplicate: 1}},
		{name: "two-last-fragments", steps: v4(1, [3]int{1000, 200, 0}, [3]int{1200, 200, 0}),
			drops: map[dropReason]uint64{dropReasmOverlap: 1}},
		{name: "data-beyond-end", steps: v4(1, [3]int{1000, 200, 0}, [3]int{1200, 8, 1}),
			drops: map[dropReason]uint64{dropReasmOverlap: 1}},
		{name: "unaligned-middle", steps: v4(1, [3]int{0, 1001, 1}),
			drops: map[dropReason]uint64{dropReasmInvalid: 1}},
		{name: "interleaved", steps: append(v4(1, [3]int{0, 1000, 1}), append(v4(2, [3]int{0, 8, 1}, [3]int{8, 8, 0}), v4(1, [3]int{1000, 8, 0})...)...), complete: 2},
		{name: "timeout", steps: append(v4(1, [3]int{0, 1000, 1}), step{pkt: frag4(1, 1000, data[1000:1100], false), at: 11 * time.Second}),
			drops: map[dropReason]uint64{dropReasmTimeout: 1}},
		{name: "eviction", slots: 1, steps: append(v4(1, [3]int{0, 1000, 1}), append(v4(2, [3]int{0, 8, 1}), v4(1, [3]int{1000, 8, 0})...)...),
			drops: map[dropReason]uint64{dropReasmOverflow: 2}},
		{name: "v6", steps: []step{{pkt: frag6(9, 1496, data[1496:], false)}, {pkt: frag6(9, 0, data[:1496], true)}}, complete: 1,
			check: func(t *testing.T, got []byte) {
				h := packet.IPv6(got)
				if h.NextHeader() != packet.ProtoESP || h.PayloadLen() != 3000 || !bytes.Equal(got[40:], data) {
					t.Fatalf("reassembled IPv6 datagram wrong: next %d len %d", h.NextHeader(), h.PayloadLen())
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var drops [numDrops]uint64Counter
			var done uint64Counter
			slots := tc.slots
			if slots == 0 {
				slots = 4
			}
			r := newReassembler(slots, 10*time.Second, &drops, &done)
			base := int64(1e12)
			complete := 0
			for i, s := range tc.steps {
				f, atomic, ok := parseFrag(s.pkt)
				if !ok || atomic {
					t.Fatalf("step %d: parseFrag ok=%v atomic=%v", i, ok, atomic)
				}
				b, idx := r.add(f, base+int64(s.at))
				if b != nil {
					complete++
					if tc.check != nil {
						tc.check(t, b.Bytes())
					}
					r.release(idx)
				}
			}
			if complete != tc.complete {
				t.Fatalf("completed %d datagrams, want %d", complete, tc.complete)
			}
			for d := dropReason(0); d < numDrops; d++ {
				if got := drops[d].Load(); got != tc.drops[d] {
					t.Errorf("%v = %d, want %d", d, got, tc.drops[d])
				}
			}
		})
	}
}

func TestAtomicFragment6(t *testing.T) {
	data := pattern(100)
	pkt := frag6(5, 0, data, false)
	f, atomic, ok := parseFrag(pkt)
	if !ok || !atomic {
		t.Fatalf("ok=%v atomic=%v", ok, atomic)
	}
	p := packet.NewBuf(len(pkt))
	if err := p.SetBytes(pkt); err != nil {
		t.Fatal(err)
	}
	unfragment6(p, f)
	got := p.Bytes()
	if got[6] != packet.ProtoESP || packet.IPv6(got).PayloadLen() != 100 || !bytes.Equal(got[40:], data) {
		t.Fatalf("atomic fragment not unwrapped: % x", got[:48])
	}
}

func TestFragment6RoundTrip(t *testing.T) {
	// Fragment a datagram with a hop-by-hop header and reassemble it.
	data := pattern(2500)
	pkt := make([]byte, 48+len(data))
	packet.WriteIPv6(pkt, packet.IPv6Fields{PayloadLen: 8 + len(data), NextHeader: packet.ProtoHopByHop, HopLimit: 64, Src: out6A, Dst: out6B})
	pkt[40], pkt[41] = packet.ProtoESP, 0 // hop-by-hop: next ESP, 8 bytes, PadN
	pkt[42], pkt[43] = 1, 4
	copy(pkt[48:], data)
	p := packet.NewBuf(len(pkt))
	if err := p.SetBytes(pkt); err != nil {
		t.Fatal(err)
	}
	sp := newSpares(4, 1280)
	out, ok := fragment6(p, 1280, sp, []*packet.Buf{p})
	if !ok || len(out) != 3 {
		t.Fatalf("ok=%v fragments=%d", ok, len(out))
	}
	var drops [numDrops]uint64Counter
	var done uint64Counter
	r := newReassembler(2, time.Second, &drops, &done)
	var got []byte
	for i := len(out) - 1; i >= 0; i-- {
		b := out[i].Bytes()
		if len(b) > 1280 || b[6] != packet.ProtoHopByHop || b[40] != packet.ProtoFragment {
			t.Fatalf("fragment %d: len %d headers %d/%d", i, len(b), b[6], b[40])
		}
		f, _, ok := parseFrag(b)
		if !ok {
			t.Fatalf("fragment %d does not parse", i)
		}
		if q, _ := r.add(f, 1); q != nil {
			got = bytes.Clone(q.Bytes())
		}
	}
	if !bytes.Equal(got, pkt) {
		t.Fatalf("reassembled datagram differs: % x", got[:56])
	}
	if id := binary.BigEndian.Uint32(out[0].Bytes()[52:]); id != binary.BigEndian.Uint32(out[1].Bytes()[52:]) {
		t.Fatal("fragments carry different identifications")
	}
}
