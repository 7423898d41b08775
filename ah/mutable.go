package ah

import (
	"encoding/binary"

	"github.com/secnic/secnic/internal/packet"
)

// Outcome of walking the headers in front of AH.
type walkResult uint8

const (
	walkOK            walkResult = iota
	walkMalformed                // truncated or inconsistent header or option
	walkFragment                 // IPv4 fragment or IPv6 fragment header
	walkNotAH                    // the headers lead to something other than AH
	walkESP                      // the headers lead to ESP (an ESP packet offered to an AH SA)
	walkNoRoom                   // the save log does not fit in the tailroom
	walkUnpredictable            // an IPv6 routing header whose value at the destination cannot be predicted
)

// IPv4 option types (the whole type octet: copy flag, class, number) that
// RFC 4302 appendix A.1 classifies as immutable. Every other option,
// including unknown ones, is mutable and zeroed as a whole for the ICV.
const (
	optEOL        = 0    // End of Option List
	optNOP        = 1    // No Operation
	optSecurity   = 0x82 // Security (RFC 1108)
	optExtSec     = 0x85 // Extended Security (RFC 1108)
	optCommSec    = 0x86 // Commercial Security
	optRouterAlrt = 0x94 // Router Alert (RFC 2113)
	optSDMDD      = 0x95 // Sender Directed Multi-Destination Delivery (RFC 1770)
	optLSRR       = 0x83 // Loose Source Route: mutable, destination predictable
	optSSRR       = 0x89 // Strict Source Route: mutable, destination predictable
)

// IPv6 routing header types whose value at the destination the sender can
// predict (RFC 4302 appendix A.2).
const (
	rtType0   = 0 // RFC 2460 type 0 (deprecated by RFC 5095 but still predictable)
	rtType2   = 2 // Mobile IPv6 (RFC 6275)
	rtSegment = 4 // Segment Routing Header (RFC 8754)
)

// ipv6OptMutable is the bit of an IPv6 option type that says the option
// data may change en route (RFC 8200 4.2).
const ipv6OptMutable = 0x20

// mutable zeroes the mutable fields of the headers in front of AH in place
// (and writes the predictable ones as the destination will see them), so
// that the ICV input is contiguous in the packet, and remembers the
// original bytes in a save log so that restore can put them back. The log
// lives in the packet buffer's tailroom: entries are offset (2 bytes),
// length (2 bytes) and the saved bytes. Nothing is allocated.
type mutable struct {
	save []byte // log area (tailroom)
	n    int    // bytes of the log in use
	// A rotated IPv6 type 0/2 routing address list to rotate back before
	// the log is replayed: the list's first rotated address is at rotOff
	// and rotN addresses were rotated.
	rotOff, rotN int
}

// keep logs pkt[off:off+n].
func (m *mutable) keep(pkt []byte, off, n int) bool {
	if m.n+4+n > len(m.save) {
		return false
	}
	binary.BigEndian.PutUint16(m.save[m.n:], uint16(off))
	binary.BigEndian.PutUint16(m.save[m.n+2:], uint16(n))
	copy(m.save[m.n+4:], pkt[off:off+n])
	m.n += 4 + n
	return true
}

// zero logs and clears pkt[off:off+n].
func (m *mutable) zero(pkt []byte, off, n int) bool {
	if !m.keep(pkt, off, n) {
		return false
	}
	clear(pkt[off : off+n])
	return true
}

// restore puts back every byte normalize changed. The logged ranges never
// overlap; the routing rotation is undone first because its inverse reads
// the rotated destination address before the log restores it.
func (m *mutable) restore(pkt []byte) {
	if m.rotN > 0 {
		list := pkt[m.rotOff : m.rotOff+16*m.rotN]
		copy(list, list[16:])
		copy(list[16*(m.rotN-1):], pkt[24:40])
		m.rotN = 0
	}
	for i := 0; i < m.n; {
		off := int(binary.BigEndian.Uint16(m.save[i:]))
		n := int(binary.BigEndian.Uint16(m.save[i+2:]))
		copy(pkt[off:off+n], m.save[i+4:i+4+n])
		i += 4 + n
	}
	m.n = 0
}

// walk parses the IP header of pkt and, for IPv6, the hop-by-hop, routing
// and destination options headers up to the AH header, whose offset it
// returns with the offset of the byte that names AH. pkt must already be
// cut to the datagram's length. With m non-nil it also normalizes the
// mutable fields for the ICV (RFC 4302 3.3.3.1); sending says whether the
// packet is outbound, when the predictable fields are set to their values
// at the destination. On a result other than walkOK, m may hold a partial
// log; the caller restores it.
func walk(pkt []byte, m *mutable, sending bool) (ahOff, nextOff int, r walkResult) {
	switch packet.Version(pkt) {
	case 4:
		return walk4(pkt, m, sending)
	case 6:
		return walk6(pkt, m, sending)
	}
	return 0, 0, walkMalformed
}

func walk4(pkt []byte, m *mutable, sending bool) (int, int, walkResult) {
	hl, ok := packet.ValidIPv4(pkt)
	if !ok {
		return 0, 0, walkMalformed
	}
	h := packet.IPv4(pkt)
	if h.IsFragment() {
		return 0, 0, walkFragment
	}
	switch h.Protocol() {
	case packet.ProtoAH:
	case packet.ProtoESP:
		return 0, 0, walkESP
	default:
		return 0, 0, walkNotAH
	}
	if m != nil {
		// TOS (DSCP/ECN), flags and fragment offset, TTL, header checksum.
		if !m.zero(pkt, 1, 1) || !m.zero(pkt, 6, 2) || !m.zero(pkt, 8, 1) || !m.zero(pkt, 10, 2) {
			return 0, 0, walkNoRoom
		}
	}
	routed := false
	for i := packet.IPv4MinLen; i < hl; {
		t := pkt[i]
		if t == optEOL {
			break // the rest of the header is padding, included as it is
		}
		if t == optNOP {
			i++
			continue
		}
		if i+2 > hl {
			return 0, 0, walkMalformed
		}
		l := int(pkt[i+1])
		if l < 2 || i+l > hl {
			return 0, 0, walkMalformed
		}
		if m != nil {
			switch t {
			case optSecurity, optExtSec, optCommSec, optRouterAlrt, optSDMDD:
				// immutable: included as it is
			case optLSRR, optSSRR:
				// The destination address is mutable but predictable: on
				// the way out it is the last address of the route, unless
				// the route is already used up (pointer past the end).
				if sending && l >= 7 && int(pkt[i+2]) <= l {
					if routed {
						return 0, 0, walkMalformed // RFC 791: one source route at most
					}
					routed = true
					if !m.keep(pkt, 16, 4) {
						return 0, 0, walkNoRoom
					}
					copy(pkt[16:20], pkt[i+l-4:i+l])
				}
				if !m.zero(pkt, i, l) {
					return 0, 0, walkNoRoom
				}
			default:
				if !m.zero(pkt, i, l) {
					return 0, 0, walkNoRoom
				}
			}
		}
		i += l
	}
	return hl, 9, walkOK
}

func walk6(pkt []byte, m *mutable, sending bool) (int, int, walkResult) {
	if !packet.ValidIPv6(pkt) {
		return 0, 0, walkMalformed
	}
	if m != nil {
		// Traffic class and flow label (the version nibble stays), hop limit.
		if !m.keep(pkt, 0, 4) || !m.zero(pkt, 7, 1) {
			return 0, 0, walkNoRoom
		}
		pkt[0] &= 0xf0
		pkt[1], pkt[2], pkt[3] = 0, 0, 0
	}
	it := packet.NewIPv6ExtIter(pkt)
	rotated := false
	for {
		next := it.Proto()
		switch next {
		case packet.ProtoAH:
			return it.Off(), it.NextOff(), walkOK
		case packet.ProtoESP:
			return 0, 0, walkESP
		case packet.ProtoFragment:
			return 0, 0, walkFragment
		case packet.ProtoHopByHop, packet.ProtoDstOpts, packet.ProtoRouting:
		default:
			return 0, 0, walkNotAH
		}
		h, ok := it.Header()
		if !ok {
			return 0, 0, walkMalformed
		}
		off, l := it.Off(), len(h)
		if next == packet.ProtoRouting {
			if m != nil && sending && pkt[off+3] != 0 {
				if rotated {
					return 0, 0, walkUnpredictable // two routing headers in use
				}
				if r := m.route(pkt, off, l); r != walkOK {
					return 0, 0, r
				}
				rotated = true
			}
		} else if r := m.options(pkt, off+2, off+l); r != walkOK {
			return 0, 0, r
		}
		if !it.Next() {
			return 0, 0, walkMalformed // more than packet.MaxIPv6ExtHeaders
		}
	}
}

// options walks the TLV-encoded options of a hop-by-hop or destination
// options header in pkt[start:end] and, with m non-nil, zeroes the data of
// every option whose type says it may change en route (RFC 4302 3.3.3.1.2.2).
func (m *mutable) options(pkt []byte, start, end int) walkResult {
	for i := start; i < end; {
		t := pkt[i]
		if t == 0 { // Pad1
			i++
			continue
		}
		if i+2 > end {
			return walkMalformed
		}
		l := int(pkt[i+1])
		if i+2+l > end {
			return walkMalformed
		}
		if m != nil && t&ipv6OptMutable != 0 && l > 0 && !m.zero(pkt, i+2, l) {
			return walkNoRoom
		}
		i += 2 + l
	}
	return walkOK
}

// route sets an outbound routing header (at off, l bytes, segments left
// non-zero) and the IPv6 destination address to their values at the final
// destination (RFC 4302 appendix A.2: mutable but predictable).
func (m *mutable) route(pkt []byte, off, l int) walkResult {
	typ, left := pkt[off+2], int(pkt[off+3])
	switch typ {
	case rtType0, rtType2:
		// Addresses follow 4 reserved bytes. Each routing node swaps the
		// destination with the next address, so at the destination the
		// unvisited part of the list, prefixed by the current destination,
		// has moved one place right and the last address is the destination.
		n := (l - 8) / 16
		if (l-8)%16 != 0 || left > n {
			return walkMalformed
		}
		k := n - left // addresses already visited stay
		list := pkt[off+8+16*k : off+8+16*n]
		dst := m.n + 4 // where the log keeps the original destination
		if !m.keep(pkt, 24, 16) || !m.keep(pkt, off+3, 1) {
			return walkNoRoom
		}
		pkt[off+3] = 0
		copy(pkt[24:40], list[16*(left-1):])
		copy(list[16:], list[:16*(left-1)])
		copy(list[:16], m.save[dst:dst+16])
		m.rotOff, m.rotN = off+8+16*k, left
	case rtSegment:
		// RFC 8754: the segment list is not rewritten; at the last segment
		// Segments Left is 0 and the destination is Segment List[0].
		n := int(pkt[off+4]) + 1 // Last Entry + 1
		if 8+16*n > l || left > n-1 {
			return walkMalformed
		}
		if !m.keep(pkt, 24, 16) || !m.keep(pkt, off+3, 1) {
			return walkNoRoom
		}
		pkt[off+3] = 0
		copy(pkt[24:40], pkt[off+8:off+24])
	default:
		return walkUnpredictable
	}
	return walkOK
}
