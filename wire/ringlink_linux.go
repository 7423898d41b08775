package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/packet"
)

// The link port's packet rings (LinkRing).

// ringRXVersion is the TPACKET version of the receive ring. TPACKET_V3
// hands over whole blocks, but a block that is not full only when its
// retire timer (at least 1 ms) fires, which put 1 ms on every receive at
// low rates (request/response: 403 transactions/s against 3945 with V2; see
// docs/performance.md, "Link wire: packet rings / AF_XDP"). TPACKET_V2
// hands over each frame as it is written, and the reader still takes every
// waiting frame per wake-up. The tests run both.
var ringRXVersion = unix.TPACKET_V2

// txRingFrames is the number of TX frames: a few batches in flight.
const txRingFrames = 256

// pow2 returns the smallest power of two >= n.
func pow2(n int) int { return 1 << bits.Len(uint(n-1)) }

// openRings sets up the RX ring socket, the TX ring socket and the next-hop
// resolver. On error the caller calls closeRings.
func (p *LinkPort) openRings(cfg LinkConfig, ifi *net.Interface) error {
	if len(ifi.HardwareAddr) != 6 || ifi.Flags&(net.FlagLoopback|net.FlagPointToPoint) != 0 {
		return errors.New("the interface is not Ethernet (the TX ring writes Ethernet frames)")
	}
	if err := p.openRXRing(cfg); err != nil {
		return err
	}
	if err := p.openTXRing(cfg); err != nil {
		return err
	}
	h, err := netns.Handle(cfg.NetnsPath)
	if err != nil {
		return fmt.Errorf("netlink (for the neighbour table): %w", err)
	}
	p.hops = newNextHops(h, p.ifindex, ifi.HardwareAddr)
	p.slow = make([][]byte, 0, p.batch)
	p.method = LinkRing
	return nil
}

func (p *LinkPort) openRXRing(cfg LinkConfig) error {
	fd, err := filteredPacketSocket(cfg.EncapPort)
	if err != nil {
		return err
	}
	g := rxGeometry{Version: ringRXVersion, RetireMs: 1}
	if g.Version == unix.TPACKET_V3 {
		// Blocks of 256 KiB (or a bigger power of two for jumbo MTUs): a
		// block holds many packets, and one wake-up hands them all over.
		g.BlockSize = max(256<<10, pow2(p.mtu+bdHdrLen+tp3HdrLen+64))
		g.FrameSize = 2048
	} else {
		// Room for the header, the sockaddr_ll and the packet.
		g.FrameSize = pow2(p.mtu + 128)
		g.BlockSize = max(g.FrameSize, os.Getpagesize())
	}
	g.Blocks = max(4, cfg.SocketBuffer/g.BlockSize)
	r, err := setupRX(fd, g)
	if err != nil {
		unix.Close(fd)
		return err
	}
	r.fd = fd
	sll := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}
	if err := unix.Bind(fd, sll); err != nil {
		unix.Munmap(r.mem)
		unix.Close(fd)
		return fmt.Errorf("bind AF_PACKET socket: %w", err)
	}
	r.f = os.NewFile(uintptr(fd), "secnic-link-rxring-"+p.ifname)
	if r.rc, err = r.f.SyscallConn(); err != nil {
		r.close()
		return err
	}
	p.rxr = r
	return nil
}

func (p *LinkPort) openTXRing(cfg LinkConfig) error {
	// Protocol 0: this socket receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("AF_PACKET socket: %w", permHint(err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		unix.Close(fd)
		return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	// Frames the kernel finds malformed are skipped, not left blocking the
	// ring (Write checks every packet before it fills a frame).
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1)
	frameSize := pow2(tp2HdrLen + ethHdrLen + p.mtu)
	t, err := setupTX(fd, frameSize, txRingFrames)
	if err != nil {
		unix.Close(fd)
		return err
	}
	// The frames in flight never exhaust the send buffer.
	sndbuf := max(cfg.SocketBuffer, 2*t.frames*frameSize)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0, Ifindex: p.ifindex}); err != nil {
		unix.Munmap(t.mem)
		unix.Close(fd)
		return fmt.Errorf("bind AF_PACKET TX socket: %w", err)
	}
	t.f = os.NewFile(uintptr(fd), "secnic-link-txring-"+p.ifname)
	if t.rc, err = t.f.SyscallConn(); err != nil {
		t.close()
		return err
	}
	p.txr = t
	return nil
}

func (p *LinkPort) closeRings() {
	if p.rxr != nil {
		p.rxr.close()
	}
	if p.txr != nil {
		p.txr.close()
	}
	if p.xsk != nil {
		p.xsk.close()
	}
	if p.hops != nil {
		p.hops.close()
	}
	if !p.closed.Load() {
		// A failed set-up: the port goes on without rings.
		p.rxr, p.txr, p.xsk, p.hops, p.method = nil, nil, nil, nil, ""
	}
}

// dstOf returns the destination of an IP packet, or ok=false if it is too
// short for its header.
func dstOf(b []byte) (netip.Addr, bool) {
	switch packet.Version(b) {
	case 4:
		if len(b) < packet.IPv4MinLen {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(b[16:20])), true
	case 6:
		if len(b) < packet.IPv6Len {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(b[24:40])), true
	}
	return netip.Addr{}, false
}

// frameBatch is what one Write on a frame ring (the TX ring, the XSK ring)
// keeps between its packets: the next-hop snapshot (one per Write keeps
// each destination on one path), the last destination's MAC, the packets
// that go through the raw IP sockets because their next hop is not
// resolved yet, and the count and last error so far.
type frameBatch struct {
	p       *LinkPort
	offset  int
	src     [6]byte
	snap    map[netip.Addr][6]byte
	lastDst netip.Addr
	lastMAC [6]byte
	slow    [][]byte
	total   int
	last    error
}

func (p *LinkPort) newFrameBatch(offset int) frameBatch {
	return frameBatch{p: p, offset: offset, src: *p.hops.src.Load(), snap: *p.hops.snap.Load(), slow: p.slow[:0]}
}

// route decides the path of buf (a packet at the batch's offset). With ok
// it goes on the ring, to mac; otherwise it was refused (w.last says why)
// or queued for the raw IP sockets. Either way the caller moves on to the
// next packet.
func (w *frameBatch) route(buf []byte) (b []byte, mac [6]byte, ok bool) {
	b = buf[w.offset:]
	dst, ok := dstOf(b)
	if !ok || len(b) > w.p.mtu {
		w.last = fmt.Errorf("cannot send a %d-byte packet of IP version %d (MTU %d)", len(b), packet.Version(b), w.p.mtu)
		return nil, mac, false
	}
	if dst == w.lastDst {
		return b, w.lastMAC, true
	}
	if mac, ok = w.snap[dst]; !ok {
		w.p.hops.lookup(dst) // ask for it
		if len(w.slow) == cap(w.slow) {
			w.sendSlow()
		}
		w.slow = append(w.slow, buf)
		return nil, mac, false
	}
	w.lastDst, w.lastMAC = dst, mac
	return b, mac, true
}

// frame writes the Ethernet header to mac and the packet b into the frame
// f and returns the frame's length.
func (w *frameBatch) frame(f, b []byte, mac [6]byte) int {
	copy(f[0:6], mac[:])
	copy(f[6:12], w.src[:])
	eth := uint16(unix.ETH_P_IP)
	if packet.Version(b) == 6 {
		eth = unix.ETH_P_IPV6
	}
	binary.BigEndian.PutUint16(f[12:14], eth)
	return ethHdrLen + copy(f[ethHdrLen:], b)
}

// sendSlow sends the queued packets through the raw IP sockets.
func (w *frameBatch) sendSlow() {
	if len(w.slow) == 0 {
		return
	}
	n, err := w.p.writeRaw(w.slow, w.offset)
	w.total += n
	if err != nil {
		w.last = err
	}
	w.slow = w.slow[:0]
}

// end sends what is queued for the raw sockets and returns Write's result.
func (w *frameBatch) end() (int, error) {
	w.sendSlow()
	clear(w.slow[:cap(w.slow)])
	if w.last != nil {
		return w.total, w.p.closedErr(w.last)
	}
	return w.total, nil
}

// writeRing sends the packets through the TX ring, and those whose next
// hop is not known yet through the raw IP sockets after them.
func (p *LinkPort) writeRing(bufs [][]byte, offset int) (int, error) {
	t := p.txr
	w := p.newFrameBatch(offset)
	t.mu.RLock()
	for len(bufs) > 0 {
		if t.mem == nil {
			t.mu.RUnlock()
			return w.total, p.closedErr(os.ErrClosed)
		}
		k := 0
		for len(bufs) > 0 && k < t.frames {
			b, mac, ok := w.route(bufs[0])
			if !ok {
				bufs = bufs[1:]
				continue
			}
			s := t.slot(k)
			if s == nil {
				break // ring full: send what is filled, then wait
			}
			t.fill(k, w.frame(s, b, mac))
			k++
			bufs = bufs[1:]
		}
		if k > 0 {
			n, err := t.flush(k)
			w.total += n
			if err != nil {
				w.last = err
				if errors.Is(err, unix.EBADF) {
					break
				}
			}
			continue
		}
		if len(bufs) > 0 {
			// The head frame is still on its way out.
			t.mu.RUnlock()
			err := t.waitSlot()
			t.mu.RLock()
			if err != nil {
				w.last = err
				break
			}
		}
	}
	t.mu.RUnlock()
	return w.end()
}
