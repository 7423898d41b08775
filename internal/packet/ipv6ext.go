package packet

// MaxIPv6ExtHeaders bounds how many extension headers an IPv6ExtIter steps
// over in one datagram. RFC 8200 4.1 has each extension header occur once
// (destination options twice), so a real chain is far shorter; the bound
// keeps the work for a hostile chain of minimum-size headers small.
const MaxIPv6ExtHeaders = 16

// IsIPv6Ext reports whether proto is an IPv6 extension header that
// IPv6ExtIter steps over: hop-by-hop options, routing, fragment or
// destination options. AH and ESP are not; the walkers treat them as the
// upper layer.
func IsIPv6Ext(proto uint8) bool {
	switch proto {
	case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDstOpts:
		return true
	}
	return false
}

// IPv6ExtIter walks the extension header chain of one IPv6 datagram in
// place, without copying or allocating. It stands on one header at a time,
// named by the next-header byte at NextOff: first the header after the
// fixed header, then, after each successful Next, the header that follows.
// It never reads outside the datagram and steps over at most
// MaxIPv6ExtHeaders headers.
//
//	it := packet.NewIPv6ExtIter(dgram)
//	for packet.IsIPv6Ext(it.Proto()) {
//		if !it.Next() {
//			return malformed
//		}
//	}
//	upper, at := it.Proto(), it.Off()
type IPv6ExtIter struct {
	b       []byte // the datagram
	off     int    // offset of the current header
	nextOff int    // offset of the byte that names the current header
	n       int    // headers stepped over
	proto   uint8  // protocol of the current header
}

// NewIPv6ExtIter returns an iterator standing on the header after the fixed
// header of dgram. dgram must start with a valid IPv6 header (see
// ValidIPv6) and end where the datagram ends (at 40 + payload length).
func NewIPv6ExtIter(dgram []byte) IPv6ExtIter {
	return IPv6ExtIter{b: dgram, off: IPv6Len, nextOff: 6, proto: dgram[6]}
}

// Proto returns the protocol of the current header.
func (it *IPv6ExtIter) Proto() uint8 { return it.proto }

// Off returns the offset of the current header in the datagram.
func (it *IPv6ExtIter) Off() int { return it.off }

// NextOff returns the offset of the byte that names the current header: 6
// (the fixed header's next header) or the start of the previous extension
// header.
func (it *IPv6ExtIter) NextOff() int { return it.nextOff }

// Header returns the current extension header, its next-header byte first,
// with its capacity cut at its end. ok is false if the current header is
// not an extension header (see IsIPv6Ext) or does not fit in the datagram.
func (it *IPv6ExtIter) Header() (h []byte, ok bool) {
	if !IsIPv6Ext(it.proto) || it.off+8 > len(it.b) {
		return nil, false
	}
	l := 8 // a fragment header has a fixed length
	if it.proto != ProtoFragment {
		l = (int(it.b[it.off+1]) + 1) * 8
	}
	if it.off+l > len(it.b) {
		return nil, false
	}
	return it.b[it.off : it.off+l : it.off+l], true
}

// Next steps over the current extension header to the one it names. It
// returns false and stays where it is if the current header is not an
// extension header, does not fit in the datagram, or would be the
// (MaxIPv6ExtHeaders+1)th stepped over; a caller that expected an
// extension header treats that as a malformed datagram.
func (it *IPv6ExtIter) Next() bool {
	h, ok := it.Header()
	if !ok || it.n == MaxIPv6ExtHeaders {
		return false
	}
	it.n++
	it.nextOff, it.proto = it.off, h[0]
	it.off += len(h)
	return true
}
