package wire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netns"
)

// The link port on AF_XDP (LinkXDP): the XDP program (xdpprog_linux.go)
// hands the frames secnic takes to an XSK socket before the kernel builds
// anything for them, so the kernel never sees that ESP; secnic sends
// Ethernet frames through the socket's TX ring (copy mode: a veth has no
// zero-copy), one sendto per batch.

// xskRing is one of the four single-producer single-consumer rings of an
// XSK socket, mapped from the kernel.
type xskRing struct {
	mem        []byte
	prod, cons *uint32
	desc       unsafe.Pointer
	mask       uint32
}

func mapXSKRing(fd int, pgoff int64, off unix.XDPRingOffset, n, descSize int) (xskRing, error) {
	size := int(off.Desc) + n*descSize
	mem, err := unix.Mmap(fd, pgoff, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return xskRing{}, err
	}
	return xskRing{
		mem:  mem,
		prod: (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		cons: (*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		desc: unsafe.Pointer(&mem[off.Desc]),
		mask: uint32(n - 1),
	}, nil
}

func (r *xskRing) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.desc, uintptr(i&r.mask)*8))
}

func (r *xskRing) xdesc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.desc, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}

// xsk is an AF_XDP socket bound to queue 0 of the interface, with its UMEM.
type xsk struct {
	f  *os.File
	fd int
	rc syscall.RawConn

	mu                 sync.RWMutex // Close holds it to unmap
	umem               []byte       // nil after close
	fill, comp, rx, tx xskRing
	frame              int // UMEM frame size

	free []uint64 // TX frames not in flight

	prog, xmap, link int // BPF program, XSKMAP and link fds

	// one read's arguments and result, for readFn
	bufs   [][]byte
	sizes  []int
	offset int
	n      int
	readFn func(fd uintptr) bool
	sent   atomic.Uint64
}

const (
	xskFrames    = 4096 // UMEM frames: half for receiving, half for sending
	xskRingSize  = 2048 // entries per ring
	xskFrameSize = 4096
)

// openXDP sets up the XSK socket and attaches the XDP program.
func (p *LinkPort) openXDP(cfg LinkConfig, ifi *net.Interface) (err error) {
	if len(ifi.HardwareAddr) != 6 || ifi.Flags&(net.FlagLoopback|net.FlagPointToPoint) != 0 {
		return errors.New("the interface is not Ethernet")
	}
	if p.mtu+ethHdrLen > xskFrameSize-unix.XDP_PACKET_HEADROOM {
		return fmt.Errorf("MTU %d is too large for a %d-byte AF_XDP frame", p.mtu, xskFrameSize)
	}
	// The socket serves receive queue 0: frames the interface's other
	// queues take would not reach it.
	if rx, err := rxQueues(p.ifname); err != nil {
		return fmt.Errorf("count the interface's receive queues: %w", err)
	} else if rx > 1 {
		return fmt.Errorf("the interface has %d receive queues in use; the AF_XDP port serves one (ethtool -L %s combined 1 makes it one)", rx, p.ifname)
	}
	x := &xsk{fd: -1, prog: -1, xmap: -1, link: -1, frame: xskFrameSize}
	p.xsk = x
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("AF_XDP socket: %w", permHint(err))
	}
	x.fd = fd
	x.umem, err = unix.Mmap(-1, 0, xskFrames*xskFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("UMEM: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&x.umem[0]))), Len: uint64(len(x.umem)), Size: xskFrameSize}
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG, uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0); e != 0 {
		return fmt.Errorf("XDP_UMEM_REG: %w", e)
	}
	for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o, xskRingSize); err != nil {
			return fmt.Errorf("XDP ring option %d: %w", o, err)
		}
	}
	var offs unix.XDPMmapOffsets
	l := uint32(unsafe.Sizeof(offs))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, uintptr(unsafe.Pointer(&offs)), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", e)
	}
	if x.fill, err = mapXSKRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, offs.Fr, xskRingSize, 8); err != nil {
		return fmt.Errorf("mmap fill ring: %w", err)
	}
	if x.comp, err = mapXSKRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, offs.Cr, xskRingSize, 8); err != nil {
		return fmt.Errorf("mmap completion ring: %w", err)
	}
	if x.rx, err = mapXSKRing(fd, unix.XDP_PGOFF_RX_RING, offs.Rx, xskRingSize, int(unsafe.Sizeof(unix.XDPDesc{}))); err != nil {
		return fmt.Errorf("mmap RX ring: %w", err)
	}
	if x.tx, err = mapXSKRing(fd, unix.XDP_PGOFF_TX_RING, offs.Tx, xskRingSize, int(unsafe.Sizeof(unix.XDPDesc{}))); err != nil {
		return fmt.Errorf("mmap TX ring: %w", err)
	}
	// The first half of the UMEM receives, the second half sends.
	half := xskFrames / 2
	prod := *x.fill.prod
	for i := range half {
		*x.fill.addr(prod + uint32(i)) = uint64(i * xskFrameSize)
	}
	atomic.StoreUint32(x.fill.prod, prod+uint32(half))
	x.free = make([]uint64, 0, half)
	for i := half; i < xskFrames; i++ {
		x.free = append(x.free, uint64(i*xskFrameSize))
	}
	// A socket closed a moment ago may still hold the queue: the kernel
	// releases it after a grace period.
	for i := 0; ; i++ {
		err := unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(p.ifindex), QueueID: 0})
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EBUSY) || i == 50 {
			return fmt.Errorf("bind AF_XDP socket: %w (is another AF_XDP program on queue 0 of the interface?)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if x.xmap, err = newXSKMap(1); err != nil {
		return fmt.Errorf("XSKMAP: %w", permHint(err))
	}
	if err := xskMapSet(x.xmap, 0, uint32(fd)); err != nil {
		return fmt.Errorf("XSKMAP update: %w", err)
	}
	prog, err := xdpProgram(ifi.HardwareAddr, cfg.EncapPort, x.xmap)
	if err != nil {
		return err
	}
	if x.prog, err = loadXDP(prog); err != nil {
		return permHint(err)
	}
	var native bool
	err = netns.Do(cfg.NetnsPath, func() error {
		x.link, native, err = attachXDP(x.prog, p.ifindex)
		return err
	})
	if err != nil {
		return err
	}
	_ = native
	if err := unix.SetNonblock(fd, true); err != nil {
		return err
	}
	x.f = os.NewFile(uintptr(fd), "secnic-link-xsk-"+p.ifname)
	x.fd = fd
	if x.rc, err = x.f.SyscallConn(); err != nil {
		return err
	}
	x.readFn = x.doRead
	h, err := netns.Handle(cfg.NetnsPath)
	if err != nil {
		return fmt.Errorf("netlink (for the neighbour table): %w", err)
	}
	p.hops = newNextHops(h, p.ifindex, ifi.HardwareAddr)
	p.slow = make([][]byte, 0, p.batch)
	p.method = LinkXDP
	return nil
}

func (x *xsk) close() {
	if x.link >= 0 {
		unix.Close(x.link) // detaches the program
		x.link = -1
	}
	if x.f != nil {
		x.f.Close()
	} else if x.fd >= 0 {
		unix.Close(x.fd)
	}
	for _, fd := range []*int{&x.prog, &x.xmap} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	x.mu.Lock()
	for _, r := range []*xskRing{&x.fill, &x.comp, &x.rx, &x.tx} {
		if r.mem != nil {
			unix.Munmap(r.mem)
			r.mem = nil
		}
	}
	if x.umem != nil {
		unix.Munmap(x.umem)
		x.umem = nil
	}
	x.mu.Unlock()
}

func (x *xsk) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	x.bufs, x.sizes, x.offset, x.n = bufs, sizes, offset, 0
	err := x.rc.Read(x.readFn)
	x.bufs, x.sizes = nil, nil
	if err != nil {
		return 0, err
	}
	if x.n < 0 {
		return 0, os.ErrClosed
	}
	return x.n, nil
}

// ready reports whether the RX ring holds a descriptor (or the socket is
// closed), without a system call; any goroutine may call it.
func (x *xsk) ready() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.umem == nil || atomic.LoadUint32(x.rx.prod) != atomic.LoadUint32(x.rx.cons)
}

func (x *xsk) doRead(uintptr) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.umem == nil {
		x.n = -1
		return true
	}
	cons := *x.rx.cons
	avail := atomic.LoadUint32(x.rx.prod) - cons
	n := min(int(avail), len(x.bufs))
	fprod := *x.fill.prod
	for i := range n {
		d := x.rx.xdesc(cons + uint32(i))
		pkt, ok := xskFrame(x.umem, d.Addr, d.Len)
		deliver(x.bufs, x.sizes, i, x.offset, pkt, !ok)
		// The frame goes straight back to the fill ring.
		*x.fill.addr(fprod + uint32(i)) = d.Addr &^ uint64(x.frame-1)
	}
	if n > 0 {
		atomic.StoreUint32(x.fill.prod, fprod+uint32(n))
		atomic.StoreUint32(x.rx.cons, cons+uint32(n))
	}
	x.n = n
	return n > 0
}

// xskFrame returns the IP packet in the received frame at addr, or
// ok=false if the descriptor points outside the UMEM or holds no more
// than an Ethernet header.
func xskFrame(umem []byte, addr uint64, n uint32) ([]byte, bool) {
	if addr > uint64(len(umem)) || uint64(n) > uint64(len(umem))-addr || n <= ethHdrLen {
		return nil, false
	}
	return umem[addr+ethHdrLen : addr+uint64(n)], true
}

// reclaim takes the completed TX frames back.
func (x *xsk) reclaim() {
	cons := *x.comp.cons
	prod := atomic.LoadUint32(x.comp.prod)
	for i := cons; i != prod; i++ {
		x.free = append(x.free, *x.comp.addr(i))
	}
	if prod != cons {
		atomic.StoreUint32(x.comp.cons, prod)
	}
}

// kick asks the kernel to send what the TX ring holds (kickTX).
func (x *xsk) kick() error { return kickTX(x.fd) }

// writeXDP sends the packets through the XSK TX ring, and those whose next
// hop is not known yet through the raw IP sockets after them. It counts a
// packet as sent once the kernel took its descriptor off the ring.
func (p *LinkPort) writeXDP(bufs [][]byte, offset int) (int, error) {
	x := p.xsk
	w := p.newFrameBatch(offset)
	x.mu.RLock()
	if x.umem == nil {
		x.mu.RUnlock()
		return 0, p.closedErr(os.ErrClosed)
	}
	for len(bufs) > 0 {
		x.reclaim()
		prod := *x.tx.prod
		start := prod
		for len(bufs) > 0 && len(x.free) > 0 && prod-atomic.LoadUint32(x.tx.cons) < uint32(xskRingSize) {
			b, mac, ok := w.route(bufs[0])
			if !ok {
				bufs = bufs[1:]
				continue
			}
			a := x.free[len(x.free)-1]
			x.free = x.free[:len(x.free)-1]
			d := x.tx.xdesc(prod)
			d.Addr, d.Len, d.Options = a, uint32(w.frame(x.umem[a:a+uint64(x.frame)], b, mac)), 0
			prod++
			bufs = bufs[1:]
		}
		if prod == start {
			if len(bufs) == 0 {
				break
			}
			// No free frame: wait for the kernel to complete some.
			if err := x.kick(); err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOBUFS) {
				w.last = err
				break
			}
			osYield()
			continue
		}
		atomic.StoreUint32(x.tx.prod, prod)
		// The kernel sends at most a small batch per call (copy mode):
		// kick until it took every descriptor, or stops making progress.
		stuck := 0
		for atomic.LoadUint32(x.tx.cons) != prod && stuck < 8 {
			before := atomic.LoadUint32(x.tx.cons)
			err := x.kick()
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOBUFS) {
				w.last = err
				break
			}
			if atomic.LoadUint32(x.tx.cons) == before {
				stuck++
				osYield()
			}
		}
		cons := atomic.LoadUint32(x.tx.cons)
		// Descriptors the kernel has not taken stay queued: the next kick
		// sends them. They are not counted here.
		n := int(prod - start)
		if d := prod - cons; d < uint32(n) {
			n -= int(d)
		} else {
			n = 0
		}
		if n < int(prod-start) && w.last == nil {
			w.last = errTXRingStuck
		}
		w.total += n
		x.sent.Add(uint64(n))
		if w.last != nil && len(bufs) > 0 && n == 0 {
			break
		}
	}
	x.mu.RUnlock()
	return w.end()
}

// rxQueues returns the number of receive queues the interface uses, from
// ethtool's channel counts (ETHTOOL_GCHANNELS, in the calling thread's
// network namespace: sysfs shows the namespace it was mounted in, and
// netlink's queue count is what the driver allocated, not what it uses). A
// driver without channel counts has one queue.
func rxQueues(ifname string) (int, error) {
	var ch struct {
		cmd                                 uint32
		maxRx, maxTx, maxOther, maxCombined uint32
		rx, tx, other, combined             uint32
	}
	ch.cmd = 0x3c // ETHTOOL_GCHANNELS
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&ch)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ch)
	switch {
	case e == unix.EOPNOTSUPP:
		return 1, nil
	case e != 0:
		return 0, e
	}
	return max(int(ch.rx)+int(ch.combined), 1), nil
}
