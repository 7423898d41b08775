package wire

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nextHops maps the destination of a packet sent on the link to the MAC
// address of its next hop, as the kernel would pick it for a raw IP socket
// bound to the interface: the route towards the destination through the
// interface (its gateway, or the destination itself when on-link), then
// that address's entry in the kernel's neighbour table (ARP/NDP).
//
// The hot path only reads an immutable snapshot (one atomic load and a map
// lookup). A destination that is not in it yet is sent through the kernel
// (the raw IP socket), which resolves the neighbour as it sends, and is
// handed to the resolver goroutine, which adds it once the kernel knows the
// MAC. Every second the resolver reads the routes and the neighbour table
// again, so a changed route or MAC (gratuitous ARP) is followed and a
// neighbour the kernel forgot goes back through the kernel.
type nextHops struct {
	ifindex int
	h       *netlink.Handle
	snap    atomic.Pointer[map[netip.Addr][6]byte]
	want    chan netip.Addr
	done    chan struct{}
	wg      sync.WaitGroup
	// src is the interface's own MAC (the frames' source).
	src atomic.Pointer[[6]byte]
}

// maxNextHops bounds the destinations the resolver follows.
const maxNextHops = 4096

func newNextHops(h *netlink.Handle, ifindex int, src net.HardwareAddr) *nextHops {
	n := &nextHops{ifindex: ifindex, h: h, want: make(chan netip.Addr, 64), done: make(chan struct{})}
	m := map[netip.Addr][6]byte{}
	n.snap.Store(&m)
	var s [6]byte
	copy(s[:], src)
	n.src.Store(&s)
	n.wg.Add(1)
	go n.run()
	return n
}

// lookup returns the next hop's MAC for dst, or ok=false after asking the
// resolver to find it.
func (n *nextHops) lookup(dst netip.Addr) (mac [6]byte, ok bool) {
	mac, ok = (*n.snap.Load())[dst]
	if !ok && !dst.IsMulticast() {
		select {
		case n.want <- dst:
		default:
		}
	}
	return mac, ok
}

func (n *nextHops) close() {
	close(n.done)
	n.wg.Wait()
	n.h.Close()
}

func (n *nextHops) run() {
	defer n.wg.Done()
	// followed maps each destination to the number of looks that did
	// not resolve it in a row.
	followed := map[netip.Addr]int{}
	slow := time.NewTicker(time.Second)
	defer slow.Stop()
	// While a destination is unresolved, look again soon: the kernel is
	// resolving it (ARP takes a round trip).
	fast := time.NewTimer(time.Hour)
	defer fast.Stop()
	for {
		select {
		case <-n.done:
			return
		case d := <-n.want:
			if _, ok := followed[d]; ok {
				continue // already being looked at
			}
			if len(followed) >= maxNextHops {
				clear(followed)
			}
			followed[d] = 0
		case <-fast.C:
		case <-slow.C:
			n.refreshSrc()
		}
		if n.resolve(followed) {
			fast.Reset(2 * time.Millisecond)
		}
	}
}

func (n *nextHops) refreshSrc() {
	l, err := n.h.LinkByIndex(n.ifindex)
	if err != nil || len(l.Attrs().HardwareAddr) != 6 {
		return
	}
	var s [6]byte
	copy(s[:], l.Attrs().HardwareAddr)
	if s != *n.src.Load() {
		n.src.Store(&s)
	}
}

// usableNeigh are the neighbour states in which the kernel itself sends
// to the cached MAC.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// fastLooks is how many times, 2 ms apart, the resolver looks for a new
// destination's MAC before it falls back to once a second.
const fastLooks = 50

// resolve publishes a new snapshot for the followed destinations and
// reports whether one of them, not resolved, deserves another look soon.
func (n *nextHops) resolve(followed map[netip.Addr]int) (again bool) {
	neigh := map[netip.Addr][6]byte{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := n.h.NeighList(n.ifindex, fam)
		if err != nil {
			continue
		}
		for _, e := range list {
			a, ok := netip.AddrFromSlice(e.IP)
			if !ok || e.State&usableNeigh == 0 || len(e.HardwareAddr) != 6 {
				continue
			}
			var mac [6]byte
			copy(mac[:], e.HardwareAddr)
			neigh[a.Unmap()] = mac
		}
	}
	m := make(map[netip.Addr][6]byte, len(followed))
	for d, misses := range followed {
		if hop, ok := n.hop(d); ok {
			if mac, ok := neigh[hop]; ok {
				m[d] = mac
				followed[d] = 0
				continue
			}
		}
		followed[d] = misses + 1
		again = again || misses+1 < fastLooks
	}
	n.snap.Store(&m)
	return again
}

// hop returns the next hop towards dst through the interface.
func (n *nextHops) hop(dst netip.Addr) (netip.Addr, bool) {
	if dst.IsMulticast() || (dst.Is4() && dst == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return netip.Addr{}, false // the kernel sends those (no neighbour)
	}
	routes, err := n.h.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{OifIndex: n.ifindex})
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, false
	}
	r := routes[0]
	if r.LinkIndex != n.ifindex || r.Type == unix.RTN_BROADCAST || r.Type == unix.RTN_LOCAL || r.Type == unix.RTN_MULTICAST {
		return netip.Addr{}, false
	}
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && r.Gw != nil {
		return gw.Unmap(), true
	}
	return dst, true
}
