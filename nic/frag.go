package nic

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/secnic/secnic/internal/packet"
)

// This file holds the slow paths of the transmit loop: fragmenting a
// protected (or bypassed) datagram that is larger than the wire MTU, and
// answering an oversized datagram that must not be fragmented with an ICMP
// "fragmentation needed" / ICMPv6 "packet too big" to the host.

// Minimum MTUs (RFC 791, RFC 8200).
const (
	minMTU4 = 68
	minMTU6 = 1280
)

// spares is a fixed set of buffers the transmit loop uses for fragments and
// ICMP messages within one batch. The loop resets it after every write.
type spares struct {
	bufs []*packet.Buf
	next int
}

func newSpares(n, size int) *spares {
	s := &spares{bufs: make([]*packet.Buf, n)}
	for i := range s.bufs {
		s.bufs[i] = packet.NewBuf(size)
	}
	return s
}

func (s *spares) free() int { return len(s.bufs) - s.next }

func (s *spares) get() *packet.Buf {
	if s.next == len(s.bufs) {
		return nil
	}
	b := s.bufs[s.next]
	s.next++
	b.Reset()
	return b
}

func (s *spares) reset() { s.next = 0 }

// fragment4 splits the IPv4 datagram in p into fragments of at most mtu
// bytes: p keeps the first fragment, the others are taken from sp and
// appended to out. It refragments fragments correctly (offsets add up, the
// last piece keeps the original MF). It returns false if it cannot (bad
// header or not enough spare buffers); p is then unchanged.
func fragment4(p *packet.Buf, mtu int, sp *spares, out []*packet.Buf) ([]*packet.Buf, bool) {
	pkt := p.Bytes()
	hl, ok := packet.ValidIPv4(pkt)
	if !ok {
		return out, false
	}
	h := packet.IPv4(pkt)
	total := h.TotalLen()
	pkt = pkt[:total]
	// Headers of the later fragments keep only the options with the copy flag.
	var later [60]byte
	ll := copyOptions4(later[:], pkt[:hl])
	first := (mtu - hl) &^ 7
	rest := (mtu - ll) &^ 7
	if first <= 0 || rest <= 0 {
		return out, false
	}
	data := total - hl
	n := 1
	if data > first {
		n += (data - first + rest - 1) / rest
	}
	if n-1 > sp.free() {
		return out, false
	}
	base := h.FragOffset()
	mf := h.MoreFragments()
	flags := h.FlagsFrag() & 0x4000 // keep DF as it was
	for pos := first; pos < data; pos += rest {
		end := min(pos+rest, data)
		f := sp.get()
		fb, _ := f.Append(ll + end - pos)
		copy(fb, later[:ll])
		copy(fb[ll:], pkt[hl+pos:hl+end])
		fh := packet.IPv4(fb)
		fh.SetTotalLen(len(fb))
		ff := flags | uint16((base+pos)/8)
		if end < data || mf {
			ff |= 0x2000
		}
		fh.SetFlagsFrag(ff)
		fh.UpdateChecksum()
		out = append(out, f)
	}
	if first < data {
		p.Len = hl + first
		h = packet.IPv4(p.Bytes())
		h.SetTotalLen(p.Len)
		h.SetFlagsFrag(flags | 0x2000 | uint16(base/8))
		h.UpdateChecksum()
	}
	return out, true
}

// copyOptions4 writes into dst an IPv4 header made of the fixed part of hdr
// and those options whose copied flag is set (RFC 791), padded to 4 bytes,
// with the IHL set, and returns its length.
func copyOptions4(dst []byte, hdr []byte) int {
	n := copy(dst, hdr[:packet.IPv4MinLen])
	for i := packet.IPv4MinLen; i < len(hdr); {
		t := hdr[i]
		if t == 0 { // end of options
			break
		}
		if t == 1 { // no-op
			i++
			continue
		}
		if i+1 >= len(hdr) {
			break
		}
		l := int(hdr[i+1])
		if l < 2 || i+l > len(hdr) {
			break
		}
		if t&0x80 != 0 {
			n += copy(dst[n:], hdr[i:i+l])
		}
		i += l
	}
	for n%4 != 0 {
		dst[n] = 0
		n++
	}
	dst[0] = 0x40 | byte(n/4)
	return n
}

// fragID6 numbers the IPv6 fragments we originate.
var fragID6 atomic.Uint32

func init() {
	var b [4]byte
	_, _ = rand.Read(b[:])
	fragID6.Store(binary.BigEndian.Uint32(b[:]))
}

// fragment6 splits the IPv6 datagram in p into fragments of at most mtu
// bytes by inserting a fragment header after the unfragmentable part (the
// IPv6 header and any hop-by-hop, routing and preceding destination
// options headers). p keeps the first fragment; the others come from sp and
// are appended to out. It returns false if it cannot; p is then unchanged.
func fragment6(p *packet.Buf, mtu int, sp *spares, out []*packet.Buf) ([]*packet.Buf, bool) {
	pkt := p.Bytes()
	s, err := packet.SplitIP(pkt)
	if err != nil || s.Fragment || packet.Version(pkt) != 6 {
		return out, false
	}
	pkt = pkt[:s.Len]
	u := s.HdrLen
	data := len(pkt) - u
	chunk := (mtu - u - 8) &^ 7
	if chunk <= 0 || p.HeadroomLen() < 8 {
		return out, false
	}
	n := (data + chunk - 1) / chunk
	if n-1 > sp.free() {
		return out, false
	}
	id := fragID6.Add(1)
	next := s.Proto
	for pos := chunk; pos < data; pos += chunk {
		end := min(pos+chunk, data)
		f := sp.get()
		fb, _ := f.Append(u + 8 + end - pos)
		copy(fb, pkt[:u])
		fb[s.NextOff] = packet.ProtoFragment
		writeFragHdr(fb[u:], next, pos, end < data, id)
		copy(fb[u+8:], pkt[u+pos:u+end])
		packet.IPv6(fb).SetPayloadLen(len(fb) - packet.IPv6Len)
		out = append(out, f)
	}
	// First fragment in place: the unfragmentable part moves 8 bytes back.
	old := p.Off
	p.Prepend(8)
	copy(p.B[p.Off:p.Off+u], p.B[old:old+u])
	p.Len = u + 8 + min(chunk, data)
	fb := p.Bytes()
	fb[s.NextOff] = packet.ProtoFragment
	writeFragHdr(fb[u:], next, 0, chunk < data, id)
	packet.IPv6(fb).SetPayloadLen(len(fb) - packet.IPv6Len)
	return out, true
}

func writeFragHdr(b []byte, next uint8, off int, more bool, id uint32) {
	b[0], b[1] = next, 0
	v := uint16(off) // offset in bytes is a multiple of 8: the low 3 bits are free
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
}

// isICMPError reports whether pkt is an ICMP or ICMPv6 error message, to
// which no ICMP error may be sent (RFC 1122 3.2.2, RFC 4443 2.4).
func isICMPError(pkt []byte) bool {
	s, err := packet.SplitIP(pkt)
	if err != nil || s.HdrLen >= len(pkt) {
		return false
	}
	t := pkt[s.HdrLen]
	switch s.Proto {
	case packet.ProtoICMP:
		return t == 3 || t == 4 || t == 5 || t == 11 || t == 12
	case packet.ProtoICMPv6:
		return t < 128
	}
	return false
}

// tooBig writes into dst the ICMP "fragmentation needed" (IPv4, type 3
// code 4) or ICMPv6 "packet too big" (type 2) answer to the datagram orig,
// announcing mtu, addressed back to orig's source. The answer comes from
// orig's destination: that address is routed through the host port, so the
// host stack accepts it (a host-local source would be a martian). It
// returns false if no answer may be sent.
func tooBig(dst *packet.Buf, orig []byte, mtu int) bool {
	dst.Reset()
	switch packet.Version(orig) {
	case 4:
		if len(orig) < packet.IPv4MinLen {
			return false
		}
		h := packet.IPv4(orig)
		src := h.Src()
		if !src.IsValid() || src.IsUnspecified() || src.IsMulticast() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || h.FragOffset() != 0 {
			return false
		}
		q := min(len(orig), 576-packet.IPv4MinLen-8)
		b, err := dst.Append(packet.IPv4MinLen + 8 + q)
		if err != nil {
			return false
		}
		packet.WriteIPv4(b, packet.IPv4Fields{TOS: 0xc0, TotalLen: len(b), TTL: 64, Protocol: packet.ProtoICMP, Src: h.Dst(), Dst: src})
		m := b[packet.IPv4MinLen:]
		m[0], m[1] = 3, 4
		m[2], m[3], m[4], m[5] = 0, 0, 0, 0
		binary.BigEndian.PutUint16(m[6:], uint16(mtu))
		copy(m[8:], orig[:q])
		binary.BigEndian.PutUint16(m[2:], packet.Checksum(m, 0))
		return true
	case 6:
		if len(orig) < packet.IPv6Len {
			return false
		}
		h := packet.IPv6(orig)
		src := h.Src()
		if src.IsUnspecified() || src.IsMulticast() {
			return false
		}
		q := min(len(orig), minMTU6-packet.IPv6Len-8)
		b, err := dst.Append(packet.IPv6Len + 8 + q)
		if err != nil {
			return false
		}
		packet.WriteIPv6(b, packet.IPv6Fields{PayloadLen: 8 + q, NextHeader: packet.ProtoICMPv6, HopLimit: 64, Src: h.Dst(), Dst: src})
		m := b[packet.IPv6Len:]
		m[0], m[1], m[2], m[3] = 2, 0, 0, 0
		binary.BigEndian.PutUint32(m[4:], uint32(mtu))
		copy(m[8:], orig[:q])
		binary.BigEndian.PutUint16(m[2:], packet.TransportChecksum(h.Dst(), src, packet.ProtoICMPv6, m))
		return true
	}
	return false
}
