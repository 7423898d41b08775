package nic

import "github.com/secnic/secnic/tun"

// WirePort is the network side of the NIC: the "cable" that carries
// protected IP packets. It has the same batched shape as tun.Port, so a
// tun.MemPort (tun.NewMemPair) serves as an in-memory wire for tests.
//
// Read fills bufs[i][offset:] with whole IP datagrams, sets sizes[i] and
// returns how many it filled (at least one; it blocks until then). Every
// buffer must hold MTU() bytes after offset; a datagram that was larger is
// reported with size 0. Write sends bufs[i][offset:] for every i and returns
// the number of packets the port accepted; a packet that could not be sent
// is skipped, the others still go out, and the error describes the failure.
// After Close, Read and Write fail with an error matching os.ErrClosed.
//
// Implementations in this package: UDPPort (a point-to-point cable between
// two secnic NICs over UDP) and LinkPort (real ESP/AH packets on a Linux
// network interface).
type WirePort interface {
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	Write(bufs [][]byte, offset int) (n int, err error)
	// BatchSize is the largest number of packets one Read returns and the
	// preferred number per Write.
	BatchSize() int
	// MTU is the largest IP datagram the port carries.
	MTU() int
	// Name identifies the port in logs and metrics.
	Name() string
	// Close releases the port and unblocks pending calls.
	Close() error
}

var _ WirePort = (*tun.MemPort)(nil)
