package wire

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/mmsg"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/tun"
)

// UDPConfig configures a UDPPort.
type UDPConfig struct {
	// Local is the address and port to bind, e.g. 127.0.0.1:4789.
	Local netip.AddrPort
	// Peer is the other NIC's UDP address; only datagrams from it are received.
	Peer netip.AddrPort
	// MTU is the largest IP datagram the cable carries (default 1500). It
	// is the "wire MTU" of the emulated link, independent of the UDP path
	// underneath (loopback carries 64 KiB datagrams).
	MTU int
	// Batch is the number of datagrams per system call (default 64).
	Batch int
	// SocketBuffer sets SO_RCVBUF and SO_SNDBUF in bytes (default 7 MiB,
	// as wireguard-go; as root the FORCE variants pass net.core.rmem_max
	// and wmem_max).
	SocketBuffer int
	// NoSegmentOffload keeps the port from using UDP_SEGMENT and UDP_GRO
	// even where the kernel has them: one datagram per packet each way.
	NoSegmentOffload bool
	// Logger receives the one warning when the kernel refuses segmented
	// sends (nil: slog.Default()).
	Logger *slog.Logger
	// NetnsPath, if set, opens the socket in that network namespace
	// (e.g. /run/netns/NAME).
	NetnsPath string
}

// UDPPort is a point-to-point virtual cable between two secnic NICs: every
// UDP datagram carries one protected IP packet. The socket is connected to
// the peer, so the kernel drops datagrams from anyone else, and reads and
// writes move a batch per recvmmsg/sendmmsg system call without allocating.
//
// Where the kernel has UDP segmentation offload, Write sends each run of
// equal-size packets (the ESP packets of one TSO super-packet from the host
// are all one size but the last) as one segmented message, zero-copy from
// the caller's buffers, and Read takes coalesced receives (UDP_GRO) apart
// into the caller's buffers; see SegmentOffload.
type UDPPort struct {
	conn   *net.UDPConn
	io     *mmsg.Conn // receive without UDP_GRO
	gro    *groReader // receive with UDP_GRO (io unused then)
	tx     *gsoSender
	mtu    int
	batch  int
	name   string
	closed atomic.Bool
	fd     int32 // for Ready's poll(2); the socket stays owned by conn
}

// OpenUDP binds cfg.Local and connects to cfg.Peer.
func OpenUDP(cfg UDPConfig) (*UDPPort, error) {
	if !cfg.Local.IsValid() || !cfg.Peer.IsValid() {
		return nil, errors.New("wire: the udp wire port needs a local and a peer address with ports, e.g. local 127.0.0.1:4789 peer 127.0.0.1:4790")
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.MTU < 576 || cfg.MTU > 65507 {
		return nil, fmt.Errorf("wire: udp wire MTU %d is outside 576..65507", cfg.MTU)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = DefaultSocketBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	network := "udp4"
	if cfg.Local.Addr().Is6() && !cfg.Local.Addr().Is4In6() {
		network = "udp6"
	}
	var c *net.UDPConn
	err := netns.Do(cfg.NetnsPath, func() (err error) {
		c, err = net.DialUDP(network, net.UDPAddrFromAddrPort(cfg.Local), net.UDPAddrFromAddrPort(cfg.Peer))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("wire: udp wire port %v -> %v: %w (is the local address configured and the port free?)", cfg.Local, cfg.Peer, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("wire: udp wire port: %w", err)
	}
	var gso, gro bool
	_ = rc.Control(func(fd uintptr) {
		setSocketBuffers(int(fd), cfg.SocketBuffer)
		// The emulated link does its own fragmentation: never let the
		// kernel fragment a datagram (loopback would not anyway).
		if network == "udp4" {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
		}
		if !cfg.NoSegmentOffload {
			gso = probeGSO(int(fd))
			gro = enableGRO(int(fd))
		}
	})
	p := &UDPPort{
		conn:  c,
		mtu:   cfg.MTU,
		batch: cfg.Batch,
		name:  fmt.Sprintf("udp:%v->%v", c.LocalAddr(), cfg.Peer),
	}
	maxBytes := gsoMaxBytes4
	if network == "udp6" {
		maxBytes = gsoMaxBytes6
	}
	p.tx = newGSOSender(rc, cfg.Batch, maxBytes, gso, cfg.Logger, p.name)
	if gro {
		p.gro = newGROReader(rc, cfg.Batch)
	} else {
		p.io = mmsg.New(rc, cfg.Batch)
	}
	p.fd = -1
	rc.Control(func(fd uintptr) { p.fd = int32(fd) })
	return p, nil
}

// Ready implements tun.Poller: whether a datagram is waiting, from a
// poll(2) with no timeout (for the NIC's busy-polling). Datagrams of a
// coalesced receive that an earlier Read left over are not seen; that Read
// then returns at once anyway.
func (p *UDPPort) Ready() bool {
	if p.closed.Load() || p.fd < 0 {
		return p.closed.Load()
	}
	fds := [1]unix.PollFd{{Fd: p.fd, Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0
}

// DefaultSocketBuffer is the socket buffer size, in bytes, of a UDP wire
// port whose configuration names none (wireguard-go's choice).
const DefaultSocketBuffer = 7 << 20

// setSocketBuffers sets SO_RCVBUF and SO_SNDBUF to size, past the sysctl
// limits with the FORCE variants where allowed (CAP_NET_ADMIN).
func setSocketBuffers(fd, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
	}
}

func (p *UDPPort) closedErr(err error) error {
	if p.closed.Load() || errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("wire: %s is closed: %w", p.name, os.ErrClosed)
	}
	return fmt.Errorf("wire: %s: %w", p.name, err)
}

// Read receives up to len(bufs) datagrams (at most BatchSize) into
// bufs[i][offset:]. A datagram larger than the buffer is reported with size 0.
func (p *UDPPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr(nil)
	}
	var n int
	var err error
	if p.gro != nil {
		n, err = p.gro.recv(bufs, sizes, offset)
	} else {
		n, err = p.io.Recv(bufs, sizes, offset)
	}
	if err != nil {
		return 0, p.closedErr(err)
	}
	return n, nil
}

// Write sends bufs[i][offset:] as one datagram each, in batches; runs of
// equal-size packets go as one segmented message each while
// SegmentOffload is true. It returns the number of packets sent (see
// tun.Port).
func (p *UDPPort) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr(nil)
	}
	if offset < 0 {
		return 0, fmt.Errorf("wire: %s: %w: offset %d is negative", p.name, tun.ErrOffset, offset)
	}
	for i, b := range bufs {
		if offset > len(b) {
			return 0, fmt.Errorf("wire: %s: %w: offset %d is past the end of bufs[%d] (length %d)", p.name, tun.ErrOffset, offset, i, len(b))
		}
	}
	n, err := p.tx.write(bufs, offset, nil)
	if err != nil {
		return n, p.closedErr(err)
	}
	return n, nil
}

// SegmentOffload reports whether Write hands runs of equal-size packets to
// the kernel as one segmented send (UDP_SEGMENT). It is false when the
// kernel lacks it, when the port was opened with NoSegmentOffload, and
// after the kernel refused it on this socket.
func (p *UDPPort) SegmentOffload() bool { return p.tx.on.Load() }

// ReceiveOffload reports whether the kernel may coalesce received datagrams
// (UDP_GRO) for Read to take apart.
func (p *UDPPort) ReceiveOffload() bool { return p.gro != nil }

// OffloadStats returns how many runs went out one datagram each after the
// kernel refused them segmented, and how many receives were coalesced.
func (p *UDPPort) OffloadStats() (fallbacks, coalesced uint64) {
	if p.gro != nil {
		coalesced = p.gro.coalesced.Load()
	}
	return p.tx.fallbacks.Load(), coalesced
}

// BatchSize returns the number of datagrams per system call.
func (p *UDPPort) BatchSize() int { return p.batch }

// MTU returns the wire MTU of the emulated link.
func (p *UDPPort) MTU() int { return p.mtu }

// Name returns "udp:LOCAL->PEER".
func (p *UDPPort) Name() string { return p.name }

// LocalAddr returns the bound address (useful with port 0).
func (p *UDPPort) LocalAddr() netip.AddrPort {
	return p.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close closes the socket and unblocks Read.
func (p *UDPPort) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.conn.Close()
}

var _ tun.Port = (*UDPPort)(nil)
