package sa

import (
	"encoding/binary"

	"github.com/secnic/secnic/internal/packet"
)

// DefaultTTL is the tunnel-mode outer TTL / hop limit unless Params.TTL is set.
const DefaultTTL = 64

// outerTemplate is the tunnel-mode outer IP header with the fields that
// never change for the SA filled in, and for IPv4 the checksum partial sum
// of those fields, so that writing it per packet is a copy and a few stores.
type outerTemplate struct {
	hdr [packet.IPv6Len]byte
	len int
	sum uint32 // IPv4: sum of the constant 16-bit words
}

func (o *outerTemplate) init(p Params) {
	if p.Mode != Tunnel || !p.Dst.IsValid() {
		return
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	proto := uint8(p.Proto)
	if p.Encap != nil {
		proto = packet.ProtoUDP
	}
	if p.Dst.Is4() {
		o.len = packet.IPv4MinLen
		packet.WriteIPv4(o.hdr[:], packet.IPv4Fields{TTL: ttl, Protocol: proto, Src: p.Src, Dst: p.Dst})
		o.hdr[10], o.hdr[11] = 0, 0
		o.sum = packet.Sum(o.hdr[:packet.IPv4MinLen], 0)
		return
	}
	o.len = packet.IPv6Len
	packet.WriteIPv6(o.hdr[:], packet.IPv6Fields{NextHeader: proto, HopLimit: ttl, Src: p.Src, Dst: p.Dst})
}

// OuterLen returns the length of the tunnel-mode outer header (20 or 40).
func (s *SA) OuterLen() int { return s.outer.len }

// WriteOuter writes the tunnel-mode outer IP header into h for a datagram
// of totalLen bytes with the given DSCP/ECN (traffic class), DF bit and
// IPv4 identification. The IPv4 checksum is updated incrementally from the
// precomputed sum.
func (s *SA) WriteOuter(h []byte, totalLen int, tos uint8, df bool, id uint16) {
	o := &s.outer
	if o.len == packet.IPv4MinLen {
		h = h[:packet.IPv4MinLen]
		copy(h, o.hdr[:packet.IPv4MinLen])
		h[1] = tos
		binary.BigEndian.PutUint16(h[2:], uint16(totalLen))
		binary.BigEndian.PutUint16(h[4:], id)
		var flags uint32
		if df {
			h[6] = 0x40
			flags = 0x4000
		}
		sum := o.sum + uint32(tos) + uint32(totalLen) + uint32(id) + flags
		binary.BigEndian.PutUint16(h[10:], ^packet.Fold(sum))
		return
	}
	h = h[:packet.IPv6Len]
	copy(h, o.hdr[:])
	binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(tos)<<20)
	binary.BigEndian.PutUint16(h[4:], uint16(totalLen-packet.IPv6Len))
}
