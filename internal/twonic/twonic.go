//go:build linux

// Package twonic puts two secnic NICs back to back for the demo and the
// end-to-end tests: two network namespaces joined by a veth pair
// (internal/netlab), a secnic daemon in each (in-process, its TUN device
// and wire port inside its namespace), SAs with fresh random keys between
// them, and traffic helpers (ping, a TCP transfer checked with SHA-256,
// raw packet injection on the underlay).
//
// Addresses, all inside the namespaces the package creates:
//
//	underlay (veth)      A 192.168.200.1/24  fd00:200:ffff::1/64    B .2 / ::2
//	tunnel mode, TUN     A 10.200.1.1/24     fd00:200:1::1/64       B 10.200.2.1/24  fd00:200:2::1/64
//	transport mode, TUN  A 10.200.0.1/24     fd00:200::1/64         B 10.200.0.2/24  fd00:200::2/64
package twonic

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/saspec"
)

// Protocols of a scenario.
const (
	ESP   = "esp"
	AH    = "ah"
	AHESP = "ah+esp"
)

// Scenario describes the SAs and ports of a two-NIC set-up. The zero
// value is the demo's: an ESP AES-GCM-128 tunnel over IPv4 on a link wire
// port (real ESP on the veth).
type Scenario struct {
	// Mode is "tunnel" (default) or "transport".
	Mode string
	// Proto is ESP (default), AH or AHESP.
	Proto string
	// Enc is the ESP encryption algorithm (default aes-gcm-128); Auth the
	// ESP integrity algorithm for non-AEAD encryption, and the AH
	// algorithm (default hmac-sha256-128).
	Enc, Auth string
	// Outer6 makes the tunnel endpoints IPv6 (tunnel mode).
	Outer6 bool
	// Wire is "link" (default: real packets on the veth) or "udp" (a UDP
	// cable between the veth addresses).
	Wire string
	// UDPEncap wraps ESP in UDP (RFC 3948, port 4500).
	UDPEncap bool
	// ESN enables extended sequence numbers.
	ESN bool
	// HostMTU fixes the TUN MTU (0 = auto).
	HostMTU int
	// DefaultOut and DefaultIn are the NICs' default policies.
	DefaultOut, DefaultIn string
	// Extra adds policies to both sides (e.g. bypass or discard rules);
	// side is "a" or "b".
	Extra func(side string) []saspec.PolicySpec
	// Profile is the capabilities profile (default full).
	Profile string
	// CaptureDir, if set, makes both NICs write pcap captures there
	// (a-host.pcap, a-wire.pcap, b-host.pcap, b-wire.pcap).
	CaptureDir string
	// SocketDir, if set, gives both daemons control sockets there
	// (a.sock, b.sock); otherwise the control API is off.
	SocketDir string
	// LogLevel for both daemons (default info).
	LogLevel string
}

func (s Scenario) mode() string  { return or(s.Mode, "tunnel") }
func (s Scenario) proto() string { return or(s.Proto, ESP) }
func (s Scenario) enc() string   { return or(s.Enc, "aes-gcm-128") }
func (s Scenario) auth() string  { return or(s.Auth, "hmac-sha256-128") }
func (s Scenario) wire() string  { return or(s.Wire, daemon.WireLink) }

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// Describe is a one-line description, e.g. "tunnel esp aes-gcm-128 over
// IPv4, link wire".
func (s Scenario) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.mode(), s.proto())
	if s.proto() != AH {
		fmt.Fprintf(&b, " %s", s.enc())
		if info, err := suite.LookupEnc(suite.Enc(s.enc())); err == nil && !info.Combined {
			fmt.Fprintf(&b, "/%s", s.auth())
		}
	}
	if s.proto() != ESP {
		fmt.Fprintf(&b, " ah %s", s.auth())
	}
	if s.mode() == "tunnel" {
		if s.Outer6 {
			b.WriteString(" over IPv6")
		} else {
			b.WriteString(" over IPv4")
		}
	}
	if s.UDPEncap {
		b.WriteString(", UDP-encapsulated")
	}
	if s.ESN {
		b.WriteString(", ESN")
	}
	fmt.Fprintf(&b, ", %s wire", s.wire())
	return b.String()
}

// Addresses of one side.
type Addresses struct {
	// Host4 and Host6 are the TUN addresses (the inner addresses).
	Host4, Host6 netip.Prefix
	// Under4 and Under6 are the veth addresses.
	Under4, Under6 netip.Addr
}

// AddressesFor returns the addresses side "a" or "b" uses in mode.
func AddressesFor(mode, side string) Addresses {
	n := 1
	if side == "b" {
		n = 2
	}
	a := Addresses{
		Under4: netip.MustParseAddr(fmt.Sprintf("192.168.200.%d", n)),
		Under6: netip.MustParseAddr(fmt.Sprintf("fd00:200:ffff::%d", n)),
	}
	if mode == "transport" {
		a.Host4 = netip.MustParsePrefix(fmt.Sprintf("10.200.0.%d/24", n))
		a.Host6 = netip.MustParsePrefix(fmt.Sprintf("fd00:200::%d/64", n))
	} else {
		a.Host4 = netip.MustParsePrefix(fmt.Sprintf("10.200.%d.1/24", n))
		a.Host6 = netip.MustParsePrefix(fmt.Sprintf("fd00:200:%d::1/64", n))
	}
	return a
}

// SPIs used by Configs: the ESP SA from a to b is SPIBase+0x100, from b
// to a SPIBase+0x200; AH SAs add 0x10; a transport-mode IPv6 bundle adds 1.
const SPIBase = 0x1000

// SPI returns the SPI of the SA of proto ("esp" or "ah") sent by side
// ("a" or "b"); v6 selects the IPv6 bundle in transport mode.
func SPI(side, proto string, v6 bool) saspec.SPI {
	spi := SPIBase + 0x100
	if side == "b" {
		spi = SPIBase + 0x200
	}
	if proto == AH {
		spi += 0x10
	}
	if v6 {
		spi++
	}
	return saspec.SPI(spi)
}

// Configs returns the two daemons' configurations for sc on pair, with
// fresh random keys (the same keys on both sides, never printed).
func Configs(sc Scenario, pair *netlab.Pair) (a, b *daemon.Config, err error) {
	if sc.proto() != ESP && sc.UDPEncap {
		return nil, nil, errors.New("twonic: UDP encapsulation is for ESP only")
	}
	a = baseConfig(sc, pair, "a")
	b = baseConfig(sc, pair, "b")
	// One bundle per direction (tunnel), or per direction and family
	// (transport: an SA protects packets of its own family).
	fams := []bool{false}
	if sc.mode() == "transport" {
		fams = []bool{false, true}
	}
	for _, v6 := range fams {
		for _, from := range []string{"a", "b"} {
			spec, err := bundle(sc, from, v6)
			if err != nil {
				return nil, nil, err
			}
			out, in := a, b
			if from == "b" {
				out, in = b, a
			}
			so := spec.Clone()
			so.Dir = "out"
			si := spec
			si.Dir = "in"
			out.SAs = append(out.SAs, so)
			in.SAs = append(in.SAs, si)
		}
	}
	for _, side := range []string{"a", "b"} {
		c := a
		if side == "b" {
			c = b
		}
		c.Policies = append(c.Policies, policies(sc, side)...)
		if sc.Extra != nil {
			c.Policies = append(c.Policies, sc.Extra(side)...)
		}
	}
	for _, c := range []*daemon.Config{a, b} {
		if err := c.Validate(); err != nil {
			return nil, nil, err
		}
	}
	return a, b, nil
}

func other(side string) string {
	if side == "a" {
		return "b"
	}
	return "a"
}

func baseConfig(sc Scenario, pair *netlab.Pair, side string) *daemon.Config {
	me, peer := AddressesFor(sc.mode(), side), AddressesFor(sc.mode(), other(side))
	ps, pp := pair.A, pair.B
	if side == "b" {
		ps, pp = pair.B, pair.A
	}
	c := &daemon.Config{
		Name:     "secnic-" + side,
		LogLevel: sc.LogLevel,
		Netns:    ps.Path,
	}
	c.Capabilities.Profile = sc.Profile
	c.Host.Name = "secnic-" + side
	c.Host.MTU = daemon.MTU(sc.HostMTU)
	c.Host.Addresses = []string{me.Host4.String(), me.Host6.String()}
	if sc.mode() == "tunnel" {
		c.Host.Routes = []daemon.RouteConfig{{Dst: peer.Host4.Masked().String()}, {Dst: peer.Host6.Masked().String()}}
	}
	switch sc.wire() {
	case daemon.WireUDP:
		c.Wire = daemon.WireConfig{Type: daemon.WireUDP,
			Local: netip.AddrPortFrom(ps.V4, 4789).String(), Peer: netip.AddrPortFrom(pp.V4, 4789).String()}
	default:
		c.Wire = daemon.WireConfig{Type: daemon.WireLink, Interface: ps.Veth}
	}
	c.DefaultPolicy = daemon.DefaultPolicy{Out: sc.DefaultOut, In: sc.DefaultIn}
	if sc.CaptureDir != "" {
		c.Capture.Host = filepath.Join(sc.CaptureDir, side+"-host.pcap")
		c.Capture.Wire = filepath.Join(sc.CaptureDir, side+"-wire.pcap")
	}
	if sc.SocketDir != "" {
		c.Control.Socket = filepath.Join(sc.SocketDir, side+".sock")
	} else {
		c.Control.Disabled = true
	}
	return c
}

// bundle returns the bundle sent by side from (Dir left empty), with
// random keys.
func bundle(sc Scenario, from string, v6 bool) (saspec.BundleSpec, error) {
	src, dst := AddressesFor(sc.mode(), from), AddressesFor(sc.mode(), other(from))
	spec := saspec.BundleSpec{
		Name: fmt.Sprintf("%s-to-%s", from, other(from)),
		Mode: sc.mode(),
		ESN:  sc.ESN,
	}
	switch {
	case sc.mode() == "transport" && v6:
		spec.Name += "-v6"
		spec.Src, spec.Dst = src.Host6.Addr().String(), dst.Host6.Addr().String()
	case sc.mode() == "transport":
		spec.Src, spec.Dst = src.Host4.Addr().String(), dst.Host4.Addr().String()
	case sc.Outer6:
		spec.Src, spec.Dst = src.Under6.String(), dst.Under6.String()
	default:
		spec.Src, spec.Dst = src.Under4.String(), dst.Under4.String()
	}
	if sc.UDPEncap {
		spec.UDPEncap = &saspec.UDPEncapSpec{}
	}
	if sc.proto() != AH {
		enc, err := suite.LookupEnc(suite.Enc(sc.enc()))
		if err != nil {
			return spec, err
		}
		s := &saspec.SASpec{SPI: SPI(from, ESP, v6), Enc: sc.enc(), EncKey: randomKey(enc.KeyLen)}
		if !enc.Combined {
			auth, err := suite.LookupAuth(suite.Auth(sc.auth()))
			if err != nil {
				return spec, err
			}
			s.Auth, s.AuthKey = sc.auth(), randomKey(auth.KeyLen)
		}
		spec.ESP = s
	}
	if sc.proto() != ESP {
		auth, err := suite.LookupAuth(suite.Auth(sc.auth()))
		if err != nil {
			return spec, err
		}
		spec.AH = &saspec.SASpec{SPI: SPI(from, AH, v6), Auth: sc.auth(), AuthKey: randomKey(auth.KeyLen)}
	}
	return spec, nil
}

func randomKey(n int) saspec.Key {
	if n == 0 {
		return saspec.Key{}
	}
	b := make([]byte, n)
	rand.Read(b)
	k := saspec.KeyOf(b)
	clear(b)
	return k
}

// policies protects everything between the two inner networks.
func policies(sc Scenario, side string) []saspec.PolicySpec {
	me, peer := AddressesFor(sc.mode(), side), AddressesFor(sc.mode(), other(side))
	outB, inB := side+"-to-"+other(side), other(side)+"-to-"+side
	var ps []saspec.PolicySpec
	for _, v6 := range []bool{false, true} {
		local, remote, fam, sfx := me.Host4.Masked(), peer.Host4.Masked(), "v4", ""
		if v6 {
			local, remote, fam = me.Host6.Masked(), peer.Host6.Masked(), "v6"
			if sc.mode() == "transport" {
				sfx = "-v6"
			}
		}
		if sc.mode() == "transport" {
			local = netip.PrefixFrom(me.Host4.Addr(), 32)
			remote = netip.PrefixFrom(peer.Host4.Addr(), 32)
			if v6 {
				local = netip.PrefixFrom(me.Host6.Addr(), 128)
				remote = netip.PrefixFrom(peer.Host6.Addr(), 128)
			}
		}
		ps = append(ps,
			saspec.PolicySpec{Name: "out-" + fam, Dir: "out", Src: local.String(), Dst: remote.String(), Action: "protect", Bundles: []saspec.Ref{saspec.Ref(outB + sfx)}},
			saspec.PolicySpec{Name: "in-" + fam, Dir: "in", Src: remote.String(), Dst: local.String(), Action: "protect", Bundles: []saspec.Ref{saspec.Ref(inB + sfx)}},
		)
	}
	return ps
}

// Lab is a running two-NIC set-up.
type Lab struct {
	Scenario Scenario
	Pair     *netlab.Pair
	A, B     *daemon.Daemon
	// StateDir holds the two daemons' state directories (A and B below
	// it); Close removes it.
	StateDir string
}

// Start builds the namespaces and starts both daemons. prefix names the
// namespaces (see netlab.PairConfig). On error everything is removed.
func Start(ctx context.Context, sc Scenario, prefix string, logger *slog.Logger) (_ *Lab, err error) {
	pair, err := netlab.NewPair(netlab.PairConfig{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	l := &Lab{Scenario: sc, Pair: pair}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	ca, cb, err := Configs(sc, pair)
	if err != nil {
		return nil, err
	}
	// Each daemon keeps its key-use ledger in a state directory of the
	// lab's own, removed with it.
	if l.StateDir, err = os.MkdirTemp("", "secnic-lab-"); err != nil {
		return nil, err
	}
	ca.StateDir, cb.StateDir = filepath.Join(l.StateDir, "a"), filepath.Join(l.StateDir, "b")
	if logger == nil {
		logger = slog.Default()
	}
	if l.A, err = daemon.Start(ctx, ca, daemon.Options{Logger: logger}); err != nil {
		return nil, fmt.Errorf("start NIC a: %w", err)
	}
	if l.B, err = daemon.Start(ctx, cb, daemon.Options{Logger: logger}); err != nil {
		return nil, fmt.Errorf("start NIC b: %w", err)
	}
	return l, nil
}

// Addr returns the inner (TUN) address of side in the lab's mode.
func (l *Lab) Addr(side string, v6 bool) netip.Addr {
	a := AddressesFor(l.Scenario.mode(), side)
	if v6 {
		return a.Host6.Addr()
	}
	return a.Host4.Addr()
}

// Side returns the namespace side ("a" or "b").
func (l *Lab) Side(side string) netlab.Side {
	if side == "b" {
		return l.Pair.B
	}
	return l.Pair.A
}

// Daemon returns side's daemon.
func (l *Lab) Daemon(side string) *daemon.Daemon {
	if side == "b" {
		return l.B
	}
	return l.A
}

// Close stops both daemons (TUN devices removed, keys zeroed) and deletes
// the namespaces. It may be called more than once.
func (l *Lab) Close() error {
	var errs []error
	for _, d := range []*daemon.Daemon{l.A, l.B} {
		if d != nil {
			errs = append(errs, d.Close())
		}
	}
	if l.Pair != nil {
		errs = append(errs, l.Pair.Close())
	}
	if l.StateDir != "" {
		errs = append(errs, os.RemoveAll(l.StateDir))
		l.StateDir = ""
	}
	return errors.Join(errs...)
}
