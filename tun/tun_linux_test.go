//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/testenv"
)

// newNetns creates a named network namespace with a random name, brings its
// loopback up, and deletes it when the test ends. It returns the path of the
// namespace.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("secnic-tun-%08x", rand.Uint32())
	path, err := netlab.NewNamespace(name)
	if err != nil {
		testenv.Skipf(t, "cannot create network namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netlab.DeleteNamespace(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	return path
}

// nlHandle returns a netlink handle bound to the namespace at path.
func nlHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	nl, err := netns.Handle(path)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", path, err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// listenUDP opens a UDP socket bound to addr inside the namespace at path.
func listenUDP(t *testing.T, path string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := netns.Do(path, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen UDP on %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sum16 adds b to a one's-complement running sum.
func sum16(sum uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func pseudoSum(src, dst netip.Addr, proto byte, length int) uint32 {
	s := sum16(0, src.AsSlice())
	s = sum16(s, dst.AsSlice())
	return s + uint32(proto) + uint32(length)
}

// buildUDP writes an IPv4 or IPv6 UDP packet with valid checksums into b and
// returns its length.
func buildUDP(b []byte, src, dst netip.AddrPort, id uint16, payload []byte) int {
	udpLen := 8 + len(payload)
	var ipLen int
	if src.Addr().Is4() {
		ipLen = 20
		h := b[:20]
		clear(h)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(ipLen+udpLen))
		binary.BigEndian.PutUint16(h[4:], id)
		h[6] = 0x40 // don't fragment
		h[8] = 64
		h[9] = unix.IPPROTO_UDP
		copy(h[12:16], src.Addr().AsSlice())
		copy(h[16:20], dst.Addr().AsSlice())
		binary.BigEndian.PutUint16(h[10:], ^fold(sum16(0, h)))
	} else {
		ipLen = 40
		h := b[:40]
		clear(h)
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(udpLen))
		h[6] = unix.IPPROTO_UDP
		h[7] = 64
		copy(h[8:24], src.Addr().AsSlice())
		copy(h[24:40], dst.Addr().AsSlice())
	}
	u := b[ipLen : ipLen+udpLen]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(udpLen))
	u[6], u[7] = 0, 0
	copy(u[8:], payload)
	c := ^fold(sum16(pseudoSum(src.Addr(), dst.Addr(), unix.IPPROTO_UDP, udpLen), u))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return ipLen + udpLen
}

var errNotUDP = errors.New("not a UDP packet")

// parseUDP decodes an IPv4 or IPv6 UDP packet and checks its lengths and
// checksums. It returns errNotUDP for other packets.
func parseUDP(p []byte) (src, dst netip.AddrPort, payload []byte, err error) {
	if len(p) < 1 {
		return src, dst, nil, errNotUDP
	}
	var srcIP, dstIP netip.Addr
	var u []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 || p[9] != unix.IPPROTO_UDP {
			return src, dst, nil, errNotUDP
		}
		ihl := int(p[0]&0xf) * 4
		if int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			return src, dst, nil, fmt.Errorf("IPv4 total length %d, packet has %d bytes", binary.BigEndian.Uint16(p[2:]), len(p))
		}
		if fold(sum16(0, p[:ihl])) != 0xffff {
			return src, dst, nil, errors.New("bad IPv4 header checksum")
		}
		srcIP, dstIP = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		u = p[ihl:]
	case 6:
		if len(p) < 40 || p[6] != unix.IPPROTO_UDP {
			return src, dst, nil, errNotUDP
		}
		if int(binary.BigEndian.Uint16(p[4:]))+40 != len(p) {
			return src, dst, nil, fmt.Errorf("IPv6 payload length %d, packet has %d bytes", binary.BigEndian.Uint16(p[4:]), len(p))
		}
		srcIP, dstIP = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		u = p[40:]
	default:
		return src, dst, nil, errNotUDP
	}
	if len(u) < 8 || int(binary.BigEndian.Uint16(u[4:])) != len(u) {
		return src, dst, nil, fmt.Errorf("UDP length field does not match the %d bytes after the IP header", len(u))
	}
	if fold(sum16(pseudoSum(srcIP, dstIP, unix.IPPROTO_UDP, len(u)), u)) != 0xffff {
		return src, dst, nil, errors.New("bad UDP checksum")
	}
	src = netip.AddrPortFrom(srcIP, binary.BigEndian.Uint16(u[0:]))
	dst = netip.AddrPortFrom(dstIP, binary.BigEndian.Uint16(u[2:]))
	return src, dst, u[8:], nil
}

// readUDP reads from dev until it has collected want UDP packets sent to dst,
// ignoring other traffic (router solicitations, MLD reports). It fails the
// test on a malformed UDP packet or after 10 s.
func readUDP(t *testing.T, dev *TUN, dst netip.AddrPort, want int) (srcs []netip.AddrPort, payloads [][]byte) {
	t.Helper()
	const offset = 16
	bufs := makeBufs(dev.BatchSize(), offset, dev.MTU())
	sizes := make([]int, len(bufs))
	if err := dev.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	defer dev.SetReadDeadline(time.Time{})
	for len(payloads) < want {
		n, err := dev.Read(bufs, sizes, offset)
		if err != nil {
			t.Fatalf("Read from %s after %d of %d packets: %v", dev.Name(), len(payloads), want, err)
		}
		for i := range n {
			for j := range offset {
				if bufs[i][j] != 0xAA {
					t.Fatalf("Read wrote into the headroom at byte %d", j)
				}
			}
			src, d, payload, err := parseUDP(bufs[i][offset : offset+sizes[i]])
			if errors.Is(err, errNotUDP) || (err == nil && d != dst) {
				continue
			}
			if err != nil {
				t.Fatalf("packet read from %s: %v", dev.Name(), err)
			}
			srcs = append(srcs, src)
			payloads = append(payloads, bytes.Clone(payload))
		}
	}
	return srcs, payloads
}

// rxPackets returns the received-packets counter of the interface.
func rxPackets(t *testing.T, nl *netlink.Handle, index int) uint64 {
	t.Helper()
	link, err := nl.LinkByIndex(index)
	if err != nil {
		t.Fatalf("LinkByIndex: %v", err)
	}
	if link.Attrs().Statistics == nil {
		t.Fatal("no link statistics from netlink")
	}
	return link.Attrs().Statistics.RxPackets
}

// kernelAtLeast reports whether the running kernel is version major.minor or
// later.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	var maj, mnr int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &maj, &mnr); err != nil {
		t.Fatalf("parse kernel release %q: %v", unix.ByteSliceToString(u.Release[:]), err)
	}
	return maj > major || (maj == major && mnr >= minor)
}

type family struct {
	name      string
	local     netip.Prefix // address of the TUN device
	remote    netip.Addr   // an address routed into the TUN
	route     Route
	otherAddr netip.Prefix // a second address, to check Addrs handling
}

var families = []family{
	{
		name:      "ipv4",
		local:     netip.MustParsePrefix("10.77.0.1/24"),
		remote:    netip.MustParseAddr("10.78.0.5"),
		route:     Route{Dst: netip.MustParsePrefix("10.78.0.0/24")},
		otherAddr: netip.MustParsePrefix("10.77.1.1/32"),
	},
	{
		name:      "ipv6",
		local:     netip.MustParsePrefix("fd00:77::1/64"),
		remote:    netip.MustParseAddr("fd00:78::5"),
		route:     Route{Dst: netip.MustParsePrefix("fd00:78::/64"), Via: netip.MustParseAddr("fd00:77::2")},
		otherAddr: netip.MustParsePrefix("fd00:77:1::1/128"),
	},
}

func TestTUNInNamespace(t *testing.T) {
	testenv.RequireTUN(t)
	for _, fam := range families {
		for _, offloads := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/offloads=%v", fam.name, offloads), func(t *testing.T) {
				testTUN(t, fam, offloads)
			})
		}
	}
}

func testTUN(t *testing.T, fam family, offloads bool) {
	nsPath := newNetns(t)
	nl := nlHandle(t, nsPath)
	const mtu = 1400
	cfg := Config{
		Name:            "sntest0",
		MTU:             mtu,
		Addrs:           []netip.Prefix{fam.local, fam.otherAddr},
		Routes:          []Route{fam.route},
		DisableOffloads: !offloads,
		NetnsPath:       nsPath,
	}
	dev, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			dev.Close()
		}
	})

	// The Port view of the device.
	if dev.Name() != "sntest0" || dev.MTU() != mtu || dev.Offloads() != offloads {
		t.Errorf("Name, MTU, Offloads = %q, %d, %v; want sntest0, %d, %v", dev.Name(), dev.MTU(), dev.Offloads(), mtu, offloads)
	}
	wantBatch, wantMin := 1, 0
	if offloads {
		wantBatch, wantMin = 128, VirtioNetHdrLen
	}
	if dev.BatchSize() != wantBatch || MinOffset(dev) != wantMin {
		t.Errorf("BatchSize, MinOffset = %d, %d; want %d, %d", dev.BatchSize(), MinOffset(dev), wantBatch, wantMin)
	}

	// The kernel view, through netlink in the namespace.
	link, err := nl.LinkByName("sntest0")
	if err != nil {
		t.Fatalf("device not found in the namespace: %v", err)
	}
	if a := link.Attrs(); a.MTU != mtu || a.Flags&net.FlagUp == 0 || a.Index != dev.Index() || link.Type() != "tuntap" {
		t.Errorf("link: type %s, MTU %d, flags %v, index %d; want tuntap, %d, up, %d", link.Type(), a.MTU, a.Flags, a.Index, mtu, dev.Index())
	}
	if q := link.Attrs().TxQLen; q != DefaultTxQueueLen {
		t.Errorf("link: txqueuelen %d, want the default %d", q, DefaultTxQueueLen)
	}
	addrFamily := unix.AF_INET
	if fam.local.Addr().Is6() {
		addrFamily = unix.AF_INET6
	}
	addrs, err := nl.AddrList(link, addrFamily)
	if err != nil {
		t.Fatalf("AddrList: %v", err)
	}
	for _, want := range []netip.Prefix{fam.local, fam.otherAddr} {
		found := false
		for _, a := range addrs {
			ones, _ := a.Mask.Size()
			ip, _ := netip.AddrFromSlice(a.IP)
			if ip.Unmap() == want.Addr() && ones == want.Bits() {
				found = true
				if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
					t.Errorf("address %s is tentative or failed DAD (flags %#x)", want, a.Flags)
				}
			}
		}
		if !found {
			t.Errorf("address %s not on the device; have %v", want, addrs)
		}
	}
	routes, err := nl.RouteListFiltered(addrFamily, &netlink.Route{LinkIndex: dev.Index(), Dst: prefixToIPNet(fam.route.Dst, true)}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatalf("RouteListFiltered: %v", err)
	}
	if len(routes) != 1 {
		t.Fatalf("found %d routes to %s via the device, want 1: %v", len(routes), fam.route.Dst, routes)
	}
	if gw, _ := netip.AddrFromSlice(routes[0].Gw); gw.Unmap() != fam.route.Via {
		t.Errorf("route gateway %v, want %v", routes[0].Gw, fam.route.Via)
	}

	sock := listenUDP(t, nsPath, netip.AddrPortFrom(fam.local.Addr(), 0))
	sockAddr := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	sockAddr = netip.AddrPortFrom(sockAddr.Addr().Unmap(), sockAddr.Port())

	t.Run("host to TUN", func(t *testing.T) {
		dst := netip.AddrPortFrom(fam.remote, 9999)
		payload := []byte("secnic tun test " + fam.name)
		if _, err := sock.WriteToUDPAddrPort(payload, dst); err != nil {
			t.Fatalf("send to %s: %v", dst, err)
		}
		// The kernel queues the packet on the device as the send returns.
		if !dev.Ready() {
			t.Fatal("not Ready with a packet queued")
		}
		srcs, got := readUDP(t, dev, dst, 1)
		if srcs[0] != sockAddr || !bytes.Equal(got[0], payload) {
			t.Fatalf("read %s -> %s %q, want %s -> %s %q", srcs[0], dst, got[0], sockAddr, dst, payload)
		}
	})

	t.Run("host to TUN with UDP GSO", func(t *testing.T) {
		// One send of 5 segments: with offloads the kernel may hand the TUN
		// a single super-packet that Read must split.
		const segSize, segs = 1000, 5
		dst := netip.AddrPortFrom(fam.remote, 9998)
		payload := make([]byte, segSize*segs)
		for i := range payload {
			payload[i] = byte(i / segSize)
		}
		raw, err := sock.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, segSize)
		}); err != nil || serr != nil {
			t.Fatalf("set UDP_SEGMENT: %v %v", err, serr)
		}
		defer raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 0) })
		if _, err := sock.WriteToUDPAddrPort(payload, dst); err != nil {
			t.Fatalf("send %d bytes with UDP_SEGMENT to %s: %v", len(payload), dst, err)
		}
		_, got := readUDP(t, dev, dst, segs)
		for i, p := range got {
			if !bytes.Equal(p, payload[i*segSize:(i+1)*segSize]) {
				t.Errorf("segment %d: %d bytes starting %x, want %d bytes of %x", i, len(p), p[:min(len(p), 4)], segSize, byte(i))
			}
		}
	})

	for _, tc := range []struct {
		name    string
		packets int
		spare   int // capacity beyond each packet, for coalescing; 0 means cap == len
	}{
		{name: "one packet", packets: 1},
		{name: "batch without spare capacity", packets: 8},
		{name: "batch with spare capacity", packets: 8, spare: 65535},
	} {
		t.Run("TUN to host/"+tc.name, func(t *testing.T) {
			src := netip.AddrPortFrom(fam.remote, 4000)
			offset := MinOffset(dev) + 6
			bufs := make([][]byte, tc.packets)
			type hdr struct {
				len, cap int
				first    *byte
			}
			before := make([]hdr, tc.packets)
			payloads := make([][]byte, tc.packets)
			for i := range bufs {
				payloads[i] = []byte(fmt.Sprintf("inbound %s packet %d %s", fam.name, i, strings.Repeat("x", 500)))
				b := make([]byte, offset+1500, offset+1500+tc.spare)
				n := buildUDP(b[offset:], src, sockAddr, uint16(i), payloads[i])
				bufs[i] = b[:offset+n]
				if tc.spare == 0 {
					bufs[i] = b[: offset+n : offset+n]
				}
				before[i] = hdr{len(bufs[i]), cap(bufs[i]), &bufs[i][0]}
			}
			rxBefore := rxPackets(t, nl, dev.Index())
			n, err := dev.Write(bufs, offset)
			if err != nil || n != tc.packets {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, tc.packets)
			}
			for i, b := range bufs {
				if (hdr{len(b), cap(b), &b[0]}) != before[i] {
					t.Errorf("Write changed the slice header of bufs[%d]", i)
				}
			}
			// The kernel counts each write to the TUN as one received
			// packet. Packets of one UDP flow are coalesced into a single
			// write when offloads are on and the kernel has UDP
			// segmentation offload (USO, Linux 6.2), whether or not the
			// buffers have room (the head of the run gets a slot).
			writes := rxPackets(t, nl, dev.Index()) - rxBefore
			wantWrites := uint64(tc.packets)
			if offloads && kernelAtLeast(t, 6, 2) {
				wantWrites = 1
			}
			if writes != wantWrites {
				t.Errorf("%d packets went to the kernel in %d writes, want %d", tc.packets, writes, wantWrites)
			}
			if err := sock.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2000)
			for i := range tc.packets {
				n, from, err := sock.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("receive packet %d of %d on %s: %v", i, tc.packets, sockAddr, err)
				}
				from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
				if from != src || !bytes.Equal(buf[:n], payloads[i]) {
					t.Fatalf("packet %d: from %s %q, want from %s %q", i, from, buf[:n], src, payloads[i])
				}
			}
		})
	}

	t.Run("TUN to host/TCP segments are coalesced", func(t *testing.T) {
		testTCPCoalesce(t, dev, nl, nsPath, fam, offloads)
	})

	t.Run("TUN to host/a bad packet in the middle", func(t *testing.T) {
		// The kernel refuses a packet that is neither IPv4 nor IPv6. Write
		// goes on with the others, and each of them arrives exactly once.
		const packets, bad = 8, 3
		src := netip.AddrPortFrom(fam.remote, 4001)
		offset := MinOffset(dev)
		bufs := make([][]byte, packets)
		var want [][]byte
		for i := range bufs {
			payload := []byte(fmt.Sprintf("mid-batch %s packet %d", fam.name, i))
			b := make([]byte, offset+1500)
			n := buildUDP(b[offset:], src, sockAddr, uint16(i), payload)
			bufs[i] = b[: offset+n : offset+n]
			if i == bad {
				b[offset] &^= 0xf0 // IP version 0
				continue
			}
			want = append(want, payload)
		}
		n, err := dev.Write(bufs, offset)
		if err == nil {
			t.Fatal("Write of a batch with a bad packet succeeded")
		}
		// Without offloads n is exact; with them the failed chunk is not
		// counted (n never overstates).
		if wantN := packets - 1; (!offloads && n != wantN) || (offloads && n > wantN) {
			t.Errorf("Write = %d, %v; want %d (offloads %v)", n, err, wantN, offloads)
		}
		buf := make([]byte, 2000)
		got := map[string]int{}
		for range want {
			if err := sock.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			k, _, err := sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("received %d of %d packets: %v", len(got), len(want), err)
			}
			got[string(buf[:k])]++
		}
		// Nothing more arrives: no packet twice.
		if err := sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if k, _, err := sock.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("an extra packet arrived: %q", buf[:k])
		}
		for _, w := range want {
			if got[string(w)] != 1 {
				t.Errorf("packet %q arrived %d times, want once", w, got[string(w)])
			}
		}
	})

	t.Run("argument errors", func(t *testing.T) {
		pkt := make([]byte, 64)
		pktLen := buildUDP(pkt[VirtioNetHdrLen:], netip.AddrPortFrom(fam.remote, 1), sockAddr, 0, []byte("x"))
		pkt = pkt[:VirtioNetHdrLen+pktLen]
		if offloads {
			if _, err := dev.Write([][]byte{pkt[VirtioNetHdrLen-1:]}, VirtioNetHdrLen-1); !errors.Is(err, ErrOffset) {
				t.Errorf("Write with offset below MinOffset = %v, want ErrOffset", err)
			}
			if _, err := dev.Read(makeBufs(dev.BatchSize()-1, 0, mtu), make([]int, dev.BatchSize()), 0); !errors.Is(err, ErrShortBuffer) {
				t.Errorf("Read with fewer than BatchSize buffers = %v, want ErrShortBuffer", err)
			}
		}
		if _, err := dev.Write([][]byte{pkt[:VirtioNetHdrLen]}, VirtioNetHdrLen); !errors.Is(err, ErrOffset) {
			t.Errorf("Write of an empty packet = %v, want ErrOffset", err)
		}
		if _, err := dev.Read(makeBufs(dev.BatchSize(), 0, mtu-1), make([]int, dev.BatchSize()), 0); !errors.Is(err, ErrShortBuffer) {
			t.Errorf("Read into buffers smaller than the MTU = %v, want ErrShortBuffer", err)
		}
	})

	t.Run("MTU change is followed", func(t *testing.T) {
		if err := nl.LinkSetMTU(link, 1300); err != nil {
			t.Fatalf("LinkSetMTU: %v", err)
		}
		// The device learns the new MTU from a netlink event, which arrives
		// asynchronously; poll for it, with a generous limit against hangs.
		deadline := time.Now().Add(10 * time.Second)
		for dev.MTU() != 1300 {
			if time.Now().After(deadline) {
				t.Fatalf("MTU() = %d 10 s after the link MTU changed to 1300", dev.MTU())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	// Close unblocks a pending Read and removes the device.
	readErr := make(chan error, 1)
	go func() {
		bufs := makeBufs(dev.BatchSize(), 0, dev.MTU())
		sizes := make([]int, len(bufs))
		for {
			if _, err := dev.Read(bufs, sizes, 0); err != nil {
				readErr <- err
				return
			}
		}
	}()
	closed = true
	if err := dev.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-readErr; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read pending during Close returned %v, want os.ErrClosed", err)
	}
	if _, err := dev.Write([][]byte{make([]byte, 40)}, MinOffset(dev)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
	if _, err := nl.LinkByName("sntest0"); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("after Close, looking up the device gave %v; want it gone", err)
	}
	if err := dev.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenErrorsInNamespace(t *testing.T) {
	testenv.RequireTUN(t)
	nsPath := newNetns(t)
	nl := nlHandle(t, nsPath)
	first, err := Open(Config{Name: "sntaken0", NetnsPath: nsPath})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer first.Close()
	dup := Route{Dst: netip.MustParsePrefix("10.99.0.0/16")}
	tests := []struct {
		name     string
		cfg      Config
		wantErr  string
		leftName string // an interface that must not exist after the failure
	}{
		{name: "name taken", cfg: Config{Name: "sntaken0"}, wantErr: "already exists"},
		{name: "duplicate route rolls back", cfg: Config{Name: "snroll0", Routes: []Route{dup, dup}}, wantErr: "add route 10.99.0.0/16", leftName: "snroll0"},
		{name: "address clash rolls back", cfg: Config{Name: "snroll1", MTU: 1280, Addrs: []netip.Prefix{netip.MustParsePrefix("fd00:99::1/64"), netip.MustParsePrefix("fd00:99::1/64")}}, wantErr: "add address fd00:99::1/64", leftName: "snroll1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.NetnsPath = nsPath
			dev, err := Open(tt.cfg)
			if err == nil {
				dev.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open error = %q, want one containing %q", err, tt.wantErr)
			}
			if tt.leftName != "" {
				if _, err := nl.LinkByName(tt.leftName); !errors.As(err, new(netlink.LinkNotFoundError)) {
					t.Errorf("interface %s left behind after a failed Open (lookup: %v)", tt.leftName, err)
				}
			}
		})
	}
	// The first device is untouched, and a "%d" template picks a free name.
	if _, err := nl.LinkByName("sntaken0"); err != nil {
		t.Errorf("first device disappeared: %v", err)
	}
	third, err := Open(Config{Name: "sntaken%d", NetnsPath: nsPath})
	if err != nil {
		t.Fatalf("Open with a template name: %v", err)
	}
	defer third.Close()
	if third.Name() != "sntaken1" {
		t.Errorf("template name became %q, want sntaken1", third.Name())
	}
}

func TestOpenErrorsUnprivileged(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "missing namespace", cfg: Config{NetnsPath: "/nonexistent/netns/secnic"}, wantErr: "open network namespace"},
		{name: "bad MTU", cfg: Config{MTU: 10}, wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := Open(tt.cfg)
			if err == nil {
				dev.Close()
				t.Fatalf("Open succeeded, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open error = %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigNormalize(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.0.1/24")
	v6 := netip.MustParsePrefix("fd00::1/64")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
		check   func(*Config) error
	}{
		{name: "defaults", cfg: Config{}, check: func(c *Config) error {
			if c.Name != DefaultName || c.MTU != DefaultMTU || c.TxQueueLen != DefaultTxQueueLen {
				return fmt.Errorf("Name, MTU, TxQueueLen = %q, %d, %d", c.Name, c.MTU, c.TxQueueLen)
			}
			return nil
		}},
		{name: "name too long", cfg: Config{Name: "abcdefghijklmnop"}, wantErr: "at most 15 bytes"},
		{name: "name with slash", cfg: Config{Name: "a/b"}, wantErr: "invalid"},
		{name: "MTU too small", cfg: Config{MTU: 67}, wantErr: "out of range"},
		{name: "MTU too large", cfg: Config{MTU: 65536}, wantErr: "out of range"},
		{name: "negative txqueuelen", cfg: Config{TxQueueLen: -1}, wantErr: "out of range"},
		{name: "txqueuelen too large", cfg: Config{TxQueueLen: MaxTxQueueLen + 1}, wantErr: "out of range"},
		{name: "IPv6 needs 1280", cfg: Config{MTU: 1279, Addrs: []netip.Prefix{v6}}, wantErr: "IPv6 minimum"},
		{name: "IPv6 route needs 1280", cfg: Config{MTU: 576, Routes: []Route{{Dst: v6}}}, wantErr: "IPv6 minimum"},
		{name: "IPv4 at 576 is fine", cfg: Config{MTU: 576, Addrs: []netip.Prefix{v4}}},
		{name: "invalid address", cfg: Config{Addrs: []netip.Prefix{{}}}, wantErr: "Addrs[0]"},
		{name: "invalid route", cfg: Config{Routes: []Route{{}}}, wantErr: "Routes[0]"},
		{name: "mixed families", cfg: Config{Routes: []Route{{Dst: v4, Via: netip.MustParseAddr("fd00::2")}}}, wantErr: "different IP families"},
		{name: "route is masked and mapped addresses unmapped", cfg: Config{
			Addrs:  []netip.Prefix{netip.MustParsePrefix("::ffff:10.1.2.3/120")},
			Routes: []Route{{Dst: v4, Via: netip.MustParseAddr("::ffff:10.0.0.9")}},
		}, check: func(c *Config) error {
			if c.Addrs[0] != netip.MustParsePrefix("10.1.2.3/24") {
				return fmt.Errorf("address became %s", c.Addrs[0])
			}
			if c.Routes[0].Dst != netip.MustParsePrefix("10.0.0.0/24") || c.Routes[0].Via != netip.MustParseAddr("10.0.0.9") {
				return fmt.Errorf("route became %s via %s", c.Routes[0].Dst, c.Routes[0].Via)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.normalize()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("normalize: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("normalize error = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.check != nil {
				if err := tt.check(&tt.cfg); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// testTCPCoalesce writes two interleaved TCP flows, 12 segments each, in
// buffers without spare capacity, with a PSH in the middle of the first.
// With offloads the device takes each run in one write (3 writes); without,
// 24. A packet socket on the device sees the kernel's view: every byte of
// every flow once, in order, in datagrams whose lengths add up.
func testTCPCoalesce(t *testing.T, dev *TUN, nl *netlink.Handle, nsPath string, fam family, offloads bool) {
	var fd int
	err := netns.Do(nsPath, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: dev.Index()})
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", dev.Name(), err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	local := fam.local.Addr()
	flows := []netip.AddrPort{netip.AddrPortFrom(fam.remote, 5001), netip.AddrPortFrom(fam.remote, 5002)}
	dst := netip.AddrPortFrom(local, 9)
	const segs, segLen = 12, 1200
	offset := MinOffset(dev) + 6
	var bufs [][]byte
	want := map[uint16][]byte{}
	for i := range segs {
		for f, src := range flows {
			payload := bytes.Repeat([]byte{byte(f<<6 | i)}, segLen)
			flags := byte(0x10)
			if f == 0 && i == 5 {
				flags = 0x18 // PSH: the first flow's run ends here
			}
			bufs = append(bufs, tcpSeg(offset, src, dst, uint32(1+i*segLen), 77, flags, payload))
			want[src.Port()] = append(want[src.Port()], payload...)
		}
	}
	rxBefore := rxPackets(t, nl, dev.Index())
	if n, err := dev.Write(bufs, offset); err != nil || n != len(bufs) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(bufs))
	}
	writes := rxPackets(t, nl, dev.Index()) - rxBefore
	wantWrites := uint64(len(bufs))
	if offloads {
		wantWrites = 3
	}
	if writes != wantWrites {
		t.Errorf("%d segments went to the kernel in %d writes, want %d", len(bufs), writes, wantWrites)
	}
	got := map[uint16][]byte{}
	buf := make([]byte, 70000)
	total := 0
	for total < 2*segs*segLen {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("packet socket: %v after %d of %d payload bytes", err, total, 2*segs*segLen)
		}
		p := buf[:n]
		k, hdr, _, ok := runOf(p)
		if !ok || k.udp || k.ports>>16 < 5001 || k.ports>>16 > 5002 {
			continue // not ours (neighbour discovery and the like)
		}
		payload := p[hdr:]
		got[uint16(k.ports>>16)] = append(got[uint16(k.ports>>16)], payload...)
		total += len(payload)
	}
	for _, src := range flows {
		if !bytes.Equal(got[src.Port()], want[src.Port()]) {
			t.Errorf("flow from port %d: the kernel saw %d bytes, not the %d written in order", src.Port(), len(got[src.Port()]), len(want[src.Port()]))
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
