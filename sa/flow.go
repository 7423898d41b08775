package sa

import (
	"encoding/binary"
	"net/netip"

	"github.com/secnic/secnic/internal/packet"
)

// Flow is what a policy lookup matches: a packet's addresses, protocol and
// ports (ICMP type and code in the ports; 0 when unknown, e.g. for
// non-first fragments).
type Flow struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// FlowOf reads the flow of an IP datagram for policy lookup, without
// copying or allocating: addresses, the upper-layer protocol (after IPv6
// extension headers), and the ports of TCP, UDP, SCTP and UDP-Lite, or the
// type (SrcPort) and code (DstPort) of ICMP and ICMPv6. Non-first fragments
// carry no ports (0). It returns false for a malformed datagram, or a
// first fragment or datagram too short for its transport ports.
func FlowOf(pkt []byte) (Flow, bool) {
	sp, err := packet.SplitIP(pkt)
	if err != nil || sp.Len > len(pkt) {
		return Flow{}, false
	}
	var f Flow
	nonFirst := false
	switch packet.Version(pkt) {
	case 4:
		h := packet.IPv4(pkt)
		f.Src, f.Dst = h.Src(), h.Dst()
		nonFirst = h.FragOffset() != 0
	default:
		h := packet.IPv6(pkt)
		f.Src, f.Dst = h.Src(), h.Dst()
		if sp.Fragment {
			// SplitIP stops in front of the fragment header's payload; the
			// fragment offset is in the fragment header itself.
			it := packet.NewIPv6ExtIter(pkt[:sp.Len])
			for it.Proto() != packet.ProtoFragment {
				if !it.Next() {
					return Flow{}, false
				}
			}
			fh, ok := it.Header()
			if !ok {
				return Flow{}, false
			}
			nonFirst = binary.BigEndian.Uint16(fh[2:])&0xfff8 != 0
		}
	}
	f.Proto = sp.Proto
	if nonFirst {
		return f, true
	}
	return withPorts(f, pkt[sp.HdrLen:sp.Len])
}

// FlowOfLoc is FlowOf of a datagram that packet.Locate has parsed without
// an error (loc), as bundle.Decap leaves it: it takes the addresses,
// protocol and header length from loc instead of parsing the headers
// again. Where Locate's view of the headers is not SplitIP's (IPv6
// extension headers, fragments) or loc is nil or zero, it parses pkt with
// FlowOf. The result is always FlowOf(pkt)'s.
func FlowOfLoc(pkt []byte, loc *packet.Loc) (Flow, bool) {
	if loc == nil || loc.Len == 0 || loc.Len > len(pkt) || loc.Fragment ||
		(packet.Version(pkt) == 6 && loc.HdrLen != packet.IPv6Len) {
		return FlowOf(pkt)
	}
	return withPorts(Flow{Src: loc.Src, Dst: loc.Dst, Proto: loc.Proto}, pkt[loc.HdrLen:loc.Len])
}

// withPorts completes f with the ports (or ICMP type and code) in l4, the
// upper-layer header and payload of a first fragment or whole datagram.
func withPorts(f Flow, l4 []byte) (Flow, bool) {
	switch f.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, 132, 136:
		if len(l4) < 4 {
			return Flow{}, false
		}
		f.SrcPort = binary.BigEndian.Uint16(l4[0:])
		f.DstPort = binary.BigEndian.Uint16(l4[2:])
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if len(l4) < 2 {
			return Flow{}, false
		}
		f.SrcPort, f.DstPort = uint16(l4[0]), uint16(l4[1])
	}
	return f, true
}

// HasPorts reports whether a flow of IP protocol proto carries ports in
// Flow (TCP, UDP, SCTP, UDP-Lite; ICMP and ICMPv6 type and code).
func HasPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 132, 136, 1, 58:
		return true
	}
	return false
}
