// Package tun holds the port interface of the secnic NIC and its host-side
// ports: a Linux TUN device with batched I/O and kernel segmentation offloads,
// an in-memory port pair for tests and benchmarks that need no privileges (it
// also serves as an in-memory wire), and a fault-injecting wrapper. The wire
// ports (UDP cable, Linux link) are in package wire.
//
// Every port implements Port, a batched packet interface in the style of
// golang.zx2c4.com/wireguard/tun: a call moves a whole batch of packets, and an
// offset leaves headroom in front of every packet so that the NIC can prepend
// outer headers in place without copying.
package tun

import (
	"errors"
	"fmt"
)

// Port is a batched packet port: the host side of the NIC (a TUN device) and
// its wire side (the ports of package wire) alike. Read fills bufs[i][offset:]
// with packets and sizes[i] with their lengths and returns the count; Write
// sends bufs[i][offset:] for each i.
//
// Read blocks until at least one packet is available. It needs
// len(sizes) >= len(bufs); see the concrete types for how many buffers and how
// much room in each they require. A packet larger than the buffer may be
// reported with size 0 (the wire ports do).
//
// Write tries every packet: one it cannot send is skipped, the others still go
// out, and the error describes what failed. It returns the number of packets
// sent; a port that cannot tell which packets of a failed group went out counts
// none of them, so n never overstates. A caller must not write the batch, or
// part of it, again after an error: that could deliver a packet twice. Only
// invalid arguments (ErrOffset) make Write refuse the whole batch.
//
// After Close, Read and Write return an error that matches os.ErrClosed with
// errors.Is.
//
// A Port may need headroom in front of the packets given to Write (the Linux TUN
// writes a virtio-net header there). Callers that handle any Port should pass
// offset >= MinOffset(port), or simply >= MaxMinOffset.
type Port interface {
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	Write(bufs [][]byte, offset int) (n int, err error)
	// BatchSize is the number of packets a single Read may return and the
	// preferred number of packets per Write.
	BatchSize() int
	// MTU is the largest packet, in bytes, the port carries.
	MTU() int
	// Name identifies the port (the interface name for a TUN device).
	Name() string
	// Close releases the port and unblocks pending Read and Write calls.
	Close() error
}

// VirtioNetHdrLen is the size of the virtio-net header (struct virtio_net_hdr)
// that the Linux TUN device exchanges in front of every packet when offloads
// are enabled. Write needs this much headroom before each packet.
const VirtioNetHdrLen = 10

// MaxMinOffset is the largest MinOffset of any Port in this package. Buffers
// with at least this much headroom can be written to every port.
const MaxMinOffset = VirtioNetHdrLen

// MinOffset returns the smallest offset that p accepts in Write: the value of
// p's MinOffset method if it has one, and 0 otherwise.
func MinOffset(p Port) int {
	if m, ok := p.(interface{ MinOffset() int }); ok {
		return m.MinOffset()
	}
	return 0
}

// Errors returned for misuse of a Port. They are wrapped with details; test for
// them with errors.Is.
var (
	// ErrOffset means the offset is negative, smaller than the port's
	// MinOffset, or beyond the end of a buffer.
	ErrOffset = errors.New("tun: bad offset")
	// ErrShortBuffer means a buffer, or the sizes slice, is too small for the
	// packets to be read.
	ErrShortBuffer = errors.New("tun: buffer too small")
	// ErrPacketTooBig means a packet given to Write exceeds the port's MTU.
	ErrPacketTooBig = errors.New("tun: packet larger than MTU")
)

// checkWriteArgs validates the offset of a Write against every buffer.
func checkWriteArgs(bufs [][]byte, offset, minOffset int) error {
	if offset < minOffset {
		return fmt.Errorf("%w: offset %d is below the %d bytes of headroom this port needs; leave at least tun.MaxMinOffset bytes in front of each packet", ErrOffset, offset, minOffset)
	}
	for i, b := range bufs {
		if offset > len(b) {
			return fmt.Errorf("%w: offset %d is past the end of bufs[%d] (length %d)", ErrOffset, offset, i, len(b))
		}
	}
	return nil
}

// checkReadArgs validates the arguments of a Read that needs at least
// minBufs buffers each holding room bytes after offset.
func checkReadArgs(bufs [][]byte, sizes []int, offset, minBufs, room int) error {
	if offset < 0 {
		return fmt.Errorf("%w: offset %d is negative", ErrOffset, offset)
	}
	if len(bufs) < minBufs {
		return fmt.Errorf("%w: Read got %d buffers but needs at least BatchSize() = %d, since one read may return that many segments", ErrShortBuffer, len(bufs), minBufs)
	}
	if len(sizes) < len(bufs) {
		return fmt.Errorf("%w: sizes has %d entries for %d buffers; make len(sizes) >= len(bufs)", ErrShortBuffer, len(sizes), len(bufs))
	}
	for i, b := range bufs {
		if len(b)-offset < room {
			return fmt.Errorf("%w: bufs[%d] has %d bytes after offset %d but needs MTU() = %d", ErrShortBuffer, i, len(b)-offset, offset, room)
		}
	}
	return nil
}

// Multiqueue is implemented by a port that offers several independent
// queues, like a Linux multiqueue TUN device (IFF_MULTI_QUEUE, one descriptor
// per queue, the kernel spreading flows over them by hash). Queue(0) is the
// port itself. Each queue is a Port of its own that one reader and one writer
// may use without locking against the other queues; closing the port closes
// every queue. The NIC runs one worker per queue on such a port and needs no
// dispatcher on that side.
type Multiqueue interface {
	Port
	// Queues returns the number of queues (at least 1).
	Queues() int
	// Queue returns queue i, 0 <= i < Queues().
	Queue(i int) Port
}

// Poller is implemented by a port that can tell, without blocking and
// without consuming anything, whether a Read would return at once. The NIC
// uses it to busy-poll for a few microseconds after a batch before it
// blocks in Read (and sleeps).
type Poller interface {
	// Ready reports whether at least one packet is waiting to be read. It
	// must not allocate and must be safe to call while another goroutine is
	// blocked in Read.
	Ready() bool
}

// QueuesOf returns the queues of p: Queue(0..Queues()-1) if p is a
// Multiqueue, else p alone.
func QueuesOf(p Port) []Port {
	m, ok := p.(Multiqueue)
	if !ok || m.Queues() <= 1 {
		return []Port{p}
	}
	qs := make([]Port, m.Queues())
	for i := range qs {
		qs[i] = m.Queue(i)
	}
	return qs
}
