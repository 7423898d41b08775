package wire

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

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
	// SocketBuffer sets SO_RCVBUF and SO_SNDBUF in bytes (default 4 MiB).
	SocketBuffer int
	// NetnsPath, if set, opens the socket in that network namespace
	// (e.g. /run/netns/NAME).
	NetnsPath string
}

// UDPPort is a point-to-point virtual cable between two secnic NICs: every
// UDP datagram carries one protected IP packet. The socket is connected to
// the peer, so the kernel drops datagrams from anyone else, and reads and
// writes move a batch per recvmmsg/sendmmsg system call without allocating.
type UDPPort struct {
	conn   *net.UDPConn
	io     *mmsg
	mtu    int
	batch  int
	name   string
	closed atomic.Bool
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
		cfg.SocketBuffer = 4 << 20
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
	_ = c.SetReadBuffer(cfg.SocketBuffer)
	_ = c.SetWriteBuffer(cfg.SocketBuffer)
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("wire: udp wire port: %w", err)
	}
	// The emulated link does its own fragmentation: never let the kernel
	// fragment a datagram (loopback would not anyway).
	_ = rc.Control(func(fd uintptr) {
		if network == "udp4" {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
		}
	})
	return &UDPPort{
		conn:  c,
		io:    newMmsg(rc, cfg.Batch),
		mtu:   cfg.MTU,
		batch: cfg.Batch,
		name:  fmt.Sprintf("udp:%v->%v", c.LocalAddr(), cfg.Peer),
	}, nil
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
	n, err := p.io.recv(bufs, sizes, offset)
	if err != nil {
		return 0, p.closedErr(err)
	}
	return n, nil
}

// Write sends bufs[i][offset:] as one datagram each, in batches.
func (p *UDPPort) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr(nil)
	}
	total := 0
	var last error
	for len(bufs) > 0 {
		cnt := min(len(bufs), p.batch)
		for i := range cnt {
			p.io.prepSend(i, bufs[i][offset:])
		}
		n, err := p.io.send(cnt)
		total += n
		if err != nil {
			if p.closed.Load() || errors.Is(err, net.ErrClosed) {
				return total, p.closedErr(err)
			}
			last = err
		}
		bufs = bufs[cnt:]
	}
	if last != nil {
		return total, p.closedErr(last)
	}
	return total, nil
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
