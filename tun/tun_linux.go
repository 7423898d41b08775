//go:build linux

package tun

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/secnic/secnic/internal/netns"
)

// Defaults used by Open for zero Config fields.
const (
	DefaultName = "secnic%d"
	DefaultMTU  = 1500
	// DefaultTxQueueLen is the device's transmit queue in packets (Linux
	// gives a TUN device 500). The queue holds what the host sends while
	// the NIC's reader waits for a CPU; on the 2-vCPU test machine 5000
	// raised the UDP rate the bench finds without loss by 15–60 % and
	// left TCP and latency unchanged (docs/performance.md).
	DefaultTxQueueLen = 5000
	// MaxTxQueueLen bounds Config.TxQueueLen.
	MaxTxQueueLen = 1 << 20
)

const cloneDevice = "/dev/net/tun"

// Route is a route installed through the TUN device.
type Route struct {
	// Dst is the destination prefix; host bits are ignored.
	Dst netip.Prefix
	// Via is an optional next hop of the same family as Dst. A TUN device
	// has no link layer, so the next hop is installed "onlink" and only
	// shows in the routing table.
	Via netip.Addr
}

// Config describes a TUN device for Open.
type Config struct {
	// Name is the interface name, at most 15 bytes. A "%d" in it is replaced
	// by the kernel with the lowest free number. "" means DefaultName.
	Name string
	// MTU of the device; 0 means DefaultMTU. It must be in [68, 65535], and at
	// least 1280 if any address or route is IPv6.
	MTU int
	// Addrs are assigned to the device. IPv6 addresses are added with
	// IFA_F_NODAD so that they are usable at once, without duplicate address
	// detection.
	Addrs []netip.Prefix
	// Routes are added after the device is up.
	Routes []Route
	// DisableOffloads opens the device without IFF_VNET_HDR: every Read and
	// Write moves one packet, no headroom is needed, and the kernel segments
	// and checksums everything itself. By default offloads are on: the kernel
	// may hand over TCP/UDP super-packets of up to 64 KiB, which Read splits
	// into MTU-sized packets, and Write coalesces packets of one flow.
	DisableOffloads bool
	// TxQueueLen is the device's transmit queue (txqueuelen) in packets;
	// 0 means DefaultTxQueueLen, at most MaxTxQueueLen.
	TxQueueLen int
	// NetnsPath is the network namespace to create the device in, e.g.
	// "/run/netns/NAME" for a namespace made with `ip netns add NAME`. "" means
	// the namespace of the calling thread.
	NetnsPath string
	// Logger receives the device's operational logs (MTU changes); nil
	// means slog.Default().
	Logger *slog.Logger
}

// TUN is a Linux TUN device configured through netlink. It implements Port on
// top of golang.zx2c4.com/wireguard/tun.
//
// With offloads on (the default), BatchSize is 128, Read needs at least
// BatchSize buffers, and Write needs MinOffset() = VirtioNetHdrLen bytes of
// headroom before every packet. With Config.DisableOffloads, BatchSize is 1
// and MinOffset is 0.
//
// Read, Write and Close may be called from different goroutines. Close removes
// the device.
type TUN struct {
	dev     wgtun.Device
	file    *os.File
	name    string
	index   int
	vnetHdr bool
	mtu     atomic.Int64

	wmu     sync.Mutex // guards scratch and heads
	scratch [][]byte
	heads   headSlots // room for coalesced TCP and UDP runs (heads_linux.go)

	closing atomic.Bool // set when Close starts
	fdOnce  sync.Once   // finds fd on the first Ready
	fd      int32       // the descriptor, for Ready's poll(2); -1 if unknown

	nlMu     sync.Mutex // guards nl and closed
	nl       *netlink.Handle
	closed   bool
	once     sync.Once
	closeErr error
	events   chan struct{} // closed when the event drain goroutine ends
	log      *slog.Logger
}

var (
	_ Port   = (*TUN)(nil)
	_ Poller = (*TUN)(nil)
)

// Open creates a TUN device, sets its MTU, addresses and routes, and brings it
// up. It needs CAP_NET_ADMIN (in the target namespace) and /dev/net/tun.
func Open(cfg Config) (*TUN, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	var t *TUN
	err := netns.Do(cfg.NetnsPath, func() error {
		var err error
		t, err = create(&cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (cfg *Config) normalize() error {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if len(cfg.Name) >= unix.IFNAMSIZ || strings.ContainsAny(cfg.Name, "/ \t\n:") {
		return fmt.Errorf("tun: interface name %q is invalid: use at most %d bytes without '/', ':' or spaces", cfg.Name, unix.IFNAMSIZ-1)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > 65535 {
		return fmt.Errorf("tun: MTU %d is out of range: use a value from 68 to 65535", cfg.MTU)
	}
	if cfg.TxQueueLen == 0 {
		cfg.TxQueueLen = DefaultTxQueueLen
	}
	if cfg.TxQueueLen < 1 || cfg.TxQueueLen > MaxTxQueueLen {
		return fmt.Errorf("tun: TxQueueLen %d is out of range: use 1 to %d packets, or 0 for the default", cfg.TxQueueLen, MaxTxQueueLen)
	}
	// Work on copies: the caller's slices must not change.
	cfg.Addrs = slices.Clone(cfg.Addrs)
	cfg.Routes = slices.Clone(cfg.Routes)
	v6 := false
	for i, p := range cfg.Addrs {
		if !p.IsValid() {
			return fmt.Errorf("tun: Addrs[%d] is not a valid prefix: give an address with a prefix length, like 10.0.0.1/24", i)
		}
		cfg.Addrs[i] = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p.Addr()))
		v6 = v6 || cfg.Addrs[i].Addr().Is6()
	}
	for i, r := range cfg.Routes {
		if !r.Dst.IsValid() {
			return fmt.Errorf("tun: Routes[%d].Dst is not a valid prefix: give a prefix like 10.1.0.0/16", i)
		}
		dst := netip.PrefixFrom(r.Dst.Addr().Unmap(), r.Dst.Bits()-unmapBits(r.Dst.Addr())).Masked()
		via := r.Via.Unmap()
		if via.IsValid() && via.Is4() != dst.Addr().Is4() {
			return fmt.Errorf("tun: Routes[%d]: next hop %s and destination %s are of different IP families", i, r.Via, r.Dst)
		}
		cfg.Routes[i] = Route{Dst: dst, Via: via}
		v6 = v6 || dst.Addr().Is6()
	}
	if v6 && cfg.MTU < 1280 {
		return fmt.Errorf("tun: MTU %d is below the IPv6 minimum of 1280 but IPv6 addresses or routes are configured: raise the MTU", cfg.MTU)
	}
	return nil
}

// unmapBits is the number of prefix bits an IPv4-mapped IPv6 address loses
// when unmapped.
func unmapBits(a netip.Addr) int {
	if a.Is4In6() {
		return 96
	}
	return 0
}

// create opens and configures the device in the calling thread's namespace.
func create(cfg *Config) (t *TUN, err error) {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("tun: open netlink socket: %w", err)
	}
	defer func() {
		if err != nil {
			nl.Close()
		}
	}()
	if !strings.Contains(cfg.Name, "%") {
		switch _, lerr := nl.LinkByName(cfg.Name); {
		case lerr == nil:
			return nil, fmt.Errorf("tun: interface %s already exists in the target namespace: choose another Config.Name or delete it", cfg.Name)
		case !errors.As(lerr, new(netlink.LinkNotFoundError)):
			return nil, fmt.Errorf("tun: look up interface %s: %w", cfg.Name, lerr)
		}
	}

	file, err := openTUNFile(cfg.Name, !cfg.DisableOffloads)
	if err != nil {
		return nil, err
	}
	dev, err := wgtun.CreateTUNFromFile(file, cfg.MTU)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("tun: set up TUN device %s: %w", cfg.Name, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	t = &TUN{dev: dev, file: file, nl: nl, vnetHdr: !cfg.DisableOffloads, events: make(chan struct{}), log: log}
	t.mtu.Store(int64(cfg.MTU))
	if t.vnetHdr {
		t.scratch = make([][]byte, dev.BatchSize())
	}
	undo := t // the named result is nil by the time a failing return runs this
	defer func() {
		if err != nil {
			undo.dev.Close()
			for range undo.dev.Events() {
				// Let the device's listeners finish.
			}
			if undo.index > 0 {
				undo.deleteLink()
			}
		}
	}()
	if t.name, err = dev.Name(); err != nil {
		return nil, fmt.Errorf("tun: read TUN device name: %w", err)
	}
	link, err := nl.LinkByName(t.name)
	if err != nil {
		return nil, fmt.Errorf("tun: look up new device %s: %w", t.name, err)
	}
	t.index = link.Attrs().Index
	if err = nl.LinkSetMTU(link, cfg.MTU); err != nil {
		return nil, fmt.Errorf("tun: set MTU %d on %s: %w", cfg.MTU, t.name, err)
	}
	if err = nl.LinkSetTxQLen(link, cfg.TxQueueLen); err != nil {
		return nil, fmt.Errorf("tun: set txqueuelen %d on %s: %w", cfg.TxQueueLen, t.name, err)
	}
	for _, p := range cfg.Addrs {
		a := &netlink.Addr{IPNet: prefixToIPNet(p, false)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err = nl.AddrAdd(link, a); err != nil {
			hint := ""
			if p.Addr().Is6() {
				hint = " (is IPv6 disabled? check sysctl net.ipv6.conf.default.disable_ipv6)"
			}
			return nil, fmt.Errorf("tun: add address %s to %s: %w%s", p, t.name, err, hint)
		}
	}
	if err = nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("tun: bring %s up: %w", t.name, err)
	}
	for _, r := range cfg.Routes {
		nr := &netlink.Route{LinkIndex: t.index, Dst: prefixToIPNet(r.Dst, true)}
		if r.Via.IsValid() {
			nr.Gw = net.IP(r.Via.AsSlice())
			nr.Flags = int(netlink.FLAG_ONLINK)
		} else if r.Dst.Addr().Is4() {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err = nl.RouteAdd(nr); err != nil {
			return nil, fmt.Errorf("tun: add route %s to %s: %w (does a route to it already exist?)", routeString(r), t.name, err)
		}
	}
	if err = t.waitAddrsLocal(cfg.Addrs); err != nil {
		return nil, err
	}
	go t.drainEvents()
	return t, nil
}

// addrReadyTimeout bounds how long Open waits for the kernel to finish
// installing the local routes of new addresses.
const addrReadyTimeout = 5 * time.Second

// waitAddrsLocal waits until the kernel routes each address to the local host.
// IPv4 does this when the address is added, but IPv6 installs the local route
// from a work queue after the link comes up (even with IFA_F_NODAD), and a
// packet arriving before that is dropped as not for this host.
func (t *TUN) waitAddrsLocal(addrs []netip.Prefix) error {
	deadline := time.Now().Add(addrReadyTimeout)
	sleep := 100 * time.Microsecond
	for _, p := range addrs {
		for {
			routes, err := t.nl.RouteGet(net.IP(p.Addr().AsSlice()))
			if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("tun: address %s on %s was not routed to the local host within %v (last lookup: %v, err %v); check `ip route get %s` in the namespace", p.Addr(), t.name, addrReadyTimeout, routes, err, p.Addr())
			}
			time.Sleep(sleep)
			sleep = min(2*sleep, 20*time.Millisecond)
		}
	}
	return nil
}

// openTUNFile creates the TUN interface and returns its descriptor in
// non-blocking mode, ready for the Go poller.
func openTUNFile(name string, vnetHdr bool) (*os.File, error) {
	fd, err := unix.Open(cloneDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tun: open %s: %w (load the tun module and run with CAP_NET_ADMIN)", cloneDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: interface name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: create TUN interface %s: %w (needs CAP_NET_ADMIN; EBUSY or EINVAL means the name is taken by another device)", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tun: make TUN descriptor non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), cloneDevice), nil
}

func prefixToIPNet(p netip.Prefix, masked bool) *net.IPNet {
	if masked {
		p = p.Masked()
	}
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func routeString(r Route) string {
	if r.Via.IsValid() {
		return r.Dst.String() + " via " + r.Via.String()
	}
	return r.Dst.String()
}

// drainEvents consumes the wireguard device's event channel, which must be
// read for its listeners to make progress and exit, and tracks MTU changes.
func (t *TUN) drainEvents() {
	defer close(t.events)
	for ev := range t.dev.Events() {
		if ev&wgtun.EventMTUUpdate != 0 {
			t.refreshMTU()
		}
	}
}

func (t *TUN) refreshMTU() {
	t.nlMu.Lock()
	defer t.nlMu.Unlock()
	if t.closed {
		return
	}
	link, err := t.nl.LinkByIndex(t.index)
	if err != nil {
		t.log.Debug("cannot refresh the TUN device's MTU", "dev", t.name, "err", err)
		return
	}
	if mtu := link.Attrs().MTU; mtu > 0 && int64(mtu) != t.mtu.Load() {
		t.log.Info("TUN device MTU changed", "dev", t.name, "mtu", mtu, "was", t.mtu.Load())
		t.mtu.Store(int64(mtu))
	}
}

// Read reads at least one packet into bufs[i][offset:], sets sizes[i] and
// returns the count. It blocks until a packet arrives, the read deadline
// passes, or the device is closed. len(bufs) must be at least BatchSize()
// (one super-packet from the kernel may become that many packets), every
// buffer must hold MTU() bytes after offset, and len(sizes) >= len(bufs).
// Packets are complete: checksums the kernel left for offload are filled in.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if err := checkReadArgs(bufs, sizes, offset, t.dev.BatchSize(), t.MTU()); err != nil {
		return 0, err
	}
	n, err := t.dev.Read(bufs, sizes, offset)
	if err != nil {
		return n, t.ioError("read", err)
	}
	return n, nil
}

// ioError wraps an I/O error. Once Close has started, any failure (including
// the device's netlink listener reporting its shutdown through Read) is
// reported as os.ErrClosed.
func (t *TUN) ioError(op string, err error) error {
	if t.closing.Load() && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("tun: %s %s: %w (%v)", op, t.name, os.ErrClosed, err)
	}
	return fmt.Errorf("tun: %s %s: %w", op, t.name, err)
}

// Write sends bufs[i][offset:] for each i and returns the number of packets
// written. offset must be at least MinOffset(); packets must not be empty.
//
// With offloads on, Write uses the bytes in front of each packet for the
// virtio-net header and may coalesce packets of one TCP or UDP flow into the
// first one's buffer, extending it into its spare capacity (up to cap). So
// while Write runs it may modify any byte of bufs[i][:cap(bufs[i])]; give each
// buffer a capacity that ends where its own memory ends (use a three-index
// slice for buffers carved from a shared array). Write does not change the
// slice headers in bufs.
//
// Write tries every packet, as Port says. Without offloads each packet is one
// write(2), so n is exact. With offloads packets go to the device in groups of
// BatchSize() (coalesced where they can be); when a write of a group fails, n
// counts none of that group's packets, though some may have been delivered,
// and Write goes on with the next group.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if err := checkWriteArgs(bufs, offset, t.MinOffset()); err != nil {
		return 0, err
	}
	for i, b := range bufs {
		if len(b) == offset {
			return 0, fmt.Errorf("%w: bufs[%d] holds an empty packet (offset %d equals its length)", ErrOffset, i, offset)
		}
	}
	n := 0
	var first error
	if !t.vnetHdr {
		for i := range bufs {
			if _, err := t.dev.Write(bufs[i:i+1], offset); err != nil {
				err = t.ioError("write", err)
				if errors.Is(err, os.ErrClosed) {
					return n, err
				}
				if first == nil {
					first = err
				}
				continue
			}
			n++
		}
		return n, first
	}
	// The wireguard writer may swap and extend the slice headers it is given
	// while coalescing; hand it a copy so the caller's bufs stay as they were.
	t.wmu.Lock()
	defer t.wmu.Unlock()
	for done := 0; done < len(bufs); {
		s := t.scratch[:copy(t.scratch, bufs[done:])]
		t.heads.reset()
		for i, b := range s {
			s[i] = t.heads.place(b, offset)
		}
		_, err := t.dev.Write(s, offset)
		clear(s)
		done += len(s)
		if err != nil {
			err = t.ioError("write", err)
			if errors.Is(err, os.ErrClosed) {
				return n, err
			}
			if first == nil {
				first = err
			}
			continue
		}
		n += len(s)
	}
	return n, first
}

// Ready reports, without blocking or consuming anything, whether a Read
// would return at once (tun.Poller): one poll(2) of the descriptor with no
// timeout. It is safe to call while another goroutine is blocked in Read.
//
// The descriptor is looked up on the first call only (through
// SyscallConn), so a device that is never polled is used exactly as
// without busy-polling.
func (t *TUN) Ready() bool {
	t.fdOnce.Do(func() {
		t.fd = -1
		if rc, err := t.file.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { t.fd = int32(fd) })
		}
	})
	if t.fd < 0 || t.closing.Load() {
		return t.closing.Load()
	}
	fds := [1]unix.PollFd{{Fd: t.fd, Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0
}

// SetReadDeadline sets a deadline for pending and future Read calls; a Read
// past it fails with an error matching os.ErrDeadlineExceeded. The zero time
// removes the deadline.
func (t *TUN) SetReadDeadline(d time.Time) error {
	return t.file.SetReadDeadline(d)
}

// BatchSize returns 128 with offloads on and 1 without.
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

// MTU returns the device MTU, following changes made after Open.
func (t *TUN) MTU() int { return int(t.mtu.Load()) }

// Name returns the interface name.
func (t *TUN) Name() string { return t.name }

// Index returns the interface index in the device's namespace.
func (t *TUN) Index() int { return t.index }

// Offloads reports whether the device uses the virtio-net header with TSO,
// USO and checksum offload.
func (t *TUN) Offloads() bool { return t.vnetHdr }

// MinOffset returns the headroom Write needs in front of each packet:
// VirtioNetHdrLen with offloads on, 0 without.
func (t *TUN) MinOffset() int {
	if t.vnetHdr {
		return VirtioNetHdrLen
	}
	return 0
}

// Close closes the device, which makes pending Read and Write calls return an
// error matching os.ErrClosed, and removes the interface with its addresses
// and routes. Closing again returns the first result.
func (t *TUN) Close() error {
	t.once.Do(func() {
		t.closing.Store(true)
		err := t.dev.Close()
		if err != nil {
			err = fmt.Errorf("tun: close %s: %w", t.name, err)
		}
		<-t.events // the device's listeners have stopped
		// The kernel deletes a non-persistent TUN interface when its last
		// descriptor is closed; delete it explicitly should anything still
		// hold it.
		t.nlMu.Lock()
		t.closed = true
		err = errors.Join(err, t.deleteLink())
		t.nl.Close()
		t.nlMu.Unlock()
		t.closeErr = err
	})
	return t.closeErr
}

// deleteLink removes the interface if it still exists.
func (t *TUN) deleteLink() error {
	link, err := t.nl.LinkByIndex(t.index)
	if err != nil || link.Attrs().Name != t.name || link.Type() != "tuntap" {
		return nil // already gone
	}
	if err := t.nl.LinkDel(link); err != nil && !errors.As(err, new(netlink.LinkNotFoundError)) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("tun: delete interface %s: %w", t.name, err)
	}
	return nil
}
