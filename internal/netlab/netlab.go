//go:build linux

// Package netlab builds small throw-away network topologies out of Linux
// network namespaces for the demo and the end-to-end tests: two named
// namespaces joined by a veth pair, each with the loopback up and an
// underlay address of both families on its veth end. Everything is done
// through netlink (vishvananda/netlink, vishvananda/netns), never by
// running ip(8), and everything it creates is removed by Close.
package netlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	secnetns "github.com/secnic/secnic/internal/netns"
)

// NetnsDir is where named network namespaces are mounted (as by
// `ip netns add`).
const NetnsDir = "/run/netns"

// NewNamespace creates a named network namespace (mounted at
// /run/netns/NAME) with its loopback up, and returns its path.
func NewNamespace(name string) (string, error) {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // exits locked: NewNamed moves this thread
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		if errors.Is(err, unix.EPERM) {
			return "", fmt.Errorf("create network namespace %s: %w (run as root)", name, err)
		}
		return "", fmt.Errorf("create network namespace %s: %w", name, err)
	}
	path := filepath.Join(NetnsDir, name)
	h, err := secnetns.Handle(path)
	if err == nil {
		var lo netlink.Link
		if lo, err = h.LinkByName("lo"); err == nil {
			err = h.LinkSetUp(lo)
		}
		h.Close()
	}
	if err != nil {
		_ = netns.DeleteNamed(name)
		return "", fmt.Errorf("bring up lo in %s: %w", name, err)
	}
	return path, nil
}

// DeleteNamespace removes a named namespace; the interfaces inside it go
// with it. A namespace that does not exist is not an error.
func DeleteNamespace(name string) error {
	if _, err := os.Stat(filepath.Join(NetnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete network namespace %s: %w", name, err)
	}
	return nil
}

// Side is one end of a Pair.
type Side struct {
	// Name is the namespace's name, Path its /run/netns path.
	Name, Path string
	// Veth is the name of this side's veth interface.
	Veth string
	// V4 and V6 are the underlay addresses on Veth (/24 and /64).
	V4, V6 netip.Addr
}

// Pair is two namespaces, A and B, joined by a veth pair.
type Pair struct {
	A, B Side
}

// PairConfig chooses names and addresses for NewPair.
type PairConfig struct {
	// Prefix starts both namespace names (default "secnic-lab"); the
	// names are PREFIX-<pid>-<random>-a and -b, so that StaleNamespaces
	// can tell which belong to processes that are gone.
	Prefix string
	// V4A, V4B, V6A and V6B are the underlay addresses (defaults
	// 192.168.200.1/.2 and fd00:200:ffff::1/::2).
	V4A, V4B, V6A, V6B netip.Addr
	// MTU of the veth pair (default 1500).
	MTU int
}

// NewPair creates two namespaces joined by a veth pair, with the underlay
// addresses of both families on the veth ends and every link up. On error
// it removes whatever it created.
func NewPair(cfg PairConfig) (_ *Pair, err error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "secnic-lab"
	}
	def := func(a *netip.Addr, s string) {
		if !a.IsValid() {
			*a = netip.MustParseAddr(s)
		}
	}
	def(&cfg.V4A, "192.168.200.1")
	def(&cfg.V4B, "192.168.200.2")
	def(&cfg.V6A, "fd00:200:ffff::1")
	def(&cfg.V6B, "fd00:200:ffff::2")
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	sfx := fmt.Sprintf("%d-%06x", os.Getpid(), rand.Uint32()&0xffffff)
	vsfx := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	p := &Pair{
		A: Side{Name: cfg.Prefix + "-" + sfx + "-a", Veth: "sla" + vsfx, V4: cfg.V4A, V6: cfg.V6A},
		B: Side{Name: cfg.Prefix + "-" + sfx + "-b", Veth: "slb" + vsfx, V4: cfg.V4B, V6: cfg.V6B},
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.A.Path, err = NewNamespace(p.A.Name); err != nil {
		return nil, err
	}
	if p.B.Path, err = NewNamespace(p.B.Name); err != nil {
		return nil, err
	}
	ha, err := secnetns.Handle(p.A.Path)
	if err != nil {
		return nil, err
	}
	defer ha.Close()
	hb, err := secnetns.Handle(p.B.Path)
	if err != nil {
		return nil, err
	}
	defer hb.Close()
	nsB, err := netns.GetFromPath(p.B.Path)
	if err != nil {
		return nil, err
	}
	defer nsB.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.A.Veth, MTU: cfg.MTU}, PeerName: p.B.Veth, PeerNamespace: netlink.NsFd(int(nsB))}
	if err := ha.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth pair %s/%s: %w", p.A.Veth, p.B.Veth, err)
	}
	for _, s := range []struct {
		h    *netlink.Handle
		side *Side
	}{{ha, &p.A}, {hb, &p.B}} {
		l, err := s.h.LinkByName(s.side.Veth)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", s.side.Veth, err)
		}
		if err := s.h.LinkSetMTU(l, cfg.MTU); err != nil {
			return nil, fmt.Errorf("set MTU of %s: %w", s.side.Veth, err)
		}
		for _, a := range []*netlink.Addr{
			{IPNet: &net.IPNet{IP: s.side.V4.AsSlice(), Mask: net.CIDRMask(24, 32)}},
			{IPNet: &net.IPNet{IP: s.side.V6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD},
		} {
			if err := s.h.AddrAdd(l, a); err != nil {
				return nil, fmt.Errorf("add %v to %s: %w", a.IPNet, s.side.Veth, err)
			}
		}
		if err := s.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bring %s up: %w", s.side.Veth, err)
		}
	}
	// Wait until both ends have carrier and the IPv6 addresses are usable.
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range []struct {
		h    *netlink.Handle
		side *Side
	}{{ha, &p.A}, {hb, &p.B}} {
		for {
			l, err := s.h.LinkByName(s.side.Veth)
			if err == nil && l.Attrs().OperState == netlink.OperUp && addrReady(s.h, l, s.side.V6) {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%s did not come up within 10s", s.side.Veth)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return p, nil
}

// addrReady reports whether a is on l and no longer tentative.
func addrReady(h *netlink.Handle, l netlink.Link, a netip.Addr) bool {
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(l, fam)
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if xa, ok := netip.AddrFromSlice(x.IP); ok && xa.Unmap() == a {
			return x.Flags&unix.IFA_F_TENTATIVE == 0
		}
	}
	return false
}

// Close deletes both namespaces (and so the veth pair). It may be called
// more than once.
func (p *Pair) Close() error {
	var errs []error
	for _, s := range []*Side{&p.A, &p.B} {
		if s.Name != "" {
			errs = append(errs, DeleteNamespace(s.Name))
		}
	}
	return errors.Join(errs...)
}

// StaleNamespaces lists the namespaces named PREFIX-<pid>-... whose
// creating process no longer runs: leftovers of a run that was killed
// before it could clean up.
func StaleNamespaces(prefix string) []string {
	ents, err := os.ReadDir(NetnsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
			out = append(out, e.Name())
		}
	}
	return out
}
