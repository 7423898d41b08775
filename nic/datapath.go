package nic

// The hot loop. Read this file top to bottom.
//
// Two loops, each on its own goroutine and each owning its buffers:
//
//	transmit (txLoop): host port → policy → ESP/AH → wire port
//	receive  (rxLoop): wire port → reassembly → SPI lookup → AH/ESP → selector check → host port
//
// Each turn of a loop reads one batch (one system call on a TUN or socket
// port) into preallocated buffers, at offset packet.Headroom so that outer
// headers are prepended in place and trailers appended into the tailroom;
// loads the SA table's snapshot once; processes the packets one after the
// other in place; and writes the batch out with one call. Nothing here
// allocates per packet: the buffers, the output lists and the spare
// buffers for fragments and ICMP messages are allocated once, in
// newTxState and newRxState.
//
// Workers: the NIC runs Config.Workers pairs of these loops (workers.go).
// Each worker reads its batches from a source: a reader of its own port or
// queue, or a dispatcher that hashed the packets to it (flows by hash on the
// host side, SAs by SPI on the wire side). One transmit worker takes a
// flow's sequence numbers in the order it reads the flow's packets and
// writes them in that order; one receive worker sees each SA's packets in
// arrival order, so the replay window moves as the peer sent.
//
// Before blocking in a read, a reader may busy-poll for a few microseconds
// after the last batch (Config.BusyPoll), so that a reply is picked up
// before the CPU goes to sleep.

import (
	"errors"
	"time"

	"github.com/secnic/secnic/bundle"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// ---------------------------------------------------------------------------
// Transmit: host → wire.

// reader reads batches from one port (or queue) into buffers it owns, at
// offset packet.Headroom.
type reader struct {
	n       *NIC
	port    tun.Port
	mtu     func() int // the port's MTU now
	minSize int
	size    int // data bytes each buffer holds
	bufs    []*packet.Buf
	raw     [][]byte
	sizes   []int
	poll    poller
	errLog  rateLog
}

func newReader(n *NIC, port tun.Port, mtu func() int, minSize int) *reader {
	r := &reader{n: n, port: port, mtu: mtu, minSize: minSize}
	r.poll = poller{self: asPoller(port), spin: n.spin, last: &n.lastBatch}
	batch := max(port.BatchSize(), 1)
	r.bufs = make([]*packet.Buf, batch)
	r.raw = make([][]byte, batch)
	r.sizes = make([]int, batch)
	r.alloc(max(mtu(), minSize))
	return r
}

// alloc (re)allocates the read buffers for packets of up to size bytes.
func (r *reader) alloc(size int) {
	r.size = size
	for i := range r.bufs {
		r.bufs[i] = packet.NewBuf(size)
		r.raw[i] = r.bufs[i].B
	}
}

// next reads one batch (busy-polling first, see poller) and returns its
// packets. It returns errStop once the port is closed, and an error after
// 100 failed reads in a row.
func (r *reader) next() ([]*packet.Buf, error) {
	var fails int
	for {
		r.poll.wait()
		cnt, err := r.port.Read(r.raw, r.sizes, packet.Headroom)
		if err != nil {
			if isClosed(err) {
				return nil, errStop
			}
			if errors.Is(err, tun.ErrShortBuffer) && r.mtu() > r.size {
				r.n.log.Info("port MTU grew; reallocating read buffers", "port", r.port.Name(), "mtu", r.mtu())
				r.alloc(r.mtu())
				continue
			}
			if fails++; fails > 100 {
				return nil, err
			}
			r.errLog.log(r.n, "reading the "+r.port.Name()+" port", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := range cnt {
			p := r.bufs[i]
			p.Off, p.Len = packet.Headroom, r.sizes[i]
		}
		r.poll.touch()
		return r.bufs[:cnt], nil
	}
}

func (r *reader) done() {}

// ---------------------------------------------------------------------------
// Transmit: host → wire.

type txState struct {
	id      int      // the worker's number: picks the SA of a per-CPU policy
	in      source   // the worker's batches from the host
	host    tun.Port // where ICMP answers go (the worker's host queue)
	wire    tun.Port // where protected packets go (the worker's wire queue)
	batch   int
	out     []*packet.Buf // to the wire: batch buffers and spares (fragments)
	outRaw  [][]byte
	toHost  []*packet.Buf // ICMP too-big answers (spares)
	hostRaw [][]byte
	spares  *spares
	wireOff int
	hostOff int

	icmpRate   float64
	icmpTokens float64
	icmpLast   int64
	errLog     rateLog
}

func newTxState(n *NIC, id int, host, wire tun.Port) *txState {
	t := &txState{id: id, host: host, wire: wire, batch: max(n.host.BatchSize(), 1), wireOff: tun.MinOffset(n.wire), hostOff: tun.MinOffset(n.host)}
	// Enough spares for the fragments of one 64 KiB datagram, and at least
	// one per packet of a batch (ICMP answers).
	ns := max(fragNeed(packet.MaxPacket, n.wireMTU)+1, t.batch)
	t.spares = newSpares(ns, max(n.wireMTU, minMTU6))
	t.out = make([]*packet.Buf, 0, t.batch+ns)
	t.outRaw = make([][]byte, 0, t.batch+ns)
	t.toHost = make([]*packet.Buf, 0, ns)
	t.hostRaw = make([][]byte, 0, ns)
	// The workers share Config.ICMPRate.
	t.icmpRate = float64(n.cfg.ICMPRate)
	if t.icmpRate > 0 {
		t.icmpRate = max(t.icmpRate/float64(n.cfg.Workers), 1)
	}
	t.icmpTokens = t.icmpRate
	return t
}

// fragNeed bounds the fragments a datagram of n bytes needs at mtu.
func fragNeed(n, mtu int) int {
	chunk := max((mtu-68)&^7, 8)
	return (n + chunk - 1) / chunk
}

func (n *NIC) txLoop(t *txState) error {
	for {
		pkts, err := t.in.next()
		if err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		snap := n.table.Snapshot()
		for _, p := range pkts {
			n.transmit(t, snap, p)
		}
		err = n.flushTX(t)
		t.in.done()
		if err != nil {
			return nil // the wire port was closed
		}
	}
}

// transmit decides the fate of one packet from the host: policy lookup,
// then bypass, discard or protect, then onto the output list.
func (n *NIC) transmit(t *txState, snap *sadb.Snapshot, p *packet.Buf) {
	c := &n.tx
	if n.hostCap != nil {
		n.hostCap.add(p.Bytes())
	}
	flow, ok := sa.FlowOf(p.Bytes())
	if !ok {
		c.drop(dropReason(sa.OutError))
		return
	}
	action, bundles := n.cfg.DefaultOut, []*sa.Bundle(nil)
	pol := snap.MatchOut(flow)
	if pol != nil {
		action, bundles = pol.Action, pol.Bundles
		if pol.PerCPU && len(bundles) > 1 { // RFC 9611: this worker's SA
			i := t.id % len(bundles)
			bundles = bundles[i : i+1]
		}
	}
	switch action {
	case saspec.Discard:
		c.drop(dropReason(sa.OutPolBlock))
		return
	case saspec.Protect:
		if len(bundles) == 0 {
			c.drop(dropReason(sa.OutNoStates))
			pol.Acquire(flow, sa.OutNoStates) // ask the IKE daemon for SAs (rate-limited)
			return
		}
		if r := n.protect(t, p, bundles); r != sa.ReasonNone {
			pol.Acquire(flow, r) // acts only on an expired SA
			return
		}
		c.protected.Add(1)
	default: // sa.Bypass
		if p.Len > n.wireMTU && !mayFragment(p.Bytes(), nil) {
			n.sendTooBig(t, p, n.wireMTU)
			return
		}
		c.bypassed.Add(1)
	}
	n.toWire(t, p)
}

// protect applies the bundles in order (each: ESP, then AH). A datagram
// that will not fit the wire afterwards and must not be fragmented is
// answered with ICMP before any SA spends a sequence number on it. It
// returns why the packet was dropped (counted already), or sa.ReasonNone
// when it is ready for the wire.
func (n *NIC) protect(t *txState, p *packet.Buf, bundles []*sa.Bundle) sa.Reason {
	c := &n.tx
	over := bundle.ChainOverhead(bundles, p.Len)
	if p.Len+over > n.wireMTU && !mayFragment(p.Bytes(), bundles) {
		n.sendTooBig(t, p, n.wireMTU-over)
		return sa.OutError // counted by sendTooBig; the SAs are fine
	}
	// Each bundle: ESP, then AH over the datagram ESP produced.
	if r := bundle.ApplyChainOut(bundles, p); r != sa.ReasonNone {
		c.drop(dropReason(r))
		return r
	}
	return sa.ReasonNone
}

// mayFragment reports whether an inner datagram too big for the wire may
// go out as fragments (of the outer packet after protection) rather than be
// answered with ICMP: an IPv4 datagram without DF (unless a tunnel SA sets
// the outer DF), or an IPv6 datagram of at most 1280 bytes, which a tunnel
// must carry whatever its path MTU (RFC 8200 5, RFC 4213 3.2).
func mayFragment(inner []byte, bundles []*sa.Bundle) bool {
	if packet.Version(inner) == 6 {
		return len(inner) <= minMTU6
	}
	if packet.IPv4(inner).DF() {
		return false
	}
	for _, b := range bundles {
		for _, s := range [2]*sa.SA{b.ESP, b.AH} {
			if s != nil && s.Mode == sa.Tunnel && s.DF == sa.DFSet && s.Dst.Is4() {
				return false
			}
		}
	}
	return true
}

// sendTooBig drops p and answers the host with ICMP "fragmentation
// needed" / ICMPv6 "packet too big" announcing mtu (rate-limited; never in
// answer to an ICMP error).
func (n *NIC) sendTooBig(t *txState, p *packet.Buf, mtu int) {
	c := &n.tx
	pkt := p.Bytes()
	if packet.Version(pkt) == 6 {
		mtu = max(mtu, minMTU6)
	} else {
		mtu = max(mtu, minMTU4)
	}
	if isICMPError(pkt) {
		c.drop(dropFragNeeded)
		return
	}
	if !n.icmpAllowed(t) {
		c.drop(dropICMPRateLimited)
		return
	}
	if t.spares.free() == 0 {
		if n.flushTX(t) != nil {
			return
		}
	}
	q := t.spares.get()
	if !tooBig(q, pkt, mtu) {
		c.drop(dropFragNeeded)
		return
	}
	t.toHost = append(t.toHost, q)
	c.icmp.Add(1)
	c.drop(dropFragNeeded)
}

// icmpAllowed is a token bucket of Config.ICMPRate per second.
func (n *NIC) icmpAllowed(t *txState) bool {
	rate := t.icmpRate
	if rate < 0 {
		return true
	}
	now := time.Now().UnixNano()
	t.icmpTokens = min(rate, t.icmpTokens+float64(now-t.icmpLast)*rate/1e9)
	t.icmpLast = now
	if t.icmpTokens < 1 {
		return false
	}
	t.icmpTokens--
	return true
}

// toWire queues p for the wire, fragmenting it if it is larger than the
// wire MTU.
func (n *NIC) toWire(t *txState, p *packet.Buf) {
	if p.Len <= n.wireMTU {
		t.out = append(t.out, p)
		return
	}
	c := &n.tx
	need := fragNeed(p.Len, n.wireMTU)
	if need > len(t.spares.bufs)+1 {
		c.drop(dropFragFailed)
		return
	}
	if t.spares.free() < need {
		if n.flushTX(t) != nil {
			return
		}
	}
	start := len(t.out)
	t.out = append(t.out, p)
	var ok bool
	if packet.Version(p.Bytes()) == 4 {
		t.out, ok = fragment4(p, n.wireMTU, t.spares, t.out)
	} else {
		t.out, ok = fragment6(p, n.wireMTU, t.spares, t.out)
	}
	if !ok {
		t.out = t.out[:start]
		c.drop(dropFragFailed)
		return
	}
	c.fragsOut.Add(uint64(len(t.out) - start))
}

// sendWire captures the packets of out and writes them to the wire port
// wire with off bytes of headroom (raw is the scratch list of their
// slices, returned for reuse), counting in n.tx what went out and what the
// port refused (dropWireWrite). It returns an error only when the port was
// closed. Both transmit paths (packet and crypto offload) end in it.
func (n *NIC) sendWire(wire tun.Port, out []*packet.Buf, raw [][]byte, off int, log *rateLog) ([][]byte, error) {
	c := &n.tx
	raw = raw[:0]
	var bytes uint64
	for _, p := range out {
		if n.wireCap != nil {
			n.wireCap.add(p.Bytes())
		}
		raw = append(raw, p.B[p.Off-off:p.Off+p.Len:len(p.B)])
		bytes += uint64(p.Len)
	}
	w, err := wire.Write(raw, off)
	if err != nil {
		if isClosed(err) {
			return raw, err
		}
		log.log(n, "writing to the wire port", err)
		c.drops[dropWireWrite].Add(uint64(len(out) - w))
		bytes = bytes * uint64(w) / uint64(len(out))
	}
	c.packets.Add(uint64(w))
	c.bytes.Add(bytes)
	return raw, nil
}

// flushTX writes the output list to the wire and the ICMP answers to the
// host, then frees the spares. It returns an error only when a port was
// closed.
func (n *NIC) flushTX(t *txState) error {
	if len(t.out) > 0 {
		var err error
		t.outRaw, err = n.sendWire(t.wire, t.out, t.outRaw, t.wireOff, &t.errLog)
		t.out = t.out[:0]
		if err != nil {
			return err
		}
	}
	if len(t.toHost) > 0 {
		t.hostRaw = t.hostRaw[:0]
		for _, q := range t.toHost {
			if n.hostCap != nil {
				n.hostCap.add(q.Bytes())
			}
			t.hostRaw = append(t.hostRaw, q.B[q.Off-t.hostOff:q.Off+q.Len:len(q.B)])
		}
		if _, err := t.host.Write(t.hostRaw, t.hostOff); err != nil {
			if isClosed(err) {
				return err
			}
			t.errLog.log(n, "writing ICMP to the host port", err)
		}
		t.toHost = t.toHost[:0]
	}
	t.spares.reset()
	return nil
}

// ---------------------------------------------------------------------------
// Receive: wire → host.

type rxState struct {
	id      int
	in      source   // the worker's batches from the wire
	host    tun.Port // where decapsulated packets go (the worker's host queue)
	batch   int
	out     []*packet.Buf // to the host
	outRaw  [][]byte
	lent    []int        // reassembly slots whose buffers are in out
	reasm   *reassembler // the NIC's, shared by the workers
	hostOff int
	now     int64 // time of the batch, read only when a fragment needs it
	errLog  rateLog
}

func newRxState(n *NIC, id int, host tun.Port) *rxState {
	r := &rxState{id: id, host: host, batch: max(n.wire.BatchSize(), 1), hostOff: tun.MinOffset(n.host)}
	r.out = make([]*packet.Buf, 0, r.batch)
	r.outRaw = make([][]byte, 0, r.batch)
	r.lent = make([]int, 0, r.batch)
	r.reasm = n.reasm
	return r
}

func (n *NIC) rxLoop(r *rxState) error {
	for {
		pkts, err := r.in.next()
		if err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		snap := n.table.Snapshot()
		r.now = 0
		for _, p := range pkts {
			n.receive(r, snap, p)
		}
		err = n.flushRX(r)
		r.in.done()
		if err != nil {
			return nil // the host port was closed
		}
	}
}

// receive handles one packet from the wire: reassemble, find the SA,
// remove the IPsec layers, check the result against the inbound policy,
// and queue it for the host.
func (n *NIC) receive(r *rxState, snap *sadb.Snapshot, p *packet.Buf) {
	c := &n.rx
	if n.wireCap != nil {
		n.wireCap.add(p.Bytes())
	}
	if isFragment(p.Bytes()) {
		c.fragsIn.Add(1)
		f, atomic, ok := parseFrag(p.Bytes())
		switch {
		case !ok || !ipv4ChecksumOK(p.Bytes()):
			c.drop(dropReason(sa.InHdrError))
			return
		case atomic:
			unfragment6(p, f)
		default:
			if r.now == 0 {
				r.now = time.Now().UnixNano()
			}
			q, slot := r.reasm.add(f, r.now)
			if q == nil {
				return // waiting for more fragments, or dropped and counted
			}
			r.lent = append(r.lent, slot)
			p = q
		}
	}

	loc, err := packet.Locate(p.Bytes(), n.encapPort)
	switch {
	case err == packet.ErrUDPLength:
		c.drop(dropUDPLength)
		return
	case err != nil:
		c.drop(dropReason(sa.InHdrError))
		return
	}
	switch loc.Kind {
	case packet.NotIPsec:
		n.receivePlain(r, snap, p)
		return
	case packet.NonESP: // IKE on the NAT-T port: the host's business
		c.ike.Add(1)
		r.out = append(r.out, p)
		return
	case packet.Keepalive:
		c.keepalives.Add(1)
		return
	}

	// Remove the IPsec layers addressed to us, outermost first, then check
	// the result against the inbound policy (RFC 4301 5.2).
	used, reason := bundle.Decap(snap, p, &loc, n.encapPort)
	if reason == sa.ReasonNone {
		reason = snap.Admit(p.Bytes(), &loc, used.Bundles())
	}
	if reason != sa.ReasonNone {
		c.drop(dropReason(reason))
		return
	}
	c.protected.Add(1)
	r.out = append(r.out, p)
}

// receivePlain handles an unprotected packet: delivered only if the
// inbound policy (or the default) says bypass.
func (n *NIC) receivePlain(r *rxState, snap *sadb.Snapshot, p *packet.Buf) {
	c := &n.rx
	flow, ok := sa.FlowOf(p.Bytes())
	if !ok || !ipv4ChecksumOK(p.Bytes()) {
		c.drop(dropReason(sa.InHdrError))
		return
	}
	action := n.cfg.DefaultIn
	if pol := snap.MatchIn(flow); pol != nil {
		action = pol.Action
	}
	switch action {
	case saspec.Bypass:
		c.bypassed.Add(1)
		r.out = append(r.out, p)
	case saspec.Discard:
		c.drop(dropReason(sa.InPolBlock))
	default: // Protect: it should have come through an SA
		c.drop(dropReason(sa.InNoPols))
	}
}

// flushRX writes the batch to the host and gives lent reassembly buffers
// back. It returns an error only when the host port was closed.
func (n *NIC) flushRX(r *rxState) error {
	c := &n.rx
	defer func() {
		for _, s := range r.lent {
			r.reasm.release(s)
		}
		r.lent = r.lent[:0]
		r.out = r.out[:0]
		if r.now != 0 {
			r.reasm.expire(r.now)
		}
	}()
	if len(r.out) == 0 {
		return nil
	}
	r.outRaw = r.outRaw[:0]
	var bytes uint64
	for _, p := range r.out {
		if n.hostCap != nil {
			n.hostCap.add(p.Bytes())
		}
		r.outRaw = append(r.outRaw, p.B[p.Off-r.hostOff:p.Off+p.Len:len(p.B)])
		bytes += uint64(p.Len)
	}
	w, err := r.host.Write(r.outRaw, r.hostOff)
	if err != nil {
		if isClosed(err) {
			return err
		}
		// The port sent every packet it could and skipped the others
		// (the tun.Port contract). Never retry: a packet may have reached
		// the host already, and anti-replay accepted it only once.
		r.errLog.log(n, "writing to the host port", err)
		c.drops[dropHostWrite].Add(uint64(len(r.outRaw) - w))
		bytes = bytes * uint64(w) / uint64(len(r.outRaw))
	}
	c.packets.Add(uint64(w))
	c.bytes.Add(bytes)
	return nil
}

// isFragment reports an IPv4 fragment or an IPv6 datagram whose first
// header after the fixed one (or after hop-by-hop/routing/destination
// options) is a fragment header.
// ipv4ChecksumOK reports whether pkt is not IPv4 or has a valid IPv4
// header checksum: a corrupted header is dropped (XfrmInHdrError) before
// reassembly or delivery, as Linux's ip_rcv does. ESP and AH check it in
// their decapsulation.
func ipv4ChecksumOK(pkt []byte) bool {
	return packet.Version(pkt) != 4 || len(pkt) < packet.IPv4MinLen || packet.IPv4(pkt).ChecksumValid()
}

func isFragment(pkt []byte) bool {
	switch packet.Version(pkt) {
	case 4:
		return len(pkt) >= packet.IPv4MinLen && packet.IPv4(pkt).IsFragment()
	case 6:
		if len(pkt) < packet.IPv6Len {
			return false
		}
		switch pkt[6] {
		case packet.ProtoFragment:
			return true
		case packet.ProtoHopByHop, packet.ProtoRouting, packet.ProtoDstOpts:
			s, err := packet.SplitIP(pkt)
			return err == nil && s.Fragment
		}
	}
	return false
}

// rateLog logs a datapath error at most once every ten seconds.
type rateLog struct{ last int64 }

func (l *rateLog) log(n *NIC, what string, err error) {
	now := time.Now().UnixNano()
	if now-l.last < int64(10*time.Second) {
		return
	}
	l.last = now
	n.log.Warn("datapath error (further ones muted for 10s)", "op", what, "err", err)
}
