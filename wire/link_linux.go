package wire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/mmsg"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/tun"
)

// LinkConfig configures a LinkPort.
type LinkConfig struct {
	// Interface is the Linux network interface (e.g. eth0) whose kernel
	// addresses are the outer (tunnel) addresses of the SAs.
	Interface string
	// EncapPort is the RFC 3948 UDP encapsulation port to capture and
	// absorb (normally 4500); 0 disables UDP-encapsulated ESP on the link.
	EncapPort uint16
	// Batch is the number of packets per system call (default 64).
	Batch int
	// SocketBuffer sets SO_RCVBUF and SO_SNDBUF in bytes (default 4 MiB).
	SocketBuffer int
	// NetnsPath, if set, opens the port on an interface of that network
	// namespace (e.g. /run/netns/NAME).
	NetnsPath string
	// Method is how packets move between secnic and the interface:
	// LinkXDP (AF_XDP), LinkRing (PACKET_MMAP rings), LinkMmsg (recvmmsg
	// and raw IP sockets) or "" / LinkAuto: AF_XDP where it can be set
	// up, else the rings, else mmsg.
	Method string
}

// autoMethods are the methods LinkAuto tries, in order, before LinkMmsg.
// AF_XDP comes first: on the veth pairs secnic bench measures it took
// 8–13 % less CPU per GB than the rings (docs/performance.md).
var autoMethods = []string{LinkXDP, LinkRing}

// Link port methods (LinkConfig.Method, LinkPort.Method).
const (
	// LinkAuto picks the fastest method that works on the interface.
	LinkAuto = "auto"
	// LinkRing receives through a TPACKET_V2 PACKET_MMAP ring and sends
	// whole Ethernet frames through a TPACKET_V2 TX ring with
	// PACKET_QDISC_BYPASS, one sendto per batch; the next hop's MAC comes
	// from the kernel's neighbour table. Needs an Ethernet interface.
	LinkRing = "ring"
	// LinkXDP receives through an AF_XDP socket that an XDP program on
	// the interface feeds with the ESP, AH and UDP-encapsulated frames
	// (the kernel never sees them), and sends through its TX ring.
	LinkXDP = "xdp"
	// LinkMmsg receives with recvmmsg on an AF_PACKET socket and sends
	// with sendmmsg on raw IP sockets (one trip through the kernel's IP
	// output per packet).
	LinkMmsg = "mmsg"
)

// LinkPort puts protected packets on a real Linux link as ordinary IP
// packets, so that real IPsec peers on that link see standard ESP, AH and
// UDP-encapsulated ESP (RFC 3948).
//
// Design (see docs/datapath-notes.md for the consequences), as on the
// LinkMmsg method; LinkRing and LinkXDP replace the receive socket and the
// send path (see their constants) and keep the raw IP sockets for packets
// whose next hop the kernel has not resolved yet:
//
//   - Receive: one AF_PACKET SOCK_DGRAM socket bound to the interface. A
//     classic BPF filter passes only packets addressed to this host
//     (PACKET_HOST, so neither our own transmissions nor frames seen in
//     promiscuous mode) that are ESP, AH, UDP to EncapPort, or fragments
//     that may belong to those; everything else stays with the kernel alone.
//     The socket sees packets before the kernel's IP layer, as they were on
//     the wire, fragments included (the NIC reassembles them).
//   - Send: raw IP sockets (IPPROTO_RAW, so IP_HDRINCL / IPV6_HDRINCL)
//     bound to the interface with SO_BINDTODEVICE. The kernel routes each
//     packet out of that interface and resolves the next hop's MAC address
//     through its neighbour table (ARP/NDP); secnic writes complete IP
//     datagrams and fragments them itself to the link MTU.
//   - Absorbers: the kernel also receives the ESP, AH and UDP packets the
//     filter copied to secnic. Without ESP/AH support it would answer them
//     with ICMP "protocol unreachable" (IPv4) or "parameter problem"
//     (IPv6), and UDP to EncapPort with ICMP "port unreachable". LinkPort
//     therefore opens raw sockets for ESP and AH and UDP sockets on
//     EncapPort, bound to the interface, each with a filter that drops
//     everything: the kernel counts the packet as delivered and stays
//     silent. The UDP absorber uses SO_REUSEADDR and is bound to the
//     device, so an IKE daemon on the host can still bind the port itself.
type LinkPort struct {
	ifname  string
	ifindex int
	mtu     int
	batch   int

	method string
	rxr    *rxRing   // LinkRing
	txr    *txRing   // LinkRing
	xsk    *xsk      // LinkXDP
	hops   *nextHops // LinkRing, LinkXDP
	slow   [][]byte  // LinkRing: packets of one Write that go through the kernel

	rx      *os.File
	rxio    *mmsg.Conn
	tx4     *os.File
	tx4io   *mmsg.Conn
	tx6     *os.File
	tx6io   *mmsg.Conn
	absorbs []int
	closed  atomic.Bool
}

// OpenLink opens a LinkPort on cfg.Interface. It needs CAP_NET_RAW.
func OpenLink(cfg LinkConfig) (p *LinkPort, err error) {
	err = netns.Do(cfg.NetnsPath, func() error {
		p, err = openLink(cfg)
		return err
	})
	return p, err
}

func openLink(cfg LinkConfig) (_ *LinkPort, err error) {
	if cfg.Interface == "" {
		return nil, errors.New("wire: the link wire port needs an interface name, e.g. interface: eth0")
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("wire: link wire port: %w (does interface %q exist in this network namespace?)", err, cfg.Interface)
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.SocketBuffer <= 0 {
		cfg.SocketBuffer = 4 << 20
	}
	p := &LinkPort{ifname: ifi.Name, ifindex: ifi.Index, mtu: ifi.MTU, batch: cfg.Batch}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	switch cfg.Method {
	case "", LinkAuto:
		for _, m := range autoMethods {
			open := p.openRings
			if m == LinkXDP {
				open = p.openXDP
			}
			if open(cfg, ifi) == nil {
				break
			}
			p.closeRings()
		}
		if p.method == "" {
			if err := p.openRX(cfg); err != nil {
				return nil, err
			}
		}
	case LinkRing:
		if err := p.openRings(cfg, ifi); err != nil {
			return nil, fmt.Errorf("wire: link %s: packet rings: %w (use method %q or %q on this interface)", p.ifname, err, LinkAuto, LinkMmsg)
		}
	case LinkXDP:
		if err := p.openXDP(cfg, ifi); err != nil {
			return nil, fmt.Errorf("wire: link %s: AF_XDP: %w (use method %q or %q on this interface)", p.ifname, err, LinkAuto, LinkRing)
		}
	case LinkMmsg:
		if err := p.openRX(cfg); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("wire: link %s: method %q is not one of %q, %q, %q", p.ifname, cfg.Method, LinkAuto, LinkRing, LinkMmsg)
	}
	if p.method == "" {
		p.method = LinkMmsg
	}
	// The raw IP sockets send on every method: on the rings, the packets
	// whose next hop the kernel has not resolved yet go through them.
	if err := p.openTX(cfg); err != nil {
		return nil, err
	}
	if err := p.openAbsorbers(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func permHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (the link wire port needs CAP_NET_RAW: run as root or grant the capability)", err)
	}
	return err
}

// filteredPacketSocket opens the unbound AF_PACKET socket that the mmsg
// method and the receive ring read: protocol 0 at creation, so no packet
// is queued before the filter for ESP, AH and UDP to encapPort is in
// place, and the host's own transmissions ignored.
func filteredPacketSocket(encapPort uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", permHint(err))
	}
	prog, err := linkFilter(encapPort)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := attachFilter(fd, prog); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("attach BPF filter: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	return fd, nil
}

func (p *LinkPort) openRX(cfg LinkConfig) error {
	fd, err := filteredPacketSocket(cfg.EncapPort)
	if err != nil {
		return fmt.Errorf("wire: link %s: %w", p.ifname, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.SocketBuffer)
	sll := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}
	if err := unix.Bind(fd, sll); err != nil {
		unix.Close(fd)
		return fmt.Errorf("wire: link %s: bind AF_PACKET socket: %w", p.ifname, err)
	}
	f := os.NewFile(uintptr(fd), "secnic-link-rx-"+p.ifname)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	p.rx, p.rxio = f, mmsg.New(rc, p.batch)
	return nil
}

func (p *LinkPort) openTX(cfg LinkConfig) error {
	open := func(family int) (*os.File, *mmsg.Conn, error) {
		fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return nil, nil, fmt.Errorf("wire: link %s: raw IP socket: %w", p.ifname, permHint(err))
		}
		if err := unix.BindToDevice(fd, p.ifname); err != nil {
			unix.Close(fd)
			return nil, nil, fmt.Errorf("wire: link %s: SO_BINDTODEVICE: %w", p.ifname, err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, cfg.SocketBuffer)
		if family == unix.AF_INET6 {
			// Let the packets keep the size secnic gave them.
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_PROBE)
		} else {
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE)
		}
		f := os.NewFile(uintptr(fd), "secnic-link-tx-"+p.ifname)
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		m := mmsg.New(rc, p.batch)
		if family == unix.AF_INET {
			m.WithNames(unix.SizeofSockaddrInet4)
		} else {
			m.WithNames(unix.SizeofSockaddrInet6)
		}
		return f, m, nil
	}
	var err error
	if p.tx4, p.tx4io, err = open(unix.AF_INET); err != nil {
		return err
	}
	if p.tx6, p.tx6io, err = open(unix.AF_INET6); err != nil {
		// A kernel without IPv6 still serves IPv4.
		if !errors.Is(err, unix.EAFNOSUPPORT) {
			return err
		}
	}
	return nil
}

func (p *LinkPort) openAbsorbers(cfg LinkConfig) error {
	drop := []bpf.RawInstruction{{Op: 0x06, K: 0}} // ret #0
	add := func(family, typ, proto int, port uint16) error {
		fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			if family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				return nil
			}
			return permHint(err)
		}
		p.absorbs = append(p.absorbs, fd)
		if err := attachFilter(fd, drop); err != nil {
			return err
		}
		if err := unix.BindToDevice(fd, p.ifname); err != nil {
			return err
		}
		if typ == unix.SOCK_DGRAM {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if family == unix.AF_INET6 {
				_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
				return unix.Bind(fd, &unix.SockaddrInet6{Port: int(port)})
			}
			return unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)})
		}
		return nil
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []int{packet.ProtoESP, packet.ProtoAH} {
			if err := add(fam, unix.SOCK_RAW, proto, 0); err != nil {
				return fmt.Errorf("wire: link %s: absorber raw socket for protocol %d: %w", p.ifname, proto, err)
			}
		}
		if cfg.EncapPort != 0 {
			if err := add(fam, unix.SOCK_DGRAM, unix.IPPROTO_UDP, cfg.EncapPort); err != nil {
				return fmt.Errorf("wire: link %s: bind UDP port %d to absorb NAT-T packets: %w (another program without SO_REUSEADDR holds it?)", p.ifname, cfg.EncapPort, err)
			}
		}
	}
	return nil
}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	f := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &f)
}

func (p *LinkPort) closedErr(err error) error {
	if p.closed.Load() || errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("wire: link port %s is closed: %w", p.ifname, os.ErrClosed)
	}
	return fmt.Errorf("wire: link port %s: %w", p.ifname, err)
}

// Read receives up to len(bufs) IP datagrams that passed the filter.
func (p *LinkPort) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr(nil)
	}
	var n int
	var err error
	switch {
	case p.xsk != nil:
		n, err = p.xsk.read(bufs, sizes, offset)
	case p.rxr != nil:
		n, err = p.rxr.read(bufs, sizes, offset)
	default:
		n, err = p.rxio.Recv(bufs, sizes, offset)
	}
	if err != nil {
		return 0, p.closedErr(err)
	}
	return n, nil
}

// Ready implements tun.Poller on the ring and xdp methods: whether the
// receive ring holds a packet, read from the ring's memory without a
// system call (for the NIC's busy-polling). The mmsg method reports false,
// so the NIC blocks in Read as without busy-polling.
func (p *LinkPort) Ready() bool {
	switch {
	case p.closed.Load():
		return true
	case p.xsk != nil:
		return p.xsk.ready()
	}
	return p.rxr != nil && p.rxr.ready()
}

// Write sends IP datagrams out of the interface. On the rings, each goes
// into a TX frame behind an Ethernet header and one sendto sends the batch;
// a packet whose next hop is not resolved yet, and every packet on the
// mmsg method, goes through the raw IP socket of its family, consecutive
// packets of one family sharing a sendmmsg call.
func (p *LinkPort) Write(bufs [][]byte, offset int) (int, error) {
	if p.closed.Load() {
		return 0, p.closedErr(nil)
	}
	if p.txr != nil {
		return p.writeRing(bufs, offset)
	}
	if p.xsk != nil {
		return p.writeXDP(bufs, offset)
	}
	return p.writeRaw(bufs, offset)
}

// writeRaw sends through the raw IP sockets.
func (p *LinkPort) writeRaw(bufs [][]byte, offset int) (int, error) {
	total := 0
	var last error
	for len(bufs) > 0 {
		v := packet.Version(bufs[0][offset:])
		io := p.tx4io
		if v == 6 {
			io = p.tx6io
		}
		cnt := 0
		for cnt < len(bufs) && cnt < p.batch {
			b := bufs[cnt][offset:]
			if packet.Version(b) != v {
				break
			}
			cnt++
		}
		if io == nil || (v != 4 && v != 6) || !p.prepare(io, v, bufs[:cnt], offset) {
			last = fmt.Errorf("cannot send %d packets of IP version %d", cnt, v)
			bufs = bufs[cnt:]
			continue
		}
		n, err := io.Send(cnt)
		total += n
		if err != nil {
			if p.closed.Load() {
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

// prepare fills the iovecs and destination addresses of one run of packets.
func (p *LinkPort) prepare(io *mmsg.Conn, v int, bufs [][]byte, offset int) bool {
	for i, full := range bufs {
		b := full[offset:]
		io.Prep(i, b)
		if v == 4 {
			if len(b) < packet.IPv4MinLen {
				return false
			}
			sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(io.Name(i)))
			sa.Family = unix.AF_INET
			copy(sa.Addr[:], b[16:20])
		} else {
			if len(b) < packet.IPv6Len {
				return false
			}
			sa := io.Name(i)
			sa.Family = unix.AF_INET6
			copy(sa.Addr[:], b[24:40])
			sa.Scope_id = 0
			if b[24] == 0xfe && b[25]&0xc0 == 0x80 {
				sa.Scope_id = uint32(p.ifindex)
			}
		}
	}
	return true
}

// BatchSize returns the number of packets per system call.
func (p *LinkPort) BatchSize() int { return p.batch }

// MTU returns the interface MTU when the port was opened.
func (p *LinkPort) MTU() int { return p.mtu }

// Name returns "link:IFNAME".
func (p *LinkPort) Name() string { return "link:" + p.ifname }

// Method returns how the port moves packets: LinkXDP, LinkRing or LinkMmsg.
func (p *LinkPort) Method() string { return p.method }

// Close closes every socket of the port.
func (p *LinkPort) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.closeRings()
	for _, f := range []*os.File{p.rx, p.tx4, p.tx6} {
		if f != nil {
			f.Close()
		}
	}
	for _, fd := range p.absorbs {
		unix.Close(fd)
	}
	return nil
}

var _ tun.Port = (*LinkPort)(nil)

// linkFilter builds the receive filter of the link port. The packet
// socket is SOCK_DGRAM, so offsets are relative to the IP header.
func linkFilter(encapPort uint16) ([]bpf.RawInstruction, error) {
	var a asm
	a.ins(bpf.LoadExtension{Num: bpf.ExtType})
	a.jne(0 /* PACKET_HOST */, "drop")
	a.ins(bpf.LoadExtension{Num: bpf.ExtProto})
	a.jeq(unix.ETH_P_IP, "v4")
	a.jeq(unix.ETH_P_IPV6, "v6")
	a.ret(false)
	a.label("v4")
	filterV4(&a, encapPort)
	a.label("v6")
	filterV6(&a, encapPort)
	a.label("drop")
	a.ret(false)
	return a.assemble()
}

// filterV4 accepts IPv4 ESP, AH, UDP to encapPort and non-first UDP
// fragments (their ports are in the first fragment).
func filterV4(a *asm, encapPort uint16) {
	a.ins(bpf.LoadAbsolute{Off: 9, Size: 1})
	a.jeq(packet.ProtoESP, "accept4")
	a.jeq(packet.ProtoAH, "accept4")
	if encapPort != 0 {
		a.jne(packet.ProtoUDP, "drop4")
		a.ins(bpf.LoadAbsolute{Off: 6, Size: 2})
		a.jset(0x1fff, "accept4")
		a.ins(bpf.LoadMemShift{Off: 0})
		a.ins(bpf.LoadIndirect{Off: 2, Size: 2})
		a.jeq(uint32(encapPort), "accept4")
	}
	a.label("drop4")
	a.ret(false)
	a.label("accept4")
	a.ret(true)
}

// filterV6 accepts IPv6 ESP, AH, UDP to encapPort directly after the fixed
// header, and fragments carrying ESP, AH or UDP.
func filterV6(a *asm, encapPort uint16) {
	a.ins(bpf.LoadAbsolute{Off: 6, Size: 1})
	a.jeq(packet.ProtoESP, "accept6")
	a.jeq(packet.ProtoAH, "accept6")
	a.jeq(packet.ProtoFragment, "frag6")
	if encapPort != 0 {
		a.jne(packet.ProtoUDP, "drop6")
		a.ins(bpf.LoadAbsolute{Off: packet.IPv6Len + 2, Size: 2})
		a.jeq(uint32(encapPort), "accept6")
	}
	a.jmp("drop6")
	a.label("frag6")
	a.ins(bpf.LoadAbsolute{Off: packet.IPv6Len, Size: 1})
	a.jeq(packet.ProtoESP, "accept6")
	a.jeq(packet.ProtoAH, "accept6")
	if encapPort != 0 {
		a.jeq(packet.ProtoUDP, "accept6")
	}
	a.label("drop6")
	a.ret(false)
	a.label("accept6")
	a.ret(true)
}

// asm is a tiny classic-BPF assembler with labels (x/net/bpf wants skip counts).
type asm struct {
	prog   []asmIns
	labels map[string]int
}

type asmIns struct {
	ins    bpf.Instruction
	cond   bpf.JumpTest
	val    uint32
	target string // conditional: jump here if the test is true; Jump: always
	uncond bool
}

func (a *asm) ins(i bpf.Instruction) { a.prog = append(a.prog, asmIns{ins: i}) }
func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}
func (a *asm) jeq(v uint32, to string) {
	a.prog = append(a.prog, asmIns{cond: bpf.JumpEqual, val: v, target: to})
}
func (a *asm) jne(v uint32, to string) {
	a.prog = append(a.prog, asmIns{cond: bpf.JumpNotEqual, val: v, target: to})
}
func (a *asm) jset(v uint32, to string) {
	a.prog = append(a.prog, asmIns{cond: bpf.JumpBitsSet, val: v, target: to})
}
func (a *asm) jmp(to string) { a.prog = append(a.prog, asmIns{uncond: true, target: to}) }
func (a *asm) ret(accept bool) {
	var k uint32
	if accept {
		k = 0x40000
	}
	a.ins(bpf.RetConstant{Val: k})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	out := make([]bpf.Instruction, len(a.prog))
	for i, in := range a.prog {
		if in.target == "" {
			out[i] = in.ins
			continue
		}
		t, ok := a.labels[in.target]
		if !ok || t <= i {
			return nil, fmt.Errorf("wire: bpf: bad jump target %q", in.target)
		}
		skip := t - i - 1
		if in.uncond {
			out[i] = bpf.Jump{Skip: uint32(skip)}
			continue
		}
		if skip > 255 {
			return nil, fmt.Errorf("wire: bpf: jump to %q too far", in.target)
		}
		out[i] = bpf.JumpIf{Cond: in.cond, Val: in.val, SkipTrue: uint8(skip)}
	}
	return bpf.Assemble(out)
}
