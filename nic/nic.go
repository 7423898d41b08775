// Package nic is the secnic NIC: a host port (a TUN device, or memory), a
// wire port (package wire's UDP cable or real Linux link, or memory), both
// of them tun.Port, and between them the
// datapath that does IPsec packet offload: policy lookup, ESP/AH
// encapsulation and decapsulation in place, sequence numbers and
// anti-replay, the RFC 4301 inbound selector check, MTU handling with ICMP
// and fragmentation, reassembly, counters, Prometheus metrics and pcap
// captures.
//
// The hot loop is in datapath.go, to be read top to bottom.
package nic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/secnic/secnic/bundle"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// Config configures a NIC. The zero value works: defaults are noted per field.
type Config struct {
	// Name names the NIC in logs and metrics (default "secnic0").
	Name string `json:"name,omitempty"`
	// DefaultOut is the action for outbound packets no policy matches
	// (default sa.Bypass). DefaultIn is the action for unprotected inbound
	// packets no policy matches (default sa.Bypass). A protected inbound
	// packet always needs a Protect policy listing its bundle.
	DefaultOut saspec.Action `json:"-"`
	DefaultIn  saspec.Action `json:"-"`
	// EncapPort is the RFC 3948 UDP encapsulation port for received
	// packets: 0 means 4500; a negative value disables UDP-encapsulated
	// ESP (such packets are then ordinary UDP).
	EncapPort int `json:"encap_port,omitempty"`
	// WireMTU is the largest datagram sent to the wire (default: the wire
	// port's MTU). Larger protected packets are fragmented, or answered
	// with ICMP when they must not be.
	WireMTU int `json:"wire_mtu,omitempty"`
	// ReassemblySlots bounds the datagrams reassembled at once (default 32,
	// about 66 KiB each, allocated on first use). ReassemblyTimeout drops
	// incomplete ones (default 10s).
	ReassemblySlots   int           `json:"reassembly_slots,omitempty"`
	ReassemblyTimeout time.Duration `json:"reassembly_timeout,omitempty"`
	// ICMPRate limits the ICMP too-big messages sent to the host per
	// second (default 100; negative = unlimited).
	ICMPRate int `json:"icmp_rate,omitempty"`
	// HostCapture and WireCapture are pcap file paths; empty = no capture.
	HostCapture string `json:"host_capture,omitempty"`
	WireCapture string `json:"wire_capture,omitempty"`
	// CaptureSnapLen and CaptureQueue size the captures (default 65535
	// bytes and 1024 packets).
	CaptureSnapLen int `json:"capture_snaplen,omitempty"`
	CaptureQueue   int `json:"capture_queue,omitempty"`
	// Offload is the NIC's mode: OffloadPacket (default; the host port is
	// a TUN device) or OffloadCrypto (the host port is a DriverPort and
	// the host stack frames the packets; see crypto.go).
	Offload string `json:"offload,omitempty"`
	// Workers is the number of workers per direction (0 = DefaultWorkers,
	// negative = one per CPU, at most MaxWorkers). A port with that many
	// queues (tun.Multiqueue) gives each worker its own queue; a port with
	// one queue is spread over the workers by a dispatcher (workers.go).
	// The workers share the reassembly slots; each has a share of
	// ICMPRate.
	Workers int `json:"workers,omitempty"`
	// BusyPoll is how long, after the NIC's last batch, a reader keeps
	// polling a port that supports it (tun.Poller) before it blocks and
	// sleeps: it trades CPU time for latency (0 = DefaultBusyPoll,
	// negative = off, at most 1ms).
	BusyPoll time.Duration `json:"busy_poll,omitempty"`
}

// minWireMTU is the smallest wire MTU the NIC accepts: the datagram size
// every IPv4 host must be able to reassemble (RFC 791).
const minWireMTU = 576

// SnapshotSource is what the NIC needs of the SA table: its current
// immutable snapshot. *sa.Table implements it.
type SnapshotSource interface {
	Snapshot() *sadb.Snapshot
}

// NIC is one emulated IPsec offload NIC.
type NIC struct {
	cfg       Config
	table     SnapshotSource
	host      tun.Port
	wire      tun.Port
	log       *slog.Logger
	encapPort uint16
	wireMTU   int

	tx loopCounters // host -> wire, written by the transmit loop only
	rx loopCounters // wire -> host, written by the receive loop only

	txw         []*txState // one per worker
	rxw         []*rxState
	txs         *txState // worker 0 (tests step it directly)
	rxs         *rxState
	dispatchers []*dispatcher
	reasm       *reassembler
	spin        int64        // busy-poll nanoseconds; 0 = off
	lastBatch   atomic.Int64 // mono() of the last batch (busy-polling)
	crypto      *cryptoState // crypto offload only

	hostCap, wireCap *capture
	collector        *collector
	registry         *prometheus.Registry

	mu      sync.Mutex
	running bool
	closed  bool
	done    chan struct{}
}

// New builds a NIC between host and wire over the SA table. The NIC owns
// both ports from now on: Close (or the end of Run) closes them. logger
// may be nil (slog.Default).
func New(cfg Config, table SnapshotSource, host, wire tun.Port, logger *slog.Logger) (*NIC, error) {
	if table == nil || host == nil || wire == nil {
		return nil, errors.New("nic: New needs an SA table, a host port and a wire port")
	}
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = "secnic0"
	}
	for _, a := range []*saspec.Action{&cfg.DefaultOut, &cfg.DefaultIn} {
		switch *a {
		case 0:
			*a = saspec.Bypass
		case saspec.Bypass, saspec.Discard:
		default:
			return nil, fmt.Errorf("nic: default action %v is not allowed: choose bypass or discard", *a)
		}
	}
	n := &NIC{cfg: cfg, table: table, host: host, wire: wire, log: logger.With("nic", cfg.Name), done: make(chan struct{})}
	switch {
	case cfg.EncapPort == 0:
		n.encapPort = saspec.DefaultEncapPort
	case cfg.EncapPort > 0 && cfg.EncapPort < 65536:
		n.encapPort = uint16(cfg.EncapPort)
	case cfg.EncapPort >= 65536:
		return nil, fmt.Errorf("nic: encap_port %d is not a UDP port", cfg.EncapPort)
	}
	n.wireMTU = cfg.WireMTU
	if n.wireMTU == 0 {
		n.wireMTU = wire.MTU()
	}
	if n.wireMTU < minWireMTU || n.wireMTU > packet.MaxPacket {
		return nil, fmt.Errorf("nic: wire MTU %d is outside %d..%d; set wire_mtu or the wire port's MTU", n.wireMTU, minWireMTU, packet.MaxPacket)
	}
	if n.cfg.ReassemblySlots <= 0 {
		n.cfg.ReassemblySlots = 32
	}
	if n.cfg.ReassemblyTimeout <= 0 {
		n.cfg.ReassemblyTimeout = 10 * time.Second
	}
	if n.cfg.ICMPRate == 0 {
		n.cfg.ICMPRate = 100
	}
	var err error
	if cfg.HostCapture != "" {
		if n.hostCap, err = openCapture(cfg.HostCapture, "host", cfg.CaptureSnapLen, cfg.CaptureQueue, n.log); err != nil {
			return nil, err
		}
	}
	if cfg.WireCapture != "" {
		if n.wireCap, err = openCapture(cfg.WireCapture, "wire", cfg.CaptureSnapLen, cfg.CaptureQueue, n.log); err != nil {
			n.closeCaptures()
			return nil, err
		}
	}
	n.reasm = newReassembler(n.cfg.ReassemblySlots, n.cfg.ReassemblyTimeout, &n.rx.drops, &n.rx.reassembled)
	switch cfg.Offload {
	case "", OffloadPacket:
		n.cfg.Offload = OffloadPacket
		if err := n.setupWorkers(); err != nil {
			n.closeCaptures()
			return nil, err
		}
	case OffloadCrypto:
		d, ok := host.(DriverPort)
		if !ok {
			n.closeCaptures()
			return nil, fmt.Errorf("nic: offload %q needs a driver socket as the host port (driver.Listen), not %s", OffloadCrypto, host.Name())
		}
		n.crypto = newCryptoState(n, d)
	default:
		n.closeCaptures()
		return nil, fmt.Errorf("nic: offload %q is not a mode: use %q or %q", cfg.Offload, OffloadPacket, OffloadCrypto)
	}
	n.collector = newCollector(n)
	n.registry = newRegistry(n.collector)
	if n.crypto != nil {
		n.registry.MustRegister(newCryptoCollector(n))
	}
	return n, nil
}

// Run moves packets until ctx is cancelled or a port fails. It runs a
// transmit loop and a receive loop per worker, each on its own goroutine
// (and a dispatcher per port that has one queue for several workers), and
// returns after all stopped; the ports and captures are closed then.
// Cancelling ctx is a clean stop (nil error).
func (n *NIC) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.closed || n.running {
		n.mu.Unlock()
		return errors.New("nic: Run called on a NIC that is closed or already running; build a new one with New")
	}
	n.running = true
	n.mu.Unlock()
	defer close(n.done)

	stop := make(chan struct{})
	var remaining int
	var errc chan error
	if n.crypto != nil {
		n.log.Info("datapath starting", "offload", OffloadCrypto, "host", n.host.Name(), "wire", n.wire.Name(), "wire_mtu", n.wireMTU)
		remaining = 2
		errc = make(chan error, remaining)
		go func() { errc <- n.cryptoTxLoop() }()
		go func() { errc <- n.cryptoRxLoop() }()
	} else {
		n.log.Info("datapath starting", "host", n.host.Name(), "wire", n.wire.Name(), "wire_mtu", n.wireMTU, "host_mtu", n.HostMTU(),
			"workers", n.cfg.Workers, "dispatchers", len(n.dispatchers), "busy_poll", time.Duration(n.spin))
		remaining = 2*len(n.txw) + len(n.dispatchers)
		errc = make(chan error, remaining)
		for i := range n.txw {
			t, r := n.txw[i], n.rxw[i]
			go func() { errc <- n.txLoop(t) }()
			go func() { errc <- n.rxLoop(r) }()
		}
		for _, d := range n.dispatchers {
			go func() { errc <- d.run(stop) }()
		}
	}
	var timer sync.WaitGroup
	timer.Go(func() { n.reasm.expireLoop(stop) })
	defer timer.Wait()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
		remaining--
	}
	close(stop)
	n.closePorts()
	for ; remaining > 0; remaining-- {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if err := n.closeCaptures(); err != nil && first == nil {
		first = err
	}
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	if first != nil {
		n.log.Error("datapath stopped", "err", first)
		return first
	}
	n.log.Info("datapath stopped")
	return nil
}

// Close stops the NIC: it closes both ports (which ends Run) and waits for
// Run to return, or, if Run was never called, closes the captures.
func (n *NIC) Close() error {
	n.mu.Lock()
	running, closed := n.running, n.closed
	n.closed = true
	n.mu.Unlock()
	n.closePorts()
	if running {
		<-n.done
		return nil
	}
	if closed {
		return nil
	}
	return n.closeCaptures()
}

func (n *NIC) closePorts() {
	if err := n.host.Close(); err != nil {
		n.log.Warn("closing host port", "err", err)
	}
	if err := n.wire.Close(); err != nil {
		n.log.Warn("closing wire port", "err", err)
	}
}

func (n *NIC) closeCaptures() error {
	var first error
	for _, c := range []*capture{n.hostCap, n.wireCap} {
		if c != nil {
			if err := c.close(); err != nil && first == nil {
				first = fmt.Errorf("nic: %s capture %s: %w", c.side, c.path, err)
			}
		}
	}
	return first
}

// Name returns the NIC's name.
func (n *NIC) Name() string { return n.cfg.Name }

// WireMTU returns the MTU the NIC protects for.
func (n *NIC) WireMTU() int { return n.wireMTU }

// HostMTU returns the largest inner packet that fits on the wire after
// the worst-case overhead of the outbound SAs currently in the table; see
// HostMTUFor.
func (n *NIC) HostMTU() int { return HostMTUFor(n.wireMTU, n.table.Snapshot()) }

// HostMTUFor returns the host-port MTU that leaves room, within wireMTU,
// for the worst-case overhead (bundle.Overhead: headers, IV, ICV,
// maximal padding, UDP encapsulation, outer header) of the outbound bundles
// in snap. Since a policy may stack a transport bundle over a tunnel
// bundle, the overhead is that of the costliest tunnel bundle plus that of
// the costliest transport bundle. The daemon sets the TUN MTU to this.
func HostMTUFor(wireMTU int, snap *sadb.Snapshot) int {
	var tunnel, transport int
	if snap != nil {
		snap.EachBundle(func(b *sa.Bundle) bool {
			if b.Dir != sa.Out {
				return true
			}
			o := bundle.Overhead(b, wireMTU)
			if b.Mode == sa.Tunnel {
				tunnel = max(tunnel, o)
			} else {
				transport = max(transport, o)
			}
			return true
		})
	}
	return max(wireMTU-tunnel-transport, minMTU4)
}

// isClosed reports an error from a closed port.
func isClosed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed)
}

// slogErrorLog adapts slog to promhttp's error logger.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) { s.l.Error("metrics: " + fmt.Sprint(v...)) }
