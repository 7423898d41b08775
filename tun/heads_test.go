//go:build linux

package tun

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// tcpSeg writes a TCP segment with payload bytes at offset in a buffer of
// exactly its size (no spare capacity) and returns it. The checksums are
// valid.
func tcpSeg(offset int, src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte) []byte {
	ipLen := 20
	if src.Addr().Is6() {
		ipLen = 40
	}
	n := offset + ipLen + 20 + len(payload)
	b := make([]byte, n)
	h := b[offset:]
	tcpLen := 20 + len(payload)
	if ipLen == 20 {
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(ipLen+tcpLen))
		h[6] = 0x40
		h[8] = 64
		h[9] = 6
		copy(h[12:16], src.Addr().AsSlice())
		copy(h[16:20], dst.Addr().AsSlice())
		binary.BigEndian.PutUint16(h[10:], ^fold(sum16(0, h[:20])))
	} else {
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(tcpLen))
		h[6] = 6
		h[7] = 64
		copy(h[8:24], src.Addr().AsSlice())
		copy(h[24:40], dst.Addr().AsSlice())
	}
	th := h[ipLen:]
	binary.BigEndian.PutUint16(th[0:], src.Port())
	binary.BigEndian.PutUint16(th[2:], dst.Port())
	binary.BigEndian.PutUint32(th[4:], seq)
	binary.BigEndian.PutUint32(th[8:], ack)
	th[12] = 5 << 4
	th[13] = flags
	binary.BigEndian.PutUint16(th[14:], 65535)
	copy(th[20:], payload)
	binary.BigEndian.PutUint16(th[16:], ^fold(sum16(pseudoSum(src.Addr(), dst.Addr(), 6, tcpLen), th)))
	return b
}

func TestHeadSlots(t *testing.T) {
	const off = VirtioNetHdrLen
	a := netip.MustParseAddrPort("10.0.0.1:1000")
	b := netip.MustParseAddrPort("10.0.0.2:2000")
	c := netip.MustParseAddrPort("[fd00::1]:1000")
	d := netip.MustParseAddrPort("[fd00::2]:2000")
	pay := make([]byte, 1000)
	const ack, psh = 0x10, 0x18
	var h headSlots
	isSlot := func(got, in []byte) bool { return &got[0] != &in[0] }
	check := func(name string, in []byte, wantSlot bool) []byte {
		t.Helper()
		got := h.place(in, off)
		if isSlot(got, in) != wantSlot {
			t.Fatalf("%s: given a slot = %v, want %v", name, isSlot(got, in), wantSlot)
		}
		if wantSlot {
			if string(got) != string(in) || cap(got) != headSlotRoom+superMax {
				t.Fatalf("%s: slot holds %d bytes (cap %d), want a copy of the %d-byte packet with cap %d", name, len(got), cap(got), len(in), headSlotRoom+superMax)
			}
		}
		return got
	}
	h.reset()
	check("first segment of flow 1", tcpSeg(off, a, b, 1, 7, ack, pay), true)
	check("second segment of flow 1", tcpSeg(off, a, b, 1001, 7, ack, pay), false)
	check("first segment of an IPv6 flow", tcpSeg(off, c, d, 1, 7, ack, pay), true)
	check("next IPv6 segment", tcpSeg(off, c, d, 1001, 7, ack, pay), false)
	check("a new acknowledgement number starts a run", tcpSeg(off, a, b, 2001, 8, ack, pay), true)
	check("PSH ends the run", tcpSeg(off, a, b, 3001, 8, psh, pay), false)
	check("after PSH a new run", tcpSeg(off, a, b, 4001, 8, ack, pay), true)
	check("a pure ACK is not coalesced", tcpSeg(off, a, b, 5001, 8, ack, nil), false)
	check("SYN is not coalesced", tcpSeg(off, b, a, 1, 0, 0x02, pay), false)
	dgram := func(size int) []byte {
		u := make([]byte, off+28+size)
		buildUDP(u[off:], a, b, 0, make([]byte, size))
		return u
	}
	check("first UDP datagram", dgram(72), true)
	check("an equal datagram joins", dgram(72), false)
	check("a larger datagram starts a run", dgram(100), true)
	check("a smaller datagram joins and ends the run", dgram(60), false)
	check("after a smaller datagram a new run", dgram(60), true)
	check("an empty datagram is not coalesced", dgram(0), false)
	if got := h.place(tcpSeg(200, a, b, 1, 9, ack, pay), 200); cap(got) == headSlotRoom+superMax {
		t.Fatal("a packet at an offset larger than a slot's room was given a slot")
	}

	// A run stops at 64 KiB: the segment that would pass it starts a new one.
	h.reset()
	big := make([]byte, 1400)
	check("head", tcpSeg(off, a, b, 1, 1, ack, big), true)
	seq, size := uint32(1401), 40+1400
	for size+1400 <= superMax {
		check("segment within 64 KiB", tcpSeg(off, a, b, seq, 1, ack, big), false)
		seq += 1400
		size += 1400
	}
	check("segment past 64 KiB", tcpSeg(off, a, b, seq, 1, ack, big), true)

	// Slots run out: further runs are written as they are.
	h.reset()
	for i := range headSlotCount {
		src := netip.AddrPortFrom(a.Addr(), uint16(3000+i))
		check("a run of its own", tcpSeg(off, src, b, 1, 1, ack, pay), true)
	}
	check("one run too many", tcpSeg(off, netip.AddrPortFrom(a.Addr(), 5000), b, 1, 1, ack, pay), false)
}

func TestHeadSlotsAllocs(t *testing.T) {
	a := netip.MustParseAddrPort("10.0.0.1:1000")
	b := netip.MustParseAddrPort("10.0.0.2:2000")
	var segs [][]byte
	for i := range 40 {
		segs = append(segs, tcpSeg(VirtioNetHdrLen, a, b, uint32(1+i*1400), 1, 0x10, make([]byte, 1400)))
	}
	var h headSlots
	allocs := testing.AllocsPerRun(100, func() {
		h.reset()
		for _, s := range segs {
			h.place(s, VirtioNetHdrLen)
		}
	})
	if allocs != 0 {
		t.Fatalf("placing a batch allocated %v times, want 0 (after the first use)", allocs)
	}
}
