package nic

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/secnic/secnic/internal/packet"
)

// Reassembly of outer IP fragments arriving from the wire, before ESP/AH
// processing (RFC 4303 3.4.1: fragments are reassembled before IPsec).
//
// The table is small and bounded: a fixed number of slots, each with its
// own buffer large enough for a 64 KiB datagram (allocated the first time
// the slot is used, then reused forever, so the steady state allocates
// nothing). A slot tracks received 8-byte blocks in a bitmap. Overlapping
// fragments drop the whole datagram (RFC 5722 for IPv6, and for IPv4 too:
// overlaps are an attack, not a network artefact); exact duplicates drop
// only the duplicate. A datagram not complete within the timeout is
// dropped; when every slot is busy, the oldest incomplete datagram is
// evicted. Each outcome has its own counter.
//
// A completed datagram is returned in the slot's buffer, which is lent to
// the receive batch (decapsulated in place and written to the host) and
// given back with release when the batch is done.
//
// Timeouts fire on a timer (NIC.Run runs expireLoop), not only when the
// next fragment arrives: a table left with incomplete datagrams by a burst
// is emptied, and counted, within the timeout plus a quarter of it. The
// table's lock is taken only for fragments and by the timer; unfragmented
// packets never touch it.

// reasmHdrRoom is the space reserved in front of the data for the IP header
// (IPv4 with options, or the IPv6 unfragmentable part); larger ones are refused.
const reasmHdrRoom = 128

type reasmKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8 // IPv4 protocol; 0 for IPv6
	v6       bool
}

type reasmSlot struct {
	key      reasmKey
	used     bool
	lent     bool
	buf      *packet.Buf
	have     [8192 / 64]uint64 // received 8-byte blocks
	got      int               // data bytes received
	total    int               // data length, -1 until the last fragment arrived
	hdrLen   int               // 0 until the first fragment arrived
	nextOff  int               // IPv6: offset of the byte naming the fragment header
	next     uint8             // IPv6: the fragment header's next header
	deadline int64
	born     int64
}

type reassembler struct {
	mu      sync.Mutex
	slots   []reasmSlot
	timeout time.Duration
	drops   *[numDrops]uint64Counter
	done    *uint64Counter
}

func newReassembler(n int, timeout time.Duration, drops *[numDrops]uint64Counter, done *uint64Counter) *reassembler {
	return &reassembler{slots: make([]reasmSlot, n), timeout: timeout, drops: drops, done: done}
}

func (r *reassembler) drop(d dropReason) { r.drops[d].Add(1) }

func (s *reasmSlot) clear() {
	s.used, s.lent = false, false
	s.have = [len(s.have)]uint64{}
	s.got, s.total, s.hdrLen = 0, -1, 0
}

// expire drops the incomplete datagrams whose time is up.
func (r *reassembler) expire(now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && !s.lent && now > s.deadline {
			s.clear()
			r.drop(dropReasmTimeout)
		}
	}
}

// release gives a lent slot back.
func (r *reassembler) release(idx int) {
	r.mu.Lock()
	r.slots[idx].clear()
	r.mu.Unlock()
}

// expireInterval is how often expireLoop looks for timed-out datagrams.
func (r *reassembler) expireInterval() time.Duration {
	return min(max(r.timeout/4, 5*time.Millisecond), time.Second)
}

// expireLoop expires timed-out datagrams until stop is closed.
func (r *reassembler) expireLoop(stop <-chan struct{}) {
	tk := time.NewTicker(r.expireInterval())
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case t := <-tk.C:
			r.expire(t.UnixNano())
		}
	}
}

// fragInfo is the part of a fragment the table needs.
type fragInfo struct {
	key     reasmKey
	hdr     []byte // IPv4 header / IPv6 unfragmentable part
	nextOff int    // IPv6
	next    uint8  // IPv6
	off     int    // data offset in bytes
	data    []byte
	more    bool
}

// parseFrag describes the fragment pkt (an IPv4 datagram with MF or an
// offset, or an IPv6 datagram with a fragment header). ok is false for a
// malformed fragment. atomic reports an IPv6 atomic fragment (offset 0,
// M=0, RFC 6946), which needs no reassembly.
func parseFrag(pkt []byte) (f fragInfo, atomic, ok bool) {
	switch packet.Version(pkt) {
	case 4:
		hl, valid := packet.ValidIPv4(pkt)
		if !valid {
			return f, false, false
		}
		h := packet.IPv4(pkt)
		f.key.src = netip16(pkt[12:16])
		f.key.dst = netip16(pkt[16:20])
		f.key.id = uint32(h.ID())
		f.key.proto = h.Protocol()
		f.hdr = pkt[:hl]
		f.off = h.FragOffset()
		f.more = h.MoreFragments()
		f.data = pkt[hl:h.TotalLen()]
		return f, false, true
	case 6:
		if !packet.ValidIPv6(pkt) {
			return f, false, false
		}
		end := packet.IPv6Len + packet.IPv6(pkt).PayloadLen()
		it := packet.NewIPv6ExtIter(pkt[:end])
		for it.Proto() != packet.ProtoFragment {
			// Hop-by-hop, routing and destination options headers
			// precede the fragment header (RFC 8200 4.1).
			if !packet.IsIPv6Ext(it.Proto()) || !it.Next() {
				return f, false, false
			}
		}
		if _, ok := it.Header(); !ok {
			return f, false, false
		}
		pos, nextOff := it.Off(), it.NextOff()
		f.key.v6 = true
		copy(f.key.src[:], pkt[8:24])
		copy(f.key.dst[:], pkt[24:40])
		f.key.id = binary.BigEndian.Uint32(pkt[pos+4:])
		v := binary.BigEndian.Uint16(pkt[pos+2:])
		f.off = int(v &^ 7)
		f.more = v&1 != 0
		f.next = pkt[pos]
		f.nextOff = nextOff
		f.hdr = pkt[:pos]
		f.data = pkt[pos+8 : end]
		return f, f.off == 0 && !f.more, true
	}
	return f, false, false
}

func netip16(b []byte) (a [16]byte) {
	copy(a[12:], b)
	return a
}

// unfragment6 removes the fragment header of an IPv6 atomic fragment in place.
func unfragment6(p *packet.Buf, f fragInfo) {
	u := len(f.hdr)
	pkt := p.Bytes()
	pkt[f.nextOff] = f.next
	copy(pkt[8:8+u], pkt[:u])
	p.TrimFront(8)
	p.Len = u + len(f.data)
	packet.IPv6(p.Bytes()).SetPayloadLen(p.Len - packet.IPv6Len)
}

// add files one fragment. When it completes a datagram it returns the
// slot's buffer holding the reassembled datagram and the slot index to
// release later; otherwise nil and -1. Drops are counted here.
func (r *reassembler) add(f fragInfo, now int64) (*packet.Buf, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(f.data) == 0 || (f.more && len(f.data)%8 != 0) || f.off+len(f.data) > packet.MaxPacket || len(f.hdr) > reasmHdrRoom {
		r.drop(dropReasmInvalid)
		return nil, -1
	}
	idx := r.find(f.key, now)
	if idx < 0 {
		r.drop(dropReasmOverflow)
		return nil, -1
	}
	s := &r.slots[idx]
	if s.buf == nil {
		s.buf = packet.NewBuf(reasmHdrRoom + packet.MaxPacket)
	}
	// Duplicate or overlap?
	first, last := f.off/8, (f.off+len(f.data)-1)/8
	set, unset := false, false
	for b := first; b <= last; b++ {
		if s.have[b/64]&(1<<(b%64)) != 0 {
			set = true
		} else {
			unset = true
		}
	}
	if set {
		if unset || (!f.more && s.total >= 0 && s.total != f.off+len(f.data)) {
			s.clear()
			r.drop(dropReasmOverlap)
		} else {
			r.drop(dropReasmDuplicate)
		}
		return nil, -1
	}
	end := f.off + len(f.data)
	if !f.more {
		if s.total >= 0 || end < maxEnd(s) {
			// A second last fragment, or data beyond the end.
			s.clear()
			r.drop(dropReasmOverlap)
			return nil, -1
		}
		s.total = end
	} else if s.total >= 0 && end > s.total {
		s.clear()
		r.drop(dropReasmOverlap)
		return nil, -1
	}
	for b := first; b <= last; b++ {
		s.have[b/64] |= 1 << (b % 64)
	}
	base := packet.Headroom + reasmHdrRoom
	copy(s.buf.B[base+f.off:], f.data)
	s.got += len(f.data)
	if f.off == 0 {
		s.hdrLen = copy(s.buf.B[base-len(f.hdr):base], f.hdr)
		s.nextOff, s.next = f.nextOff, f.next
	}
	if s.total < 0 || s.got != s.total || s.hdrLen == 0 {
		return nil, -1
	}
	// Complete: put the header in front of the data and fix it up.
	b := s.buf
	b.Off = base - s.hdrLen
	b.Len = s.hdrLen + s.total
	if b.Len > packet.MaxPacket+boolInt(f.key.v6)*packet.IPv6Len {
		s.clear()
		r.drop(dropReasmInvalid)
		return nil, -1
	}
	pkt := b.Bytes()
	if f.key.v6 {
		pkt[s.nextOff] = s.next
		packet.IPv6(pkt).SetPayloadLen(b.Len - packet.IPv6Len)
	} else {
		h := packet.IPv4(pkt)
		h.SetTotalLen(b.Len)
		h.SetFlagsFrag(h.FlagsFrag() & 0x4000)
		h.UpdateChecksum()
	}
	s.lent = true
	r.done.Add(1)
	return b, idx
}

// maxEnd returns the end of the highest block received so far.
func maxEnd(s *reasmSlot) int {
	for w := len(s.have) - 1; w >= 0; w-- {
		if v := s.have[w]; v != 0 {
			hi := 63
			for v&(1<<hi) == 0 {
				hi--
			}
			return (w*64 + hi + 1) * 8
		}
	}
	return 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// find returns the slot for key, starting a new one if needed (evicting the
// oldest incomplete datagram when all are busy), or -1.
func (r *reassembler) find(key reasmKey, now int64) int {
	free, oldest := -1, -1
	for i := range r.slots {
		s := &r.slots[i]
		if !s.used {
			if free < 0 {
				free = i
			}
			continue
		}
		if s.lent {
			continue
		}
		if now > s.deadline {
			s.clear()
			r.drop(dropReasmTimeout)
			if free < 0 {
				free = i
			}
			continue
		}
		if s.key == key {
			return i
		}
		if oldest < 0 || s.born < r.slots[oldest].born {
			oldest = i
		}
	}
	if free < 0 {
		if oldest < 0 {
			return -1
		}
		r.slots[oldest].clear()
		r.drop(dropReasmOverflow)
		free = oldest
	}
	s := &r.slots[free]
	s.clear()
	s.used, s.key, s.born, s.deadline = true, key, now, now+int64(r.timeout)
	return free
}
