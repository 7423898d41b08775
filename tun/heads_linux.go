//go:build linux

package tun

import (
	"encoding/binary"
)

// The wireguard writer coalesces the TCP segments of one flow (the kernel's
// GRO, done before the write) by appending each segment's payload to the
// first segment of its run, the run's head, into the head's spare capacity.
// Packets of a datapath batch sit in buffers sized for one MTU, so a head
// has no room and every segment would cost the kernel one write(2) and one
// pass through its TCP receive path. headSlots gives the head of every run
// a buffer of its own that can grow to a 64 KiB super-packet: the head (one
// packet) is copied there, the segments behind it are then copied into it
// by the coalescing, and the device takes the run in one write.
//
// A run is what the wireguard writer coalesces: TCP segments with payload
// and only ACK (or ACK|PSH, which ends a run) set, of one flow and
// acknowledgement number, IPv4 without options or fragmentation or IPv6
// without extension headers, up to 64 KiB. The head is chosen by the same
// rules, so a segment that starts a run in the writer has a slot; one
// that the writer refuses to coalesce (a gap, other options) is written as
// it is, as before.

// headSlotCount is the number of runs one Write call can give room to; a
// batch holds few flows (a datapath batch is one wire read), and further
// runs are written as they are.
const headSlotCount = 16

// headSlotRoom is the offset a slot leaves before the packet: the largest
// write offset that can use slots.
const headSlotRoom = 128

// superMax is the largest IP datagram (the IPv4 total length and the IPv6
// payload length are 16 bits).
const superMax = 65535

type runKey struct {
	addrs [32]byte // source and destination
	ports uint32
	ack   uint32
	v6    bool
}

type run struct {
	key  runKey
	size int  // bytes of the run's datagram so far
	shut bool // ended by PSH
}

type headSlots struct {
	mem  []byte // headSlotCount slots of headSlotRoom+superMax bytes, made on first use
	used int    // slots handed out in this Write
	runs [headSlotCount]run
	nrun int
}

// reset forgets the runs of the previous Write.
func (h *headSlots) reset() { h.used, h.nrun = 0, 0 }

// place gives b (a packet at offset) a slot if it starts a run, and returns
// the buffer to hand to the writer: b itself or the slot holding a copy.
func (h *headSlots) place(b []byte, offset int) []byte {
	if offset > headSlotRoom {
		return b
	}
	pkt := b[offset:]
	k, size, psh, ok := runOf(pkt)
	if !ok {
		return b
	}
	for i := h.nrun - 1; i >= 0; i-- {
		r := &h.runs[i]
		if r.key != k {
			continue
		}
		if !r.shut && r.size+size-hdrLen(pkt, k.v6) <= superMax {
			r.size += size - hdrLen(pkt, k.v6)
			r.shut = psh
			return b // joins the run: the writer copies its payload to the head
		}
		break
	}
	if h.used == headSlotCount || h.nrun == len(h.runs) {
		return b
	}
	const slot = headSlotRoom + superMax
	if h.mem == nil {
		h.mem = make([]byte, headSlotCount*slot)
	}
	s := h.mem[h.used*slot : (h.used+1)*slot : (h.used+1)*slot]
	h.used++
	h.runs[h.nrun] = run{key: k, size: size, shut: psh}
	h.nrun++
	return s[:copy(s, b[:offset+len(pkt)])]
}

// runOf parses pkt as a segment the writer can coalesce and returns its
// run key, its length, whether it ends its run (PSH), and ok.
func runOf(pkt []byte) (k runKey, size int, psh, ok bool) {
	var th []byte
	switch {
	case len(pkt) >= 20 && pkt[0] == 0x45:
		if pkt[9] != 6 || binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			return k, 0, false, false
		}
		copy(k.addrs[:8], pkt[12:20])
		th = pkt[20:]
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if pkt[6] != 6 || int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return k, 0, false, false
		}
		copy(k.addrs[:], pkt[8:40])
		k.v6 = true
		th = pkt[40:]
	default:
		return k, 0, false, false
	}
	if len(th) < 20 {
		return k, 0, false, false
	}
	thl := int(th[12]>>4) * 4
	if thl < 20 || len(th) <= thl { // no payload: nothing to coalesce
		return k, 0, false, false
	}
	switch th[13] {
	case 0x10: // ACK
	case 0x18: // ACK|PSH
		psh = true
	default:
		return k, 0, false, false
	}
	k.ports = binary.BigEndian.Uint32(th[0:])
	k.ack = binary.BigEndian.Uint32(th[8:])
	return k, len(pkt), psh, true
}

// hdrLen is the IP and TCP header length of a segment runOf accepted.
func hdrLen(pkt []byte, v6 bool) int {
	ip := 20
	if v6 {
		ip = 40
	}
	return ip + int(pkt[ip+12]>>4)*4
}
