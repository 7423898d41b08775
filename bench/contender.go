//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/internal/twonic"
)

// Contender names, as in the JSON report.
const (
	Secnic     = "secnic"
	KernelXFRM = "kernel-xfrm"
	StrongSwan = "strongswan-libipsec"
	Plain      = "plain"
)

// Status values of a result.
const (
	StatusOK           = "ok"
	StatusUnavailable  = "unavailable"
	StatusNotInstalled = "not-installed"
	StatusFailed       = "failed"
)

// NamePrefix starts the names of every network namespace the bench
// creates (secnic-bench-<pid>-<random>-a and -b).
const NamePrefix = "secnic-bench"

// Inner addresses every contender carries traffic between: side A's
// 10.200.1.1 and side B's 10.200.2.1, inside the namespaces only. The
// underlay (the veth) is 192.168.200.1 and .2 (internal/netlab).
var (
	innerA   = netip.MustParsePrefix("10.200.1.1/24")
	innerB   = netip.MustParsePrefix("10.200.2.1/24")
	innerDev = "bench0"
)

// env is what every contender gets.
type env struct {
	opts *Options
	log  *slog.Logger
	dir  string // private working directory (0700)
	// tunnels is the SA-scale point being set up (secnic).
	tunnels int
}

// contender is one way of carrying the traffic.
type contender interface {
	name() string
	wire() string
	// check reports a status other than ok when the contender cannot run
	// here, with the reason.
	check(e *env) (status, reason string)
	// start brings the contender up on a fresh pair of namespaces.
	start(ctx context.Context, e *env) (instance, error)
}

// instance is a running contender.
type instance interface {
	path() Path
	// pids are the roots of the contender's process trees (for CPU).
	pids() []int
	// close stops the contender and removes its namespaces and files.
	close() error
}

// newPair creates the namespaces and veth of one contender instance.
func newPair() (*netlab.Pair, error) {
	return netlab.NewPair(netlab.PairConfig{Prefix: NamePrefix})
}

// addInner puts the inner address of each side on a dummy device, and
// optionally a route to the other side's inner network over the veth.
func addInner(p *netlab.Pair, route bool) error {
	for _, s := range []struct {
		side      netlab.Side
		me, peer  netip.Prefix
		peerUnder netip.Addr
	}{{p.A, innerA, innerB, p.B.V4}, {p.B, innerB, innerA, p.A.V4}} {
		h, err := netns.Handle(s.side.Path)
		if err != nil {
			return err
		}
		err = func() error {
			defer h.Close()
			// A veth pair with both ends in the namespace stands in for a
			// dummy device (not every kernel has the dummy module).
			d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: innerDev}, PeerName: innerDev + "p"}
			if err := h.LinkAdd(d); err != nil {
				return fmt.Errorf("create %s in %s: %w", innerDev, s.side.Name, err)
			}
			l, err := h.LinkByName(innerDev)
			if err != nil {
				return err
			}
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: s.me.Addr().AsSlice(), Mask: net.CIDRMask(s.me.Bits(), 32)}}); err != nil {
				return fmt.Errorf("address %s on %s: %w", s.me, innerDev, err)
			}
			if err := h.LinkSetUp(l); err != nil {
				return err
			}
			if peer, err := h.LinkByName(innerDev + "p"); err == nil {
				_ = h.LinkSetUp(peer)
			}
			if !route {
				return nil
			}
			veth, err := h.LinkByName(s.side.Veth)
			if err != nil {
				return err
			}
			dst := s.peer.Masked()
			r := &netlink.Route{LinkIndex: veth.Attrs().Index, Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
				Gw: s.peerUnder.AsSlice(), Src: s.me.Addr().AsSlice()}
			if err := h.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via %s in %s: %w", dst, s.peerUnder, s.side.Name, err)
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

func innerPath(p *netlab.Pair) Path {
	return Path{Client: p.A.Path, Server: p.B.Path, Dst: innerB.Addr()}
}

// ---------------------------------------------------------------- plain

type plain struct{}

func (plain) name() string                { return Plain }
func (plain) wire() string                { return "" }
func (plain) check(*env) (string, string) { return StatusOK, "" }
func (plain) start(_ context.Context, _ *env) (instance, error) {
	p, err := newPair()
	if err != nil {
		return nil, err
	}
	if err := addInner(p, true); err != nil {
		p.Close()
		return nil, err
	}
	return &pairInstance{pair: p}, nil
}

// pairInstance is a contender that is only namespaces (plain, kernel).
type pairInstance struct {
	pair  *netlab.Pair
	procs []*exec.Cmd
	extra func() error
}

func (i *pairInstance) path() Path { return innerPath(i.pair) }
func (i *pairInstance) pids() []int {
	var out []int
	for _, c := range i.procs {
		if c.Process != nil {
			out = append(out, c.Process.Pid)
		}
	}
	return out
}
func (i *pairInstance) close() error {
	var errs []error
	for _, c := range i.procs {
		errs = append(errs, stopProcess(c))
	}
	if i.extra != nil {
		errs = append(errs, i.extra())
	}
	errs = append(errs, i.pair.Close())
	return errors.Join(errs...)
}

// spawner starts child processes from one OS thread that never exits, so
// that their parent-death signal (SIGTERM when the bench dies, which
// Linux ties to the thread that forked) fires only when the bench itself
// goes. Goroutines that entered a namespace end their threads, which
// would otherwise kill the children with them.
var spawner = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range ch {
			f()
		}
	}()
	return ch
}()

// spawn starts cmd on the spawner thread with a parent-death signal.
func spawn(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	// A process group of its own: a Ctrl-C on the terminal reaches the
	// bench, which then stops its children in order.
	cmd.SysProcAttr.Setpgid = true
	done := make(chan error, 1)
	spawner <- func() { done <- cmd.Start() }
	return <-done
}

// stopProcess sends SIGTERM and waits up to 10s before killing.
func stopProcess(c *exec.Cmd) error {
	if c.Process == nil || c.ProcessState != nil {
		return nil
	}
	_ = c.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		_ = c.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within 10s of SIGTERM and was killed", filepath.Base(c.Path))
	}
}

// ---------------------------------------------------------------- secnic

type secnicContender struct{ wireType string }

func (s secnicContender) name() string { return Secnic }
func (s secnicContender) wire() string { return s.wireType }
func (s secnicContender) check(e *env) (string, string) {
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return StatusUnavailable, "no /dev/net/tun: load the tun module (modprobe tun)"
	}
	if _, err := suite.LookupEnc(suite.Enc(e.opts.Alg)); err != nil {
		return StatusUnavailable, err.Error()
	}
	return StatusOK, ""
}

// SecnicConfigs writes the two daemons' configuration files for a secnic
// contender on pair into dir and returns their paths. It is the one place
// the bench generates daemon configuration: every call draws fresh random
// keys (twonic.Configs), so no key is ever used by two runs.
// tunnels sizes the emulated card's SA capacity for --tunnels; cpus is
// each daemon's datapath.cpus.
func SecnicConfigs(pair *netlab.Pair, wire, alg string, tunnels, cpus int, dir string) (a, b string, err error) {
	sc := twonic.Scenario{Wire: wire, Enc: alg, SocketDir: dir, LogLevel: "warn"}
	ca, cb, err := twonic.Configs(sc, pair)
	if err != nil {
		return "", "", err
	}
	// Each daemon's key-use ledger lives in the run's own directory,
	// removed with it (the keys are fresh for every run anyway).
	ca.StateDir, cb.StateDir = filepath.Join(dir, "state-a"), filepath.Join(dir, "state-b")
	ca.Datapath.CPUs, cb.Datapath.CPUs = cpus, cpus
	if tunnels > 1 {
		capacity := uint32(2*tunnels + 16)
		ca.Capabilities.Hardware.SaOffloadCapacity = &capacity
		cb.Capabilities.Hardware.SaOffloadCapacity = &capacity
	}
	paths := [2]string{filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")}
	for i, c := range []*daemon.Config{ca, cb} {
		doc, err := json.Marshal(c)
		for j := range c.SAs {
			c.SAs[j].Wipe()
		}
		if err != nil {
			return "", "", err
		}
		werr := os.WriteFile(paths[i], doc, 0o600)
		clear(doc)
		if werr != nil {
			return "", "", fmt.Errorf("write %s: %w", paths[i], werr)
		}
	}
	return paths[0], paths[1], nil
}

type secnicInstance struct {
	pairInstance
	dir string
}

func (i *secnicInstance) path() Path {
	return Path{Client: i.pair.A.Path, Server: i.pair.B.Path, Dst: twonic.AddressesFor("tunnel", "b").Host4.Addr()}
}

func (i *secnicInstance) close() error {
	err := i.pairInstance.close()
	return errors.Join(err, os.RemoveAll(i.dir))
}

func (s secnicContender) start(ctx context.Context, e *env) (instance, error) {
	p, err := newPair()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.dir, "secnic-")
	if err != nil {
		p.Close()
		return nil, err
	}
	inst := &secnicInstance{pairInstance: pairInstance{pair: p}, dir: dir}
	fail := func(err error) (instance, error) {
		inst.close()
		return nil, err
	}
	ca, cb, err := SecnicConfigs(p, s.wireType, e.opts.Alg, e.tunnels, e.opts.daemonCPUs(), dir)
	if err != nil {
		return fail(err)
	}
	for _, cfg := range []string{ca, cb} {
		cmd, err := startDaemon(ctx, e, cfg)
		if err != nil {
			return fail(err)
		}
		inst.procs = append(inst.procs, cmd)
	}
	// The keys are in the daemons now; the files go.
	for _, f := range []string{ca, cb} {
		os.Remove(f)
	}
	return inst, nil
}

// startDaemon runs `secnic run --config cfg` and waits for its READY=1
// on a notification socket (sd_notify protocol).
func startDaemon(ctx context.Context, e *env, cfg string) (*exec.Cmd, error) {
	sock := strings.TrimSuffix(cfg, ".json") + ".notify"
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notification socket: %w", err)
	}
	defer func() { ln.Close(); os.Remove(sock) }()
	cmd := e.opts.DaemonCommand(cfg)
	logPath := strings.TrimSuffix(cfg, ".json") + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("start the secnic daemon (%s): %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() {
		buf := make([]byte, 512)
		for {
			_ = ln.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := ln.Read(buf)
			if err != nil {
				close(exited)
				return
			}
			if bytes.Contains(buf[:n], []byte("READY=1")) {
				exited <- struct{}{}
				return
			}
		}
	}()
	select {
	case _, ok := <-exited:
		if ok {
			return cmd, nil
		}
	case <-ctx.Done():
	}
	_ = stopProcess(cmd)
	out, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("the secnic daemon did not become ready within 20s: %s", lastLines(out, 5))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// ---------------------------------------------------------------- kernel XFRM

// kernelAlg maps an algorithm to the Linux crypto API: the AEAD name,
// key length in bytes (with salt) and ICV bits; or the cipher and
// integrity names.
type kernelAlg struct {
	aead             string
	crypt, auth      string
	keyLen, authLen  int
	icvBits, truncBt int
}

func kernelAlgFor(alg string) (kernelAlg, error) {
	switch alg {
	case "aes-gcm-128":
		return kernelAlg{aead: "rfc4106(gcm(aes))", keyLen: 20, icvBits: 128}, nil
	case "aes-gcm-192":
		return kernelAlg{aead: "rfc4106(gcm(aes))", keyLen: 28, icvBits: 128}, nil
	case "aes-gcm-256":
		return kernelAlg{aead: "rfc4106(gcm(aes))", keyLen: 36, icvBits: 128}, nil
	case "chacha20-poly1305":
		return kernelAlg{aead: "rfc7539esp(chacha20,poly1305)", keyLen: 36, icvBits: 128}, nil
	case "aes-cbc-128":
		return kernelAlg{crypt: "cbc(aes)", keyLen: 16, auth: "hmac(sha256)", authLen: 32, truncBt: 128}, nil
	case "aes-cbc-256":
		return kernelAlg{crypt: "cbc(aes)", keyLen: 32, auth: "hmac(sha256)", authLen: 32, truncBt: 128}, nil
	}
	return kernelAlg{}, fmt.Errorf("kernel XFRM contender: no Linux algorithm mapped for %s (use aes-gcm-128/192/256, chacha20-poly1305, aes-cbc-128 or aes-cbc-256)", alg)
}

type xfrmContender struct{}

func (xfrmContender) name() string { return KernelXFRM }
func (xfrmContender) wire() string { return "" }

// check probes the kernel: it installs an ESP state in a scratch
// namespace; a kernel without ESP answers EPROTONOSUPPORT ("Requested
// type not found").
func (xfrmContender) check(e *env) (string, string) {
	ka, err := kernelAlgFor(e.opts.Alg)
	if err != nil {
		return StatusUnavailable, err.Error()
	}
	p, err := newPair()
	if err != nil {
		return StatusFailed, err.Error()
	}
	defer p.Close()
	h, err := xfrmHandle(p.A.Path)
	if err != nil {
		return StatusUnavailable, fmt.Sprintf("no XFRM netlink: %v", err)
	}
	defer h.Close()
	st := xfrmState(p.A.V4, p.B.V4, 0x100, ka, randomBytes(ka.keyLen), randomBytes(ka.authLen))
	err = h.XfrmStateAdd(st)
	if err == nil {
		return StatusOK, ""
	}
	// Tell a kernel without ESP from one without the algorithm: a NULL
	// ESP state needs nothing but esp4, and is refused with
	// EPROTONOSUPPORT ("Requested type not found") when esp4 is absent.
	null := xfrmState(p.A.V4, p.B.V4, 0x101, kernelAlg{crypt: "ecb(cipher_null)", auth: "digest_null"}, []byte{}, []byte{})
	nerr := h.XfrmStateAdd(null)
	switch {
	case errors.Is(nerr, unix.EPROTONOSUPPORT):
		return StatusUnavailable, "this kernel has no ESP (esp4)"
	case nerr == nil:
		return StatusUnavailable, fmt.Sprintf("this kernel has ESP but refuses %s for %s (%v): its crypto API lacks the algorithm", ka.name(), e.opts.Alg, err)
	}
	return StatusUnavailable, fmt.Sprintf("this kernel refuses ESP states: %v", err)
}

func (k kernelAlg) name() string {
	if k.aead != "" {
		return k.aead
	}
	return k.crypt + " with " + k.auth
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func xfrmHandle(ns string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := netns.Do(ns, func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_XFRM)
		return err
	})
	return h, err
}

func xfrmState(src, dst netip.Addr, spi int, ka kernelAlg, key, authKey []byte) *netlink.XfrmState {
	st := &netlink.XfrmState{Src: src.AsSlice(), Dst: dst.AsSlice(), Proto: netlink.XFRM_PROTO_ESP,
		Mode: netlink.XFRM_MODE_TUNNEL, Spi: spi, Reqid: spi, ReplayWindow: 128}
	if ka.aead != "" {
		st.Aead = &netlink.XfrmStateAlgo{Name: ka.aead, Key: key, ICVLen: ka.icvBits}
	} else {
		st.Crypt = &netlink.XfrmStateAlgo{Name: ka.crypt, Key: key}
		st.Auth = &netlink.XfrmStateAlgo{Name: ka.auth, Key: authKey, TruncateLen: ka.truncBt}
	}
	return st
}

func (xfrmContender) start(_ context.Context, e *env) (instance, error) {
	ka, err := kernelAlgFor(e.opts.Alg)
	if err != nil {
		return nil, err
	}
	p, err := newPair()
	if err != nil {
		return nil, err
	}
	inst := &pairInstance{pair: p}
	if err := addInner(p, true); err != nil {
		inst.close()
		return nil, err
	}
	// Fresh keys for both directions, the same on both sides.
	keyAB, keyBA := randomBytes(ka.keyLen), randomBytes(ka.keyLen)
	authAB, authBA := randomBytes(ka.authLen), randomBytes(ka.authLen)
	defer func() { clear(keyAB); clear(keyBA); clear(authAB); clear(authBA) }()
	for _, s := range []struct {
		side       netlab.Side
		me, peer   netip.Addr
		local, rem netip.Prefix
		outSPI     int
		inSPI      int
		outK, inK  []byte
		outA, inA  []byte
	}{
		{p.A, p.A.V4, p.B.V4, innerA.Masked(), innerB.Masked(), 0x1100, 0x1200, keyAB, keyBA, authAB, authBA},
		{p.B, p.B.V4, p.A.V4, innerB.Masked(), innerA.Masked(), 0x1200, 0x1100, keyBA, keyAB, authBA, authAB},
	} {
		h, err := xfrmHandle(s.side.Path)
		if err != nil {
			inst.close()
			return nil, err
		}
		err = func() error {
			defer h.Close()
			if err := h.XfrmStateAdd(xfrmState(s.me, s.peer, s.outSPI, ka, s.outK, s.outA)); err != nil {
				return fmt.Errorf("ip xfrm state add (out) in %s: %w", s.side.Name, err)
			}
			if err := h.XfrmStateAdd(xfrmState(s.peer, s.me, s.inSPI, ka, s.inK, s.inA)); err != nil {
				return fmt.Errorf("ip xfrm state add (in) in %s: %w", s.side.Name, err)
			}
			ipn := func(p netip.Prefix) *net.IPNet {
				return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
			}
			for _, pol := range []*netlink.XfrmPolicy{
				{Src: ipn(s.local), Dst: ipn(s.rem), Dir: netlink.XFRM_DIR_OUT, Tmpls: []netlink.XfrmPolicyTmpl{
					{Src: s.me.AsSlice(), Dst: s.peer.AsSlice(), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: s.outSPI}}},
				{Src: ipn(s.rem), Dst: ipn(s.local), Dir: netlink.XFRM_DIR_IN, Tmpls: []netlink.XfrmPolicyTmpl{
					{Src: s.peer.AsSlice(), Dst: s.me.AsSlice(), Proto: netlink.XFRM_PROTO_ESP, Mode: netlink.XFRM_MODE_TUNNEL, Reqid: s.inSPI}}},
			} {
				if err := h.XfrmPolicyAdd(pol); err != nil {
					return fmt.Errorf("ip xfrm policy add in %s: %w", s.side.Name, err)
				}
			}
			return nil
		}()
		if err != nil {
			inst.close()
			return nil, err
		}
	}
	return inst, nil
}

// ---------------------------------------------------------------- strongSwan

const (
	charonPath  = "/usr/lib/ipsec/charon"
	swanctlPath = "/usr/sbin/swanctl"
	swanPkgs    = "strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins"
)

// swanPlugins are the plugins each charon loads: kernel-libipsec (ESP in
// user space over a TUN), kdf for IKEv2 key derivation, gcm/aesni/openssl
// for the ESP proposal.
var swanPlugins = []string{"random", "nonce", "aes", "aesni", "gcm", "sha1", "sha2", "hmac", "kdf", "curve25519",
	"openssl", "pem", "pubkey", "x509", "kernel-libipsec", "kernel-netlink", "socket-default", "vici", "chapoly"}

type swanContender struct{}

func (swanContender) name() string { return StrongSwan }
func (swanContender) wire() string { return "" }

func swanProposal(alg string) (string, error) {
	switch alg {
	case "aes-gcm-128":
		return "aes128gcm16", nil
	case "aes-gcm-192":
		return "aes192gcm16", nil
	case "aes-gcm-256":
		return "aes256gcm16", nil
	case "chacha20-poly1305":
		return "chacha20poly1305", nil
	case "aes-cbc-128":
		return "aes128-sha256", nil
	case "aes-cbc-256":
		return "aes256-sha256", nil
	}
	return "", fmt.Errorf("strongSwan contender: no ESP proposal mapped for %s", alg)
}

func (swanContender) check(e *env) (string, string) {
	var missing []string
	for _, f := range []string{charonPath, swanctlPath, "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
		"/usr/lib/ipsec/plugins/libstrongswan-gcm.so", "/usr/lib/ipsec/plugins/libstrongswan-kdf.so"} {
		if _, err := os.Stat(f); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return StatusNotInstalled, "not installed: apt-get install " + swanPkgs
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return StatusNotInstalled, "not installed: unshare(1): apt-get install util-linux"
	}
	if _, err := swanProposal(e.opts.Alg); err != nil {
		return StatusUnavailable, err.Error()
	}
	return StatusOK, ""
}

func (swanContender) start(ctx context.Context, e *env) (instance, error) {
	prop, err := swanProposal(e.opts.Alg)
	if err != nil {
		return nil, err
	}
	p, err := newPair()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(e.dir, "swan-")
	if err != nil {
		p.Close()
		return nil, err
	}
	inst := &pairInstance{pair: p, extra: func() error { return os.RemoveAll(dir) }}
	fail := func(err error) (instance, error) {
		inst.close()
		return nil, err
	}
	if err := addInner(p, false); err != nil {
		return fail(err)
	}
	psk := hex.EncodeToString(randomBytes(32)) // fresh for every run
	type side struct {
		ns           netlab.Side
		id, peerID   string
		me, peer     netip.Addr
		local, peer2 netip.Prefix
	}
	sides := []side{
		{p.A, "bench-a", "bench-b", p.A.V4, p.B.V4, innerA.Masked(), innerB.Masked()},
		{p.B, "bench-b", "bench-a", p.B.V4, p.A.V4, innerB.Masked(), innerA.Masked()},
	}
	var socks []string
	for _, s := range sides {
		sdir := filepath.Join(dir, s.id)
		if err := os.Mkdir(sdir, 0o700); err != nil {
			return fail(err)
		}
		sock := filepath.Join(sdir, "charon.vici")
		conf := fmt.Sprintf(`charon {
  load_modular = no
  load = %s
  port = 500
  port_nat_t = 4500
  install_virtual_ip = no
  retransmit_tries = 3
  filelog {
    log {
      path = %s
      default = 1
      time_format = %%b %%e %%T
    }
  }
  plugins {
    vici {
      socket = unix://%s
    }
  }
}
`, strings.Join(swanPlugins, " "), filepath.Join(sdir, "charon.log"), sock)
		if err := os.WriteFile(filepath.Join(sdir, "strongswan.conf"), []byte(conf), 0o600); err != nil {
			return fail(err)
		}
		swan := fmt.Sprintf(`connections {
  bench {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-curve25519
    encap = no
    local {
      auth = psk
      id = %s
    }
    remote {
      auth = psk
      id = %s
    }
    children {
      bench {
        local_ts = %s
        remote_ts = %s
        esp_proposals = %s
        mode = tunnel
        replay_window = 128
      }
    }
  }
}
secrets {
  ike-bench {
    id-1 = bench-a
    id-2 = bench-b
    secret = 0x%s
  }
}
`, s.me, s.peer, s.id, s.peerID, s.local, s.peer2, prop, psk)
		if err := os.WriteFile(filepath.Join(sdir, "swanctl.conf"), []byte(swan), 0o600); err != nil {
			return fail(err)
		}
		// Each charon gets its own mount namespace with a tmpfs on /run
		// (pid file, default sockets) inside its network namespace.
		cmd := exec.Command("ip", "netns", "exec", s.ns.Name, "unshare", "-m", "--propagation", "private", "sh", "-c",
			"mount -t tmpfs tmpfs /run && exec "+charonPath)
		cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+filepath.Join(sdir, "strongswan.conf"))
		logf, err := os.Create(filepath.Join(sdir, "charon.out"))
		if err != nil {
			return fail(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		err = spawn(cmd)
		logf.Close()
		if err != nil {
			return fail(fmt.Errorf("start charon: %w", err))
		}
		inst.procs = append(inst.procs, cmd)
		socks = append(socks, sock)
	}
	swanctl := func(i int, args ...string) error {
		sdir := filepath.Join(dir, sides[i].id)
		args = append(args, "--uri", "unix://"+socks[i])
		c := exec.CommandContext(ctx, swanctlPath, args...)
		c.Dir = sdir
		out, err := c.CombinedOutput()
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(sdir, "charon.log"))
			return fmt.Errorf("swanctl %s in %s: %w: %s; charon: %s", args[0], sides[i].ns.Name, err, lastLines(out, 3), lastLines(log, 4))
		}
		return nil
	}
	for i := range sides {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(socks[i]); err == nil {
				break
			}
			if time.Now().After(deadline) {
				out, _ := os.ReadFile(filepath.Join(dir, sides[i].id, "charon.out"))
				return fail(fmt.Errorf("charon in %s did not open its vici socket within 10s: %s", sides[i].ns.Name, lastLines(out, 4)))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := swanctl(i, "--load-all", "--noprompt", "--file", filepath.Join(dir, sides[i].id, "swanctl.conf")); err != nil {
			return fail(err)
		}
	}
	if err := swanctl(0, "--initiate", "--child", "bench", "--timeout", "15"); err != nil {
		return fail(err)
	}
	// kernel-libipsec installs the route through its TUN (ipsec0)
	// asynchronously; wait until the inner address answers a TCP probe.
	if err := waitReachable(ctx, innerPath(p), 10*time.Second); err != nil {
		return fail(fmt.Errorf("strongSwan tunnel up but %s not reachable: %w", innerB.Addr(), err))
	}
	return inst, nil
}

// waitReachable waits until a TCP connection to a listener on p.Dst
// succeeds from p.Client.
func waitReachable(ctx context.Context, p Path, d time.Duration) error {
	ln, err := listenTCP(p.Server, p.Dst)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	deadline := time.Now().Add(d)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := dialTCP(cctx, p.Client, ln.Addr().String())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
