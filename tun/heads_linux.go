//go:build linux

package tun

import (
	"encoding/binary"
)

// The wireguard writer coalesces the TCP segments of one flow, and the
// equal-size datagrams of one UDP flow where the kernel takes UDP
// segmentation offload (the kernel's GRO, done before the write), by
// appending each packet's payload to the first packet of its run, the
// run's head, into the head's spare capacity. Packets of a datapath batch
// sit in buffers sized for one MTU, so a head has no room and every packet
// would cost the kernel one write(2) and one pass through its receive
// path. headSlots gives the head of every run a buffer of its own that can
// grow to a 64 KiB super-packet: the head (one packet) is copied there,
// the packets behind it are then copied into it by the coalescing, and the
// device takes the run in one write.
//
// A run is what the wireguard writer coalesces, of IPv4 without options or
// fragmentation or IPv6 without extension headers, up to 64 KiB:
//   - TCP: segments with payload and only ACK (or ACK|PSH, which ends a
//     run) set, of one flow and acknowledgement number;
//   - UDP: datagrams of one flow, each no larger than the first (a smaller
//     one ends the run).
//
// The head is chosen by the same rules, so a packet that starts a run in
// the writer has a slot; one that the writer refuses to coalesce (a gap,
// other options, a bad checksum) is written as it is, as before.

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
	ack   uint32 // TCP
	v6    bool
	udp   bool
}

type run struct {
	key  runKey
	size int  // bytes of the run's datagram so far
	seg  int  // payload bytes of the head (UDP: no later datagram may be larger)
	shut bool // ended by PSH (TCP) or a smaller datagram (UDP)
}

type headSlots struct {
	mem  []byte // headSlotCount slots of headSlotRoom+superMax bytes, made on first use
	runs [headSlotCount]run
	nrun int // runs of this Write; run i has slot i
}

// reset forgets the runs of the previous Write.
func (h *headSlots) reset() { h.nrun = 0 }

// place gives b (a packet at offset) a slot if it starts a run, and returns
// the buffer to hand to the writer: b itself or the slot holding a copy.
func (h *headSlots) place(b []byte, offset int) []byte {
	if offset > headSlotRoom {
		return b
	}
	pkt := b[offset:]
	k, hdr, end, ok := runOf(pkt)
	if !ok {
		return b
	}
	seg := len(pkt) - hdr
	for i := h.nrun - 1; i >= 0; i-- {
		r := &h.runs[i]
		if r.key != k {
			continue
		}
		if !r.shut && r.size+seg <= superMax && (!k.udp || seg <= r.seg) {
			r.size += seg
			r.shut = end || (k.udp && seg < r.seg)
			return b // joins the run: the writer copies its payload to the head
		}
		break
	}
	if h.nrun == len(h.runs) {
		return b
	}
	const slot = headSlotRoom + superMax
	if h.mem == nil {
		h.mem = make([]byte, headSlotCount*slot)
	}
	s := h.mem[h.nrun*slot : (h.nrun+1)*slot : (h.nrun+1)*slot]
	h.runs[h.nrun] = run{key: k, size: len(pkt), seg: seg, shut: end}
	h.nrun++
	return s[:copy(s, b[:offset+len(pkt)])]
}

// runOf parses pkt as a packet the writer can coalesce and returns its run
// key, the length of its IP and TCP or UDP headers, whether it ends its
// run (TCP PSH), and ok.
func runOf(pkt []byte) (k runKey, hdr int, end, ok bool) {
	var proto byte
	switch {
	case len(pkt) >= 20 && pkt[0] == 0x45:
		if binary.BigEndian.Uint16(pkt[6:])&0x3fff != 0 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
			return k, 0, false, false
		}
		proto = pkt[9]
		copy(k.addrs[:8], pkt[12:20])
		hdr = 20
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		if int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) {
			return k, 0, false, false
		}
		proto = pkt[6]
		copy(k.addrs[:], pkt[8:40])
		k.v6 = true
		hdr = 40
	default:
		return k, 0, false, false
	}
	th := pkt[hdr:]
	switch proto {
	case 6:
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
			end = true
		default:
			return k, 0, false, false
		}
		k.ack = binary.BigEndian.Uint32(th[8:])
		hdr += thl
	case 17:
		if len(th) <= 8 {
			return k, 0, false, false
		}
		k.udp = true
		hdr += 8
	default:
		return k, 0, false, false
	}
	k.ports = binary.BigEndian.Uint32(th[0:])
	return k, hdr, end, true
}
