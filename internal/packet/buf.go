// Package packet holds packet buffers with headroom and tailroom, zero-copy
// views of IPv4, IPv6, UDP and TCP headers, and Internet checksums.
//
// A Buf is one packet inside a larger backing array. Headers are prepended by
// moving Off back into the headroom and trailers appended by growing Len into
// the tailroom, so protecting a packet never copies its payload.
package packet

import (
	"errors"

	"github.com/secnic/secnic/internal/suite"
)

// Default sizes of the reserved areas around a packet. Headroom covers the
// largest outer header secnic prepends (IPv6 40 + UDP 8 + AH with the largest
// ICV 48 + ESP 8 + IV 16, rounded up); tailroom covers the largest ESP trailer
// (padding 255 + 2 + ICV 32) plus the slack some ciphers scribble past the ICV.
const (
	Headroom = 192
	Tailroom = 320
	// MaxPacket is the largest IP datagram a pooled buffer carries.
	MaxPacket = 65535
)

// ErrNoRoom is returned when a buffer has too little headroom or tailroom.
var ErrNoRoom = errors.New("packet: not enough headroom or tailroom in buffer; allocate buffers with packet.NewBuf")

// Buf is a packet inside a backing array: B[Off:Off+Len] is the packet,
// B[:Off] the headroom and B[Off+Len:] the tailroom.
type Buf struct {
	B   []byte
	Off int
	Len int
	// CB is the packet's scratch area for the transforms (like the Linux
	// skb control block): nonces, AAD and digests live here so that the
	// per-packet path needs no allocation. Pass &CB to the suite methods.
	CB suite.Scratch
}

// NewBuf returns a buffer that can carry a packet of up to size bytes with the
// default headroom and tailroom, positioned empty at the start of the data area.
func NewBuf(size int) *Buf {
	return &Buf{B: make([]byte, Headroom+size+Tailroom), Off: Headroom}
}

// Reset empties the buffer and places the packet start after the default headroom.
func (p *Buf) Reset() { p.Off, p.Len = Headroom, 0 }

// Bytes returns the packet.
func (p *Buf) Bytes() []byte { return p.B[p.Off : p.Off+p.Len] }

// Data returns the packet with its tailroom visible in the capacity, so that
// in-place transforms may write past the end.
func (p *Buf) Data() []byte { return p.B[p.Off : p.Off+p.Len : len(p.B)] }

// SetBytes copies b into the buffer after the default headroom.
func (p *Buf) SetBytes(b []byte) error {
	if Headroom+len(b) > len(p.B) {
		return ErrNoRoom
	}
	p.Off = Headroom
	p.Len = copy(p.B[p.Off:], b)
	return nil
}

// HeadroomLen returns the free bytes before the packet.
func (p *Buf) HeadroomLen() int { return p.Off }

// TailroomLen returns the free bytes after the packet.
func (p *Buf) TailroomLen() int { return len(p.B) - p.Off - p.Len }

// Prepend grows the packet by n bytes at the front and returns them.
func (p *Buf) Prepend(n int) ([]byte, error) {
	if n > p.Off {
		return nil, ErrNoRoom
	}
	p.Off -= n
	p.Len += n
	return p.B[p.Off : p.Off+n], nil
}

// Append grows the packet by n bytes at the end and returns them.
func (p *Buf) Append(n int) ([]byte, error) {
	if n > p.TailroomLen() {
		return nil, ErrNoRoom
	}
	s := p.B[p.Off+p.Len : p.Off+p.Len+n]
	p.Len += n
	return s, nil
}

// TrimFront removes n bytes from the front of the packet.
func (p *Buf) TrimFront(n int) {
	p.Off += n
	p.Len -= n
}

// TrimBack removes n bytes from the end of the packet.
func (p *Buf) TrimBack(n int) { p.Len -= n }
