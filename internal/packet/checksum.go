package packet

import (
	"encoding/binary"
	"net/netip"
)

// Checksum returns the Internet checksum (RFC 1071) of b, folded into the
// 32-bit partial sum initial. The result is the ones' complement, ready to be
// stored; a buffer that already contains its valid checksum yields 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^Fold(Sum(b, initial))
}

// Sum adds the 16-bit big-endian words of b to the partial sum s.
func Sum(b []byte, s uint32) uint32 {
	acc := uint64(s)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc += v >> 32
		acc += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc)
}

// Fold folds a 32-bit partial sum to 16 bits.
func Fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// PseudoHeaderSum returns the partial sum of the TCP/UDP pseudo-header for
// the given addresses, protocol and upper-layer length (RFC 768, RFC 8200).
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = Sum(a[:], 0)
		s = Sum(b[:], s)
	} else {
		a, b := src.As16(), dst.As16()
		s = Sum(a[:], 0)
		s = Sum(b[:], s)
	}
	s += uint32(proto) + uint32(length)
	return s
}

// TransportChecksum computes the TCP, UDP or ICMPv6 checksum of seg (header
// and data, with its checksum field zeroed by the caller) over the pseudo-header.
func TransportChecksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	return Checksum(seg, PseudoHeaderSum(src, dst, proto, len(seg)))
}
