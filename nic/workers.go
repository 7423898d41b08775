package nic

// Workers: every core.
//
// The NIC runs Config.Workers workers per direction. Each transmit worker
// and each receive worker is the loop of datapath.go with its own buffers,
// spares, reassembly table and ICMP budget; they share the SA table (whose
// snapshot is immutable and whose per-SA sequence counters and replay
// windows are safe for concurrent use) and the NIC's counters (atomic).
//
// A worker gets its packets in one of two ways:
//
//   - A port with as many queues as there are workers (tun.Multiqueue: a
//     multiqueue TUN device, whose kernel spreads flows over the queues by
//     hash) gives each worker its own queue to read and write, with no
//     hand-off between goroutines.
//   - A port with one queue is read by a dispatcher goroutine that hashes
//     each packet and passes it to a worker without copying: the packet's
//     buffer moves into the worker's batch and a spare buffer of that batch
//     takes its place among the dispatcher's read buffers.
//
// The hash keeps what must stay in order on one worker. A host packet that
// an ordinary protect policy sends through an SA goes to the worker of that
// SA (hostSteer), so the SA's packets leave in sequence order and the
// peer's replay window never sees them reordered; other host packets go by
// flow (addresses, protocol, ports), each flow in order. So one ordinary
// SA runs on one worker, and several tunnels spread over the workers. On a
// multiqueue host port the kernel spreads flows, and one ordinary SA used
// by several queues gets sequence numbers that stay unique (an atomic
// counter) but leave interleaved: use per-CPU SAs there, or a replay
// window that covers the reordering. Wire packets hash by SPI, so each
// inbound SA is handled by one worker and its replay window moves as the
// peer sent; outer fragments hash by their addresses so that one datagram's
// fragments meet in one worker's reassembly table. RFC 9611 per-CPU SAs
// (a policy with per_cpu: transmit worker i uses bundle i mod k of the
// policy) give every worker a tunnel SA of its own, so one tunnel scales
// past one core and each SA's packets leave in sequence order.
//
// Writes to a port shared by several workers are serialized by a mutex
// (one Write call each); a queue of a multiqueue port is written by its
// worker alone.

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// Defaults of the worker knobs.
const (
	// DefaultWorkers is the number of workers per direction when
	// Config.Workers is 0 (see docs/performance.md for why).
	DefaultWorkers = 1
	// DefaultBusyPoll is Config.BusyPoll when it is 0.
	DefaultBusyPoll time.Duration = 0
	// MaxWorkers bounds Config.Workers.
	MaxWorkers = 256
	// dispatchBatches is the number of batches in flight between the
	// dispatcher and one worker.
	dispatchBatches = 3
)

// workerCount resolves Config.Workers: 0 = DefaultWorkers, negative = one
// per CPU the Go runtime may use.
func workerCount(w int) (int, error) {
	switch {
	case w == 0:
		return DefaultWorkers, nil
	case w < 0:
		return runtime.GOMAXPROCS(0), nil
	case w > MaxWorkers:
		return 0, fmt.Errorf("nic: workers %d is more than %d; give 0 for the default, -1 for one per CPU, or a smaller number", w, MaxWorkers)
	}
	return w, nil
}

// errStop ends a loop cleanly: its port was closed.
var errStop = errors.New("nic: port closed")

// A source hands a worker its batches: a reader of its own port or queue,
// or its queue from a dispatcher. done gives the batch back after the
// worker has flushed it.
type source interface {
	next() ([]*packet.Buf, error)
	done()
}

// queues returns the per-worker ports of p (its queues when it has one per
// worker) and whether a dispatcher must read p for the workers.
func queuesFor(p tun.Port, what string, workers int) ([]tun.Port, bool, error) {
	qs := tun.QueuesOf(p)
	switch {
	case len(qs) == workers:
		return qs, false, nil
	case len(qs) == 1:
		// One queue: a dispatcher reads it; the workers share its writes.
		ws := make([]tun.Port, workers)
		mu := new(sync.Mutex)
		for i := range ws {
			ws[i] = lockedWriter{Port: p, mu: mu}
		}
		return ws, true, nil
	}
	return nil, false, fmt.Errorf("nic: the %s port %s has %d queues but workers is %d; open it with one queue per worker, or with one", what, p.Name(), len(qs), workers)
}

// lockedWriter serializes the Writes of several workers to one port.
type lockedWriter struct {
	tun.Port
	mu *sync.Mutex
}

func (l lockedWriter) Write(bufs [][]byte, offset int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Port.Write(bufs, offset)
}

// setupWorkers builds the workers' states, and the dispatchers where a port
// has one queue for several workers.
func (n *NIC) setupWorkers() error {
	w, err := workerCount(n.cfg.Workers)
	if err != nil {
		return err
	}
	n.cfg.Workers = w
	switch {
	case n.cfg.BusyPoll == 0:
		n.spin = int64(DefaultBusyPoll)
	case n.cfg.BusyPoll > 0:
		n.spin = int64(min(n.cfg.BusyPoll, time.Millisecond))
	}
	hosts, hostDisp, err := queuesFor(n.host, "host", w)
	if err != nil {
		return err
	}
	wires, wireDisp, err := queuesFor(n.wire, "wire", w)
	if err != nil {
		return err
	}
	if w == 1 { // one worker: no locks
		hosts, wires = []tun.Port{n.host}, []tun.Port{n.wire}
	}
	n.txw = make([]*txState, w)
	n.rxw = make([]*rxState, w)
	for i := range w {
		n.txw[i] = newTxState(n, i, hosts[i], wires[i])
		n.rxw[i] = newRxState(n, i, hosts[i])
	}
	hostIn := n.readers(tun.QueuesOf(n.host), hostDisp, n.host.MTU, 0)
	wireIn := n.readers(tun.QueuesOf(n.wire), wireDisp, n.wire.MTU, n.wireMTU)
	// Busy-polling: a reader also watches the other direction's port, so
	// that an answer coming back is picked up while the CPU is still awake.
	for i := range hostIn {
		hostIn[i].poll.peer = asPoller(wireIn[min(i, len(wireIn)-1)].port)
	}
	for i := range wireIn {
		wireIn[i].poll.peer = asPoller(hostIn[min(i, len(hostIn)-1)].port)
	}
	if hostDisp && w > 1 {
		hh := &hostSteer{n: n}
		n.dispatchers = append(n.dispatchers, n.newDispatcher(hostIn[0], hh, func(i int, s source) { n.txw[i].in = s }))
	} else {
		for i, r := range hostIn {
			n.txw[i].in = r
		}
	}
	if wireDisp && w > 1 {
		wh := &wireHasher{encapPort: n.encapPort}
		n.dispatchers = append(n.dispatchers, n.newDispatcher(wireIn[0], wh, func(i int, s source) { n.rxw[i].in = s }))
	} else {
		for i, r := range wireIn {
			n.rxw[i].in = r
		}
	}
	n.txs, n.rxs = n.txw[0], n.rxw[0]
	return nil
}

// readers makes a reader per port; with dispatch, one for the port itself.
func (n *NIC) readers(qs []tun.Port, dispatch bool, mtu func() int, minSize int) []*reader {
	if dispatch {
		qs = qs[:1]
	}
	rs := make([]*reader, len(qs))
	for i, q := range qs {
		rs[i] = newReader(n, q, mtu, minSize)
	}
	return rs
}

func asPoller(p tun.Port) tun.Poller {
	if q, ok := p.(tun.Poller); ok {
		return q
	}
	return nil
}

// ---------------------------------------------------------------------------
// Busy-polling.

// epoch is the origin of mono.
var epoch = time.Now()

// mono returns monotonic nanoseconds.
func mono() int64 { return int64(time.Since(epoch)) }

// poller busy-polls a port before a reader blocks on it: for up to
// Config.BusyPoll after the NIC's last batch (either direction, any
// worker), it spins on the port's Ready, and returns as soon as the port or
// the other direction's port has a packet. A packet for the other
// direction ends the spin so that this goroutine parks and the Go scheduler,
// on a CPU that has not gone to sleep, runs the goroutine that reads it.
type poller struct {
	self, peer tun.Poller
	spin       int64
	last       *atomic.Int64
}

func (p *poller) wait() {
	if p.spin <= 0 || p.self == nil {
		return
	}
	until := p.last.Load() + p.spin
	for mono() < until {
		if p.self.Ready() || (p.peer != nil && p.peer.Ready()) {
			return
		}
	}
}

// touch records a batch for the pollers.
func (p *poller) touch() {
	if p.spin > 0 {
		p.last.Store(mono())
	}
}

// ---------------------------------------------------------------------------
// Dispatching one port to several workers.

// batch is a worker's batch from a dispatcher. It owns len(bufs) buffers
// at all times: the dispatcher swaps each packet's buffer for one of them.
type batch struct {
	bufs []*packet.Buf
	n    int
}

// workerQueue carries batches between the dispatcher and one worker.
type workerQueue struct {
	full chan *batch // to the worker, in order
	free chan *batch // back to the dispatcher
	cur  *batch      // being filled (dispatcher) / being processed (worker)
}

// dispatcher reads one port and spreads its packets over the workers.
type dispatcher struct {
	n     *NIC
	r     *reader
	steer steer
	out   []*workerQueue
	mine  []*batch // per worker: the batch being filled
}

// A steer chooses a packet's worker by a hash.
type steer interface {
	begin() // a batch starts
	hash(pkt []byte) uint32
}

func (n *NIC) newDispatcher(r *reader, hash steer, bind func(int, source)) *dispatcher {
	w := n.cfg.Workers
	d := &dispatcher{n: n, r: r, steer: hash, out: make([]*workerQueue, w), mine: make([]*batch, w)}
	for i := range w {
		q := &workerQueue{full: make(chan *batch, dispatchBatches), free: make(chan *batch, dispatchBatches)}
		for range dispatchBatches {
			b := &batch{bufs: make([]*packet.Buf, len(r.bufs))}
			for j := range b.bufs {
				b.bufs[j] = packet.NewBuf(r.size)
			}
			q.free <- b
		}
		d.out[i] = q
		bind(i, &dispatched{q: q})
	}
	return d
}

// run reads batches until the port closes, then closes the workers' queues.
func (d *dispatcher) run(stop <-chan struct{}) error {
	defer func() {
		for _, q := range d.out {
			close(q.full)
		}
	}()
	for {
		pkts, err := d.r.next()
		if err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		d.steer.begin()
		for i, p := range pkts {
			w := pick(d.steer.hash(p.Bytes()), len(d.out))
			b := d.mine[w]
			if b == nil {
				select {
				case b = <-d.out[w].free:
				case <-stop:
					return nil
				}
				b.n = 0
				d.mine[w] = b
			}
			// Swap buffers: the packet goes to the worker, the worker's
			// spare takes its place here.
			spare := b.bufs[b.n]
			if len(spare.B) < len(p.B) { // the port's MTU grew
				spare = packet.NewBuf(d.r.size)
			}
			b.bufs[b.n] = p
			b.n++
			d.r.bufs[i], d.r.raw[i] = spare, spare.B
			if b.n == len(b.bufs) {
				d.out[w].full <- b
				d.mine[w] = nil
			}
		}
		for w, b := range d.mine {
			if b != nil {
				d.out[w].full <- b
				d.mine[w] = nil
			}
		}
	}
}

// pick maps a 32-bit hash onto [0, n) (Lemire's multiply-shift).
func pick(h uint32, n int) int { return int(uint64(h) * uint64(n) >> 32) }

// dispatched is a worker's source fed by a dispatcher.
type dispatched struct{ q *workerQueue }

func (s *dispatched) next() ([]*packet.Buf, error) {
	b, ok := <-s.q.full
	if !ok {
		return nil, errStop
	}
	s.q.cur = b
	return b.bufs[:b.n], nil
}

func (s *dispatched) done() {
	if b := s.q.cur; b != nil {
		s.q.cur = nil
		s.q.free <- b
	}
}

// ---------------------------------------------------------------------------
// Hashes.

// mix32 is a 64-to-32-bit finalizer (from MurmurHash3's fmix64).
func mix32(x uint64) uint32 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return uint32(x)
}

func be32(b []byte) uint64 {
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

// addrWords folds an IP header's addresses (src, dst) into one word, the
// same whichever order: a flow and its reverse hash alike.
func addrWords(pkt []byte) (uint64, int, uint8, bool) {
	switch packet.Version(pkt) {
	case 4:
		if len(pkt) < packet.IPv4MinLen {
			return 0, 0, 0, false
		}
		ihl := int(pkt[0]&0xf) * 4
		frag := pkt[6]&0x3f != 0 || pkt[7] != 0
		return be32(pkt[12:]) ^ be32(pkt[16:]), ihl, pkt[9], !frag
	case 6:
		if len(pkt) < packet.IPv6Len {
			return 0, 0, 0, false
		}
		var h uint64
		for o := 8; o < 40; o += 4 {
			h = h*0x9e3779b1 ^ be32(pkt[o:])
		}
		return h, packet.IPv6Len, pkt[6], true
	}
	return 0, 0, 0, false
}

// hostSteer steers packets from the host: a packet that an ordinary
// protect policy sends through an SA goes to the worker of that SA's
// bundle, so that one worker takes the SA's sequence numbers and its
// packets leave in sequence order (a peer's replay window would drop
// packets reordered by more than its size); every other packet (per-CPU
// policies, bypass) by its flow.
type hostSteer struct {
	n    *NIC
	snap *sadb.Snapshot
}

func (h *hostSteer) begin() { h.snap = h.n.table.Snapshot() }

func (h *hostSteer) hash(pkt []byte) uint32 {
	if f, ok := sa.FlowOf(pkt); ok {
		if r := h.snap.MatchOut(f); r != nil && r.Action == saspec.Protect && !r.PerCPU && len(r.Bundles) > 0 {
			return mix32(uint64(r.Bundles[0].Handle))
		}
	}
	return hostHash(pkt)
}

// hostHash hashes a packet from the host by flow: addresses, protocol and,
// for TCP, UDP, SCTP and UDP-Lite outside fragments, the ports.
func hostHash(pkt []byte) uint32 {
	h, off, proto, whole := addrWords(pkt)
	h ^= uint64(proto) << 40
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP, 132, 136:
		if whole && len(pkt) >= off+4 {
			h ^= be32(pkt[off:]) << 8
		}
	}
	return mix32(h)
}

// wireHasher hashes packets from the wire by SPI (ESP, AH,
// UDP-encapsulated ESP to encapPort) and everything else by flow. A
// fragmented datagram goes where its SPI says too, so that its SA's packets
// stay on one worker and in order: the first fragment (offset 0) carries
// the ESP or AH header, and the worker chosen for it is remembered for the
// datagram's later fragments (by addresses and identification, in a small
// direct-mapped table). A fragment whose first fragment was not seen goes
// by its addresses; reassembly is shared by the workers, so it completes
// wherever its last fragment lands.
type wireHasher struct {
	encapPort uint16
	frags     [256]struct {
		key  uint64
		hash uint32
	}
}

func (w *wireHasher) begin() {}

func (w *wireHasher) hash(pkt []byte) uint32 {
	h, off, proto, whole := addrWords(pkt)
	if whole && packet.Version(pkt) == 6 && proto == packet.ProtoFragment && len(pkt) >= packet.IPv6Len+8 {
		// An IPv6 fragment header right after the fixed header.
		f := pkt[packet.IPv6Len:]
		id := uint32(be32(f[4:]))
		fo := uint16(f[2])<<8 | uint16(f[3])
		return w.fragment(h, id, fo>>3 == 0, f[0], pkt[packet.IPv6Len+8:])
	}
	if !whole { // IPv4 fragment
		fo := uint16(pkt[6]&0x1f)<<8 | uint16(pkt[7])
		id := uint64(pkt[4])<<8 | uint64(pkt[5])
		return w.fragment(h, uint32(id), fo == 0, proto, pkt[off:])
	}
	if s, ok := w.spiHash(proto, pkt[off:]); ok {
		return s
	}
	return hostHash(pkt)
}

// spiHash hashes the SPI of the IPsec header at the start of l4, if any.
func (w *wireHasher) spiHash(proto uint8, l4 []byte) (uint32, bool) {
	switch proto {
	case packet.ProtoESP:
		if len(l4) >= 4 {
			return mix32(be32(l4) | 50<<32), true
		}
	case packet.ProtoAH:
		if len(l4) >= 8 {
			return mix32(be32(l4[4:]) | 51<<32), true
		}
	case packet.ProtoUDP:
		if len(l4) >= 12 && uint16(be32(l4)) == w.encapPort {
			if spi := be32(l4[8:]); spi != 0 {
				return mix32(spi | 50<<32), true
			}
		}
	}
	return 0, false
}

// fragment steers one fragment: a first fragment by its SPI (remembered
// for the rest of the datagram), the others as their first one went.
func (w *wireHasher) fragment(addrs uint64, id uint32, first bool, proto uint8, payload []byte) uint32 {
	key := addrs ^ uint64(id)<<32 ^ uint64(proto)<<24 | 1
	e := &w.frags[mix32(key)&uint32(len(w.frags)-1)]
	if first {
		if s, ok := w.spiHash(proto, payload); ok {
			e.key, e.hash = key, s
			return s
		}
	}
	if e.key == key {
		return e.hash
	}
	return mix32(addrs)
}
