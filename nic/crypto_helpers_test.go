package nic

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/driver/hoststack"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// cside is one crypto-offload NIC with a host stack on its driver socket
// and the test's end (tap) of its wire port.
type cside struct {
	nic   *NIC
	table *sadb.Table
	port  *driver.Port
	conn  *driver.Conn
	st    *hoststack.Stack
	tap   *tun.MemPort
}

// newCSide builds and runs a crypto-offload NIC whose stack uses enc.
func newCSide(t testing.TB, enc driver.Encoding, wireMTU int) *cside {
	t.Helper()
	caps, err := capabilities.NewManagerFromConfig(capabilities.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := caps.SetOffloadMode(capabilities.OffloadCrypto); err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	if wireMTU == 0 {
		wireMTU = 1500
	}
	wire, tap := tun.NewMemPairConfig(tun.MemConfig{Batch: 64, MTU: wireMTU, Depth: 4096})
	path := filepath.Join(t.TempDir(), "driver.sock")
	port, err := driver.Listen(path, driver.PortConfig{MTU: wireMTU, Batch: 64, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{Offload: OffloadCrypto}, tb, port, wire, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	conn, err := driver.Dial(path, enc, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Wait until the NIC has taken the stack (the handshake is answered
	// before the port publishes the connection).
	for deadline := time.Now().Add(10 * time.Second); port.Encoding() != enc; {
		if time.Now().After(deadline) {
			t.Fatal("the NIC did not take the host stack")
		}
		time.Sleep(time.Millisecond)
	}
	return &cside{nic: n, table: tb, port: port, conn: conn, st: hoststack.New(conn), tap: tap}
}

// addBundle adds spec to the NIC's table and tells the stack about it.
func (c *cside) addBundle(t testing.TB, spec saspec.BundleSpec) *hoststack.Bundle {
	t.Helper()
	h, err := c.table.Add(spec)
	if err != nil {
		t.Fatalf("add %s: %v", spec.Name, err)
	}
	bc := hoststack.BundleConfig{Handle: uint64(h), In: spec.Dir == "in", Tunnel: spec.Mode == "tunnel", ESN: spec.ESN}
	if bc.Tunnel {
		bc.Src, bc.Dst = netip.MustParseAddr(spec.Src), netip.MustParseAddr(spec.Dst)
	}
	if spec.ReplayWindow != nil {
		bc.ReplayWindow = *spec.ReplayWindow
	}
	if e := spec.ESP; e != nil {
		bc.ESP = &hoststack.SAConfig{SPI: uint32(e.SPI), Enc: e.Enc, Auth: e.Auth, ICVLen: e.ICVLen}
	}
	if a := spec.AH; a != nil {
		bc.AH = &hoststack.SAConfig{SPI: uint32(a.SPI), Auth: a.Auth}
	}
	b, err := c.st.AddBundle(bc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recv reads n deliveries from the stack (watchdog 20s).
func (c *cside) recv(t testing.TB, n int) []hoststack.Delivery {
	t.Helper()
	var out []hoststack.Delivery
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(out) < n {
		ds, err := c.st.Recv(n - len(out))
		if err != nil {
			t.Fatalf("receiving %d deliveries: got %d, then %v", n, len(out), err)
		}
		out = append(out, ds...)
	}
	return out
}

// layer describes one bundle of a scenario between stack A and stack B.
type layer struct {
	mode string // "transport" or "tunnel"
	alg  alg    // ESP algorithm; enc "" for AH only
	ah   string // AH integrity, or ""
	esn  bool   // 64-bit sequence numbers, starting at high half 7
}

func (l layer) spec(name, dir string, src, dst netip.Addr, spi uint32, seed byte) saspec.BundleSpec {
	b := saspec.BundleSpec{Name: name, Dir: dir, Mode: l.mode, Src: src.String(), Dst: dst.String(), ESN: l.esn}
	if l.esn {
		b.SeqHigh = 7
	}
	if l.alg.enc != "" {
		b.ESP = espSpec(l.alg, spi, seed)
	}
	if l.ah != "" {
		b.AH = ahSpec(l.ah, spi+1, seed+50)
	}
	return b
}

// pairAB is two crypto NICs; A's stack protects traffic to B with the
// outbound bundles outA (transport first, then tunnel), B's stack
// expects it through inB.
type pairAB struct {
	a, b       *cside
	outA, inB  []*hoststack.Bundle
	hostA      netip.Addr
	hostB      netip.Addr
	tunA, tunB netip.Addr
}

// newPair builds the pair for layers (one bundle, or transport over
// tunnel: the transport layer then the tunnel layer). v6 chooses the
// family of the inner and outer addresses.
func newPair(t testing.TB, encA, encB driver.Encoding, v6 bool, layers ...layer) *pairAB {
	t.Helper()
	p := &pairAB{a: newCSide(t, encA, 0), b: newCSide(t, encB, 0)}
	p.tunA, p.tunB = out4A, out4B
	p.hostA, p.hostB = in4A, in4B
	if v6 {
		p.tunA, p.tunB = out6A, out6B
		p.hostA, p.hostB = in6A, in6B
	}
	hasTunnel := false
	for _, l := range layers {
		hasTunnel = hasTunnel || l.mode == "tunnel"
	}
	if !hasTunnel {
		p.hostA, p.hostB = p.tunA, p.tunB
	}
	for i, l := range layers {
		src, dst := p.tunA, p.tunB
		if l.mode == "transport" {
			src, dst = p.hostA, p.hostB
		}
		spi := uint32(0x1000 + 0x100*i)
		name := []string{"l0", "l1"}[i]
		p.outA = append(p.outA, p.a.addBundle(t, l.spec(name, "out", src, dst, spi, byte(10*i+1))))
		p.inB = append(p.inB, p.b.addBundle(t, l.spec(name, "in", src, dst, spi, byte(10*i+1))))
	}
	all := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	p.a.st.AddPolicy(hoststack.Policy{Src: all(p.hostA), Dst: all(p.hostB), Action: hoststack.Protect, Bundles: p.outA})
	p.b.st.AddPolicy(hoststack.Policy{In: true, Src: all(p.hostA), Dst: all(p.hostB), Action: hoststack.Protect, Bundles: p.inB})
	return p
}

// carry moves n packets from A's wire to B's wire and returns them.
func (p *pairAB) carry(t testing.TB, n int) [][]byte {
	t.Helper()
	pkts := readN(t, p.a.tap, n)
	write(t, p.b.tap, pkts...)
	return pkts
}

const watchdog = 20 * time.Second

var timeNow = time.Now

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func saHandle(b *hoststack.Bundle) sa.Handle { return sa.Handle(b.Handle()) }

// waitStats polls n's crypto counters until ok (watchdog, not a timing check).
func waitStats(t testing.TB, n *NIC, ok func(CryptoStats) bool) CryptoStats {
	t.Helper()
	deadline := time.Now().Add(watchdog)
	for {
		st := n.CryptoStats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never got there: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}
