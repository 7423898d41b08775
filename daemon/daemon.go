// Package daemon runs a secnic NIC as a service: it reads the
// configuration file, builds the capabilities manager and the SA table
// (with the configured SAs and policies), opens the host TUN device and
// the wire port, runs the NIC's datapath, serves the control API on a unix
// socket and Prometheus metrics over HTTP, shuts down cleanly on SIGTERM or
// SIGINT (TUN device removed, SAs deleted and their keys zeroed, socket
// removed) and reloads the SAs and policies on SIGHUP.
//
// Run and RunFile are the whole service; Start returns a running Daemon for
// programs that embed one (the demo runs two in one process, each in its
// own network namespace).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
	"github.com/secnic/secnic/wire"
)

// Options configure Start beyond the configuration file.
type Options struct {
	// Logger receives the daemon's logs; the configuration's log_level
	// filters them. nil means a text logger on standard error.
	Logger *slog.Logger
	// ConfigPath is the file the configuration came from; ReloadFile
	// re-reads it. Empty for a configuration built in memory.
	ConfigPath string
}

// Daemon is a running NIC with its table, ports, control API and metrics.
type Daemon struct {
	log   *slog.Logger
	level *slog.LevelVar
	path  string

	cfg     *Config // the running configuration, keys wiped
	caps    *capabilities.Manager
	ledger  *ledger.Ledger // nil with state_dir: none
	table   *sadb.Table
	nic     *nic.NIC
	host    tun.Port
	tunDev  *tun.TUN
	hostMem *tun.MemPort // the far end of a memory host port
	cable   *memCable
	autoMTU bool
	faults  *tun.FaultyPort // wire.faults, or nil
	v6Host  bool

	ctl      *control.Server
	ctlLn    net.Listener
	ctlPath  string
	ctlDone  chan struct{}
	metrics  *http.Server
	metAddr  net.Addr
	metDone  chan struct{}
	mtuDone  chan struct{}
	mtuSub   *sadb.Subscription
	nicDone  chan struct{}
	nicErr   error
	cancel   context.CancelFunc
	reloadMu sync.Mutex

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Start builds and starts a daemon for cfg (which Start validates, like
// LoadConfig does): the datapath, the control API and the metrics
// endpoint run until Close; ctx is not used to stop them. On error
// everything already created is removed again. The caller's cfg is not
// changed.
func Start(ctx context.Context, cfg *Config, opts Options) (_ *Daemon, err error) {
	if cfg == nil {
		return nil, errors.New("daemon: no configuration")
	}
	if err := cfg.validate(opts.ConfigPath); err != nil {
		return nil, err
	}
	d := &Daemon{path: opts.ConfigPath, level: new(slog.LevelVar)}
	lvl, _ := ParseLevel(cfg.LogLevel)
	d.level.Set(lvl)
	base := opts.Logger
	if base == nil {
		base = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	filtered := slog.New(&levelHandler{h: base.Handler(), level: d.level})
	d.log = filtered.With("nic", cfg.nicName())
	logWarnings(d.log, opts.ConfigPath, cfg)

	// From here on, a failure undoes what was built.
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()

	// The running configuration keeps no keys: the table has its own copy.
	run := *cfg
	run.State = saspec.State{}
	d.cfg = &run

	// Capabilities and the SA table with the configured bundles and policies.
	if d.caps, err = capabilities.NewManagerFromConfig(cfg.Capabilities); err != nil {
		return nil, fmt.Errorf("daemon: capabilities: %w", err)
	}
	if err = d.caps.SetOffloadMode(cfg.offloadMode()); err != nil {
		return nil, fmt.Errorf("daemon: offload: %w", err)
	}
	if dir := cfg.stateDir(); dir != "" {
		if d.ledger, err = ledger.Open(dir); err != nil {
			return nil, &ConfigError{Source: opts.ConfigPath, Problems: []string{"state_dir: " + strings.TrimPrefix(err.Error(), "ledger: ")}}
		}
		d.log.Info("state directory", "dir", dir, "keys_recorded", d.ledger.Len())
	} else {
		d.log.Warn("state_dir: none: sequence numbers and replay windows are kept in memory only; after a restart, SAs re-added with the same keys repeat nonces and accept replays")
		for _, w := range cfg.nonceReuse() {
			d.log.Warn("nonce reuse across restarts accepted (allow_nonce_reuse_across_restarts)", "sa", w)
		}
	}
	tcfg := sadb.TableConfig{Caps: d.caps, Logger: d.log, AcquirePeriod: time.Duration(cfg.Datapath.AcquirePeriod)}
	if d.ledger != nil {
		tcfg.Ledger = d.ledger
	}
	if d.table, err = sadb.NewTable(tcfg); err != nil {
		return nil, fmt.Errorf("daemon: SA table: %w", err)
	}
	state := cfg.state()
	sum, err := d.table.Reconcile(state)
	defer wipeState(&state)
	if err != nil {
		return nil, &ConfigError{Source: opts.ConfigPath, Problems: []string{trimSA(err)}}
	}
	if len(sum.Failed) > 0 {
		return nil, &ConfigError{Source: opts.ConfigPath, Problems: failureLines(sum.Failed, state)}
	}
	// The daemon's own lifetime: Close ends it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	d.table.Start(runCtx)

	// Ports.
	wire, err := d.openWire(cfg)
	if err != nil {
		return nil, err
	}
	// LsoSupported follows the wire port (capabilities.SetSegmentOffload).
	if _, err := d.caps.SetSegmentOffload(segmentOffload(wire), cfg.Capabilities.Current.LsoSupported); err != nil {
		wire.Close()
		return nil, fmt.Errorf("daemon: capabilities: %w", err)
	}
	wire = d.injectFaults(cfg.Wire.Faults, wire)
	wireMTU := cfg.Datapath.WireMTU
	if wireMTU == 0 || wireMTU > wire.MTU() {
		wireMTU = wire.MTU()
	}
	host, err := d.openHost(cfg, wireMTU)
	if err != nil {
		wire.Close()
		return nil, err
	}
	d.host = host
	defOut, _ := defaultAction(cfg.DefaultPolicy.Out)
	defIn, _ := defaultAction(cfg.DefaultPolicy.In)
	ncfg := nic.Config{
		Name:              cfg.nicName(),
		DefaultOut:        defOut,
		DefaultIn:         defIn,
		EncapPort:         cfg.EncapPort,
		WireMTU:           cfg.Datapath.WireMTU,
		ReassemblySlots:   cfg.Datapath.ReassemblySlots,
		ReassemblyTimeout: time.Duration(cfg.Datapath.ReassemblyTimeout),
		ICMPRate:          cfg.Datapath.ICMPRate,
		Workers:           cfg.Datapath.Workers,
		BusyPoll:          time.Duration(cfg.Datapath.BusyPoll),
		HostCapture:       cfg.Capture.Host,
		WireCapture:       cfg.Capture.Wire,
		CaptureSnapLen:    cfg.Capture.SnapLen,
		CaptureQueue:      cfg.Capture.Queue,
		Offload:           string(cfg.offloadMode()),
	}
	// The NIC adds its name to its logs itself.
	if d.nic, err = nic.New(ncfg, d.table, host, wire, filtered); err != nil {
		host.Close()
		wire.Close()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.nicDone = make(chan struct{})
	go func() {
		defer close(d.nicDone)
		d.nicErr = d.nic.Run(runCtx)
	}()
	if d.autoMTU && d.tunDev != nil {
		d.mtuSub = d.table.Subscribe(64)
		d.mtuDone = make(chan struct{})
		go d.followMTU()
	}

	// Control API and metrics.
	if !cfg.Control.Disabled {
		if err := d.startControl(cfg.socketPath()); err != nil {
			return nil, err
		}
	}
	if cfg.Metrics.Listen != "" {
		if err := d.startMetrics(cfg.Metrics.Listen, cfg.Netns); err != nil {
			return nil, err
		}
	}
	attrs := []any{"host", host.Name(), "wire", wire.Name(), "wire_mtu", d.nic.WireMTU(), "host_mtu", host.MTU(),
		"profile", d.caps.Profile(), "sas", len(sum.SAs.Added), "policies", len(sum.Policies.Added)}
	if d.ctlPath != "" {
		attrs = append(attrs, "control", d.ctlPath)
	}
	if d.metAddr != nil {
		attrs = append(attrs, "metrics", "http://"+d.metAddr.String()+"/metrics")
	}
	d.log.Info("secnic daemon running", attrs...)
	return d, nil
}

func trimSA(err error) string {
	s := err.Error()
	if len(s) > 4 && s[:4] == "sa: " {
		return s[4:]
	}
	return s
}

// failureLines describes what a reconcile of st could not apply, each
// line naming the entry by its place in the file and its name.
func failureLines(fs []sadb.ReconcileFailure, st saspec.State) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		where := ""
		if f.Kind == "policy" {
			where = "policies"
			for i, p := range st.Policies {
				if p.Name == f.Name {
					where = fmt.Sprintf("policies[%d]", i)
				}
			}
		} else {
			where = "sas"
			for i, b := range st.SAs {
				if b.Name == f.Name {
					where = fmt.Sprintf("sas[%d]", i)
				}
			}
		}
		msg := trimSA(errors.New(f.Error))
		// Errors of the spec itself already start with "sas[i].": keep one.
		msg = strings.TrimPrefix(msg, where+".")
		out = append(out, fmt.Sprintf("%s (%q): %s", where, f.Name, msg))
	}
	return out
}

func wipeState(s *saspec.State) {
	for i := range s.SAs {
		s.SAs[i].Wipe()
	}
}

// openWire opens the configured wire port.
// segmentOffload reports whether a wire port sends the segments of one
// host super-packet with one segmentation offload (wire.UDPPort with
// UDP_SEGMENT); ports without the method do not.
func segmentOffload(p tun.Port) bool {
	s, ok := p.(interface{ SegmentOffload() bool })
	return ok && s.SegmentOffload()
}

func (d *Daemon) openWire(cfg *Config) (tun.Port, error) {
	w := cfg.Wire
	switch w.Type {
	case WireUDP:
		l, _ := netip.ParseAddrPort(w.Local)
		p, _ := netip.ParseAddrPort(w.Peer)
		mtu := w.MTU
		if room, err := udpRoom(cfg.Netns, p.Addr()); err != nil {
			d.log.Debug("cannot find the path MTU towards the udp peer", "peer", p, "err", err)
		} else if mtu == 0 {
			// An emulated 1500-byte link, or less if the path underneath
			// cannot carry that in one UDP datagram.
			mtu = min(1500, room)
			if mtu < 1500 {
				d.log.Info("udp cable MTU lowered to what the path to the peer carries", "mtu", mtu, "peer", p)
			}
		} else if mtu > room {
			d.log.Warn("wire.mtu is larger than the path to the udp peer carries in one datagram: bigger packets will be refused (message too long); lower wire.mtu or raise the interface MTU",
				"wire_mtu", mtu, "fits", room, "peer", p)
		}
		port, err := wire.OpenUDP(wire.UDPConfig{Local: l, Peer: p, MTU: mtu, Batch: w.Batch, SocketBuffer: w.SocketBuffer, NetnsPath: cfg.Netns})
		if err != nil {
			return nil, fmt.Errorf("daemon: wire port: %w", err)
		}
		return port, nil
	case WireLink:
		encap := uint16(saspec.DefaultEncapPort)
		switch {
		case cfg.EncapPort < 0:
			encap = 0
		case cfg.EncapPort > 0:
			encap = uint16(cfg.EncapPort)
		}
		port, err := wire.OpenLink(wire.LinkConfig{Interface: w.Interface, Method: w.Method, EncapPort: encap, Batch: w.Batch, SocketBuffer: w.SocketBuffer, NetnsPath: cfg.Netns})
		if err != nil {
			return nil, fmt.Errorf("daemon: wire port: %w", err)
		}
		return port, nil
	case WireMemory:
		c, port, err := attachCable(w.Cable, w.MTU, w.Batch)
		if err != nil {
			return nil, err
		}
		d.cable = c
		return port, nil
	}
	return nil, fmt.Errorf("daemon: wire type %q is not supported", w.Type)
}

// openHost opens the host port; with MTU auto it leaves room for the
// worst-case overhead of the outbound SAs already in the table.
func (d *Daemon) openHost(cfg *Config, wireMTU int) (tun.Port, error) {
	var addrs []netip.Prefix
	for _, a := range cfg.Host.Addresses {
		p, _ := netip.ParsePrefix(a)
		addrs = append(addrs, p)
		d.v6Host = d.v6Host || p.Addr().Is6()
	}
	var routes []tun.Route
	for _, r := range cfg.Host.Routes {
		dst, _ := netip.ParsePrefix(r.Dst)
		rt := tun.Route{Dst: dst}
		if r.Via != "" {
			rt.Via, _ = netip.ParseAddr(r.Via)
		}
		routes = append(routes, rt)
		d.v6Host = d.v6Host || dst.Addr().Is6()
	}
	if cfg.offloadMode() == capabilities.OffloadCrypto {
		// The host stack connects to the driver socket; its packets
		// are already framed, so the wire MTU is what it gets.
		p, err := driver.Listen(cfg.driverSocket(), driver.PortConfig{MTU: wireMTU, Logger: d.log})
		if err != nil {
			return nil, fmt.Errorf("daemon: driver socket: %w", err)
		}
		return p, nil
	}
	mtu := int(cfg.Host.MTU)
	if mtu == 0 {
		d.autoMTU = true
		mtu = d.autoHostMTU(wireMTU)
	}
	if cfg.Host.Type == HostMemory {
		a, b := tun.NewMemPair(64, max(mtu, wireMTU))
		d.hostMem = b
		return a, nil
	}
	t, err := tun.Open(tun.Config{Name: cfg.hostName(), MTU: mtu, Addrs: addrs, Routes: routes, DisableOffloads: cfg.Host.DisableOffloads, TxQueueLen: cfg.Host.TxQueueLen, NetnsPath: cfg.Netns, Logger: d.log})
	if err != nil {
		return nil, fmt.Errorf("daemon: host port: %w", err)
	}
	d.tunDev = t
	return t, nil
}

func (d *Daemon) autoHostMTU(wireMTU int) int {
	mtu := nic.HostMTUFor(wireMTU, d.table.Snapshot())
	if d.v6Host && mtu < 1280 {
		// IPv6 needs 1280; bigger inner packets are fragmented after
		// protection (RFC 8200 5).
		mtu = 1280
	}
	return mtu
}

// followMTU keeps an automatic TUN MTU within the wire MTU minus the
// worst-case overhead of the outbound SAs, without flapping: see
// nextAutoMTU.
func (d *Daemon) followMTU() {
	defer close(d.mtuDone)
	cur := d.tunDev.MTU()
	for e := range d.mtuSub.C {
		if !mtuEvent(e.Type) {
			continue
		}
		// HostMTUFor walks every bundle, and a request of many bundles
		// emits an event for each: take the events already queued and
		// recompute once (once per event made adding n SAs O(n²)).
		reload := e.Type == sadb.EventReconciled
	queued:
		for {
			select {
			case q, ok := <-d.mtuSub.C:
				if !ok {
					break queued
				}
				reload = reload || q.Type == sadb.EventReconciled
			default:
				break queued
			}
		}
		want := nextAutoMTU(cur, d.autoHostMTU(d.nic.WireMTU()), reload)
		if want == cur {
			continue
		}
		if err := d.setTUNMTU(want); err != nil {
			d.log.Warn("cannot adjust the host MTU to the SAs' overhead", "dev", d.tunDev.Name(), "want", want, "err", err)
			continue
		}
		d.log.Info("host MTU adjusted to the SAs' overhead", "dev", d.tunDev.Name(), "mtu", want, "was", cur, "event", string(e.Type))
		cur = want
	}
}

// mtuEvent reports an event after which the automatic MTU is recomputed:
// a change of the bundles, or lost events that may have been one.
func mtuEvent(t sadb.EventType) bool {
	switch t {
	case sadb.EventSAAdded, sadb.EventSADeleted, sadb.EventSAReplaced, sadb.EventReconciled, sadb.EventDropped:
		return true
	}
	return false
}

func (d *Daemon) setTUNMTU(mtu int) error {
	h, err := netns.Handle(d.cfg.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByIndex(d.tunDev.Index())
	if err != nil {
		return err
	}
	return h.LinkSetMTU(l, mtu)
}

// nicStats adapts the NIC to the control API's StatsSource.
type nicStats struct{ n *nic.NIC }

func (s nicStats) Stats() any { return s.n.Stats() }

func (d *Daemon) startControl(path string) error {
	srv, err := control.NewServer(control.Backend{Table: d.table, Caps: d.caps, Stats: nicStats{d.nic}, Logger: d.log})
	if err != nil {
		return fmt.Errorf("daemon: control API: %w", err)
	}
	l, err := control.Listen(path)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.ctl, d.ctlLn, d.ctlPath, d.ctlDone = srv, l, path, make(chan struct{})
	go func() {
		defer close(d.ctlDone)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !d.closing.Load() {
			d.log.Error("control API stopped", "err", err)
		}
	}()
	return nil
}

func (d *Daemon) startMetrics(addr, netnsPath string) error {
	var l net.Listener
	err := netns.Do(netnsPath, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("daemon: metrics: cannot listen on %s: %w (is the address local and the port free?)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.nic.MetricsHandler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "secnic: metrics at /metrics")
	})
	d.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.metAddr = l.Addr()
	d.metDone = make(chan struct{})
	go func() {
		defer close(d.metDone)
		if err := d.metrics.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return nil
}

// Done is closed when the datapath stops on its own (a port failed) or
// after Close.
func (d *Daemon) Done() <-chan struct{} { return d.nicDone }

// Err returns the datapath's error once Done is closed.
func (d *Daemon) Err() error {
	select {
	case <-d.nicDone:
		return d.nicErr
	default:
		return nil
	}
}

// Close shuts the daemon down: the control API and the metrics endpoint
// stop (the socket is removed), the datapath stops and the ports close
// (the TUN device is removed), and every SA is deleted, which zeroes its
// keys. Close may be called more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.log.Info("secnic daemon stopping")
		d.closeErr = d.teardown()
		if d.closeErr != nil {
			d.log.Error("secnic daemon stopped with errors", "err", d.closeErr)
		} else {
			d.log.Info("secnic daemon stopped")
		}
	})
	return d.closeErr
}

// teardown removes whatever was built, in reverse order.
func (d *Daemon) teardown() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.closing.Store(true)
	if d.ctl != nil {
		if err := d.ctl.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("control API shutdown: %w", err))
		}
		// Shutdown does nothing if Serve has not started yet; closing the
		// listener ends Serve in every case.
		d.ctlLn.Close()
		<-d.ctlDone
		if err := os.Remove(d.ctlPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove control socket: %w", err))
		}
	}
	if d.metrics != nil {
		if err := d.metrics.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics shutdown: %w", err))
		}
		<-d.metDone
	}
	if d.mtuSub != nil {
		d.mtuSub.Close()
		<-d.mtuDone
	}
	if d.nic != nil {
		if err := d.nic.Close(); err != nil {
			errs = append(errs, err)
		}
		if d.nicDone != nil {
			<-d.nicDone
		}
	}
	if d.hostMem != nil {
		d.hostMem.Close()
	}
	if d.cable != nil {
		d.cable.release()
	}
	if d.table != nil {
		d.table.Close() // deletes every SA: keys zeroed, final state recorded
	}
	if d.ledger != nil {
		if err := d.ledger.Close(); err != nil {
			errs = append(errs, fmt.Errorf("state directory: %w", err))
		}
	}
	if d.cancel != nil {
		d.cancel()
	}
	return errors.Join(errs...)
}

// Table returns the SA table.
func (d *Daemon) Table() *sadb.Table { return d.table }

// Caps returns the capabilities manager.
func (d *Daemon) Caps() *capabilities.Manager { return d.caps }

// NIC returns the NIC.
func (d *Daemon) NIC() *nic.NIC { return d.nic }

// HostName returns the host port's name (the TUN interface name).
func (d *Daemon) HostName() string { return d.host.Name() }

// HostMTU returns the host port's MTU now.
func (d *Daemon) HostMTU() int { return d.host.MTU() }

// HostPeer returns the test side of a memory host port: what the "host"
// writes into the NIC and reads from it. It is nil for a TUN host port.
func (d *Daemon) HostPeer() *tun.MemPort { return d.hostMem }

// ControlSocket returns the control socket's path, or "" if the control
// API is disabled.
func (d *Daemon) ControlSocket() string { return d.ctlPath }

// MetricsAddr returns the metrics endpoint's address, or nil.
func (d *Daemon) MetricsAddr() net.Addr { return d.metAddr }

// levelHandler filters records below a level that can change at run time.
type levelHandler struct {
	h     slog.Handler
	level *slog.LevelVar
}

func (l *levelHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.level.Level() && l.h.Enabled(ctx, lv)
}

func (l *levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }

func (l *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{h: l.h.WithAttrs(as), level: l.level}
}

func (l *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{h: l.h.WithGroup(name), level: l.level}
}

// udpRoom returns the largest payload one UDP datagram to peer carries
// without fragmentation: the MTU of the route towards it (the route's own
// MTU metric, else its interface's) minus the IP and UDP headers.
func udpRoom(netnsPath string, peer netip.Addr) (int, error) {
	h, err := netns.Handle(netnsPath)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	routes, err := h.RouteGet(net.IP(peer.Unmap().AsSlice()))
	if err != nil {
		return 0, err
	}
	if len(routes) == 0 {
		return 0, errors.New("no route")
	}
	mtu := routes[0].MTU
	if mtu == 0 {
		l, err := h.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return 0, err
		}
		mtu = l.Attrs().MTU
	}
	hdr := 28
	if peer.Unmap().Is6() {
		hdr = 48
	}
	return mtu - hdr, nil
}
