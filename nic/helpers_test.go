package nic

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// testWorkers is the worker count of the NICs build makes: the
// SECNIC_TEST_WORKERS environment variable (run the package's tests with
// several workers: SECNIC_TEST_WORKERS=3 go test ./nic), else 1.
func testWorkers(t testing.TB) int {
	v := os.Getenv("SECNIC_TEST_WORKERS")
	if v == "" {
		return 1
	}
	w, err := strconv.Atoi(v)
	if err != nil || w < 1 {
		t.Fatalf("SECNIC_TEST_WORKERS=%q: give a number of workers >= 1", v)
	}
	return w
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Addresses used by the tests. Side A's inner network is 10.1/16 (fd00:1::/48),
// side B's 10.2/16 (fd00:2::/48); the outer (tunnel) endpoints and the
// transport-mode hosts are 192.0.2.1/2 (2001:db8::1/2).
// (packettest's addresses).
var (
	in4A, in4B, in6A, in6B     = packettest.HostA4, packettest.HostB4, packettest.HostA6, packettest.HostB6
	out4A, out4B, out6A, out6B = packettest.EndA4, packettest.EndB4, packettest.EndA6, packettest.EndB6
)

// alg is an algorithm combination.
type alg struct {
	name      string
	enc, auth string
	icv       int
}

var (
	algGCM    = alg{name: "aes-gcm-128", enc: "aes-gcm-128"}
	algCBC    = alg{name: "aes-cbc-128+hmac-sha256-128", enc: "aes-cbc-128", auth: "hmac-sha256-128"}
	algChaCha = alg{name: "chacha20-poly1305", enc: "chacha20-poly1305"}
	algNull   = alg{name: "null+hmac-sha256-128", enc: "null", auth: "hmac-sha256-128"}
)

func keyOf(n int, seed byte) saspec.Key {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return saspec.KeyOf(b)
}

func espSpec(a alg, spi uint32, seed byte) *saspec.SASpec {
	s := &saspec.SASpec{SPI: saspec.SPI(spi), Enc: a.enc, Auth: a.auth, ICVLen: a.icv}
	e, err := suite.LookupEnc(suite.Enc(a.enc))
	if err != nil {
		panic(err)
	}
	s.EncKey = keyOf(e.KeyLen, seed)
	if a.auth != "" && a.auth != "none" {
		ai, err := suite.LookupAuth(suite.Auth(a.auth))
		if err != nil {
			panic(err)
		}
		s.AuthKey = keyOf(ai.KeyLen, seed+100)
	}
	return s
}

func ahSpec(auth string, spi uint32, seed byte) *saspec.SASpec {
	ai, err := suite.LookupAuth(suite.Auth(auth))
	if err != nil {
		panic(err)
	}
	return &saspec.SASpec{SPI: saspec.SPI(spi), Auth: auth, AuthKey: keyOf(ai.KeyLen, seed)}
}

// topo describes a pair of NICs, A and B, protecting the traffic between
// their inner networks.
type topo struct {
	mode   string // "tunnel" or "transport"
	v6     bool   // inner family (and outer, unless outer6 says otherwise)
	outer6 *bool
	alg    alg
	ah     string // AH integrity: with alg.enc == "" an AH-only bundle, else AH+ESP
	encap  bool
	// wireMTU of both NICs (default 1500); host MTU of the memory ports is 9000.
	wireMTU int
	// defaults for unmatched traffic
	defOut, defIn saspec.Action
	// extra policies per side
	extraA, extraB []saspec.PolicySpec
	// inbound selector of A's protect policy (default: B's network)
	inSrcA string
	cfg    Config
	// direct connects the two wire ports to each other (no taps).
	direct bool
	// wires, if set, gives the two wire ports (no taps).
	wires func(t testing.TB) (a, b tun.Port)
}

func (tp topo) outerV6() bool {
	if tp.outer6 != nil {
		return *tp.outer6
	}
	return tp.v6
}

// hosts returns the inner hosts of A and B (the traffic endpoints).
func (tp topo) hosts() (a, b netip.Addr) {
	if tp.mode == "transport" {
		return tp.ends()
	}
	if tp.v6 {
		return in6A, in6B
	}
	return in4A, in4B
}

// ends returns the outer endpoints.
func (tp topo) ends() (a, b netip.Addr) {
	if tp.outerV6() {
		return out6A, out6B
	}
	return out4A, out4B
}

func (tp topo) nets() (a, b string) {
	if tp.mode == "transport" {
		x, y := tp.ends()
		return x.String(), y.String()
	}
	if tp.v6 {
		return "fd00:1::/48", "fd00:2::/48"
	}
	return "10.1.0.0/16", "10.2.0.0/16"
}

func (tp topo) bundle(name, dir string, src, dst netip.Addr, spiBase uint32, seed byte) saspec.BundleSpec {
	b := saspec.BundleSpec{Name: name, Dir: dir, Mode: tp.mode, Src: src.String(), Dst: dst.String(), Offload: "packet"}
	if tp.alg.enc != "" {
		b.ESP = espSpec(tp.alg, spiBase, seed)
	}
	if tp.ah != "" {
		b.AH = ahSpec(tp.ah, spiBase+1, seed+50)
	}
	if tp.encap {
		b.UDPEncap = &saspec.UDPEncapSpec{}
	}
	return b
}

// side is one NIC under test with the test's ends of its ports.
type side struct {
	nic   *NIC
	table *sadb.Table
	app   *tun.MemPort // the host stack's end of the host port
	tap   *tun.MemPort // the far end of the wire port
}

// build returns NIC A and NIC B, each with its own wire pair whose far end
// the test holds (tap), so it can forward, drop, replay or tamper. The NICs
// are not running: use step* for synchronous processing or run for Run.
func build(t testing.TB, tp topo) (a, b *side) {
	t.Helper()
	if tp.mode == "" {
		tp.mode = "tunnel"
	}
	ea, eb := tp.ends()
	na, nb := tp.nets()
	wmtu := tp.wireMTU
	if wmtu == 0 {
		wmtu = 1500
	}
	wcfg := tun.MemConfig{Batch: 64, MTU: wmtu, Depth: 4096}
	var wireA, wireB tun.Port
	var tapA, tapB *tun.MemPort
	switch {
	case tp.wires != nil:
		wireA, wireB = tp.wires(t)
	case tp.direct:
		wireA, wireB = tun.NewMemPairConfig(wcfg)
	default:
		wireA, tapA = tun.NewMemPairConfig(wcfg)
		wireB, tapB = tun.NewMemPairConfig(wcfg)
	}
	mk := func(me, peer netip.Addr, myNet, peerNet string, outSPI, inSPI uint32, outSeed, inSeed byte, extra []saspec.PolicySpec, inSrc string, wire tun.Port, tap *tun.MemPort) *side {
		tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Add(tp.bundle("out", "out", me, peer, outSPI, outSeed)); err != nil {
			t.Fatalf("add out bundle: %v", err)
		}
		if _, err := tb.Add(tp.bundle("in", "in", peer, me, inSPI, inSeed)); err != nil {
			t.Fatalf("add in bundle: %v", err)
		}
		if inSrc == "" {
			inSrc = peerNet
		}
		pols := []saspec.PolicySpec{
			{Name: "out", Dir: "out", Src: myNet, Dst: peerNet, Action: "protect", Bundles: []saspec.Ref{"out"}, Priority: 100},
			{Name: "in", Dir: "in", Src: inSrc, Dst: myNet, Action: "protect", Bundles: []saspec.Ref{"in"}, Priority: 100},
		}
		for _, p := range append(pols, extra...) {
			if _, err := tb.AddPolicy(p); err != nil {
				t.Fatalf("add policy %v: %v", p, err)
			}
		}
		host, app := tun.NewMemPairConfig(tun.MemConfig{Batch: 64, MTU: 9000, Depth: 4096})
		cfg := tp.cfg
		if cfg.Workers == 0 {
			cfg.Workers = testWorkers(t)
		}
		cfg.DefaultOut, cfg.DefaultIn = tp.defOut, tp.defIn
		n, err := New(cfg, tb, host, wire, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return &side{nic: n, table: tb, app: app, tap: tap}
	}
	a = mk(ea, eb, na, nb, 0x1000, 0x2000, 1, 2, tp.extraA, tp.inSrcA, wireA, tapA)
	b = mk(eb, ea, nb, na, 0x2000, 0x1000, 2, 1, tp.extraB, "", wireB, tapB)
	return a, b
}

// stepTX runs packets from the host through the transmit path as one batch
// and returns what reached the wire and what came back to the host.
func (s *side) stepTX(t testing.TB, pkts ...[]byte) (wire, host [][]byte) {
	t.Helper()
	n := s.nic
	tx := n.txs
	snap := n.table.Snapshot()
	bufs := stepBufs(tx.batch, n.host.MTU())
	for len(pkts) > 0 {
		cnt := min(len(pkts), len(bufs))
		for i := range cnt {
			p := bufs[i]
			p.Reset()
			if err := p.SetBytes(pkts[i]); err != nil {
				t.Fatal(err)
			}
			n.transmit(tx, snap, p)
		}
		if err := n.flushTX(tx); err != nil {
			t.Fatal(err)
		}
		pkts = pkts[cnt:]
	}
	return drain(t, s.tap), drain(t, s.app)
}

// stepRX runs packets from the wire through the receive path as one batch
// and returns what reached the host.
func (s *side) stepRX(t testing.TB, pkts ...[]byte) [][]byte {
	t.Helper()
	n := s.nic
	rx := n.rxs
	snap := n.table.Snapshot()
	bufs := stepBufs(rx.batch, max(n.wire.MTU(), n.wireMTU))
	for len(pkts) > 0 {
		cnt := min(len(pkts), len(bufs))
		rx.now = 0
		for i := range cnt {
			p := bufs[i]
			p.Reset()
			if err := p.SetBytes(pkts[i]); err != nil {
				t.Fatal(err)
			}
			n.receive(rx, snap, p)
		}
		if err := n.flushRX(rx); err != nil {
			t.Fatal(err)
		}
		pkts = pkts[cnt:]
	}
	return drain(t, s.app)
}

// stepBufs makes the buffers of one stepTX or stepRX, as the loops' readers
// would.
func stepBufs(n, size int) []*packet.Buf {
	bufs := make([]*packet.Buf, n)
	for i := range bufs {
		bufs[i] = packet.NewBuf(size)
	}
	return bufs
}

// drain reads every packet queued at p without blocking.
func drain(t testing.TB, p *tun.MemPort) [][]byte {
	t.Helper()
	var out [][]byte
	bufs := make([][]byte, p.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, p.MTU())
	}
	sizes := make([]int, len(bufs))
	for p.Queued() > 0 {
		n, err := p.Read(bufs, sizes, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			out = append(out, bytes.Clone(bufs[i][:sizes[i]]))
		}
	}
	return out
}

// readN reads exactly n packets from p, failing after a generous timeout
// (a watchdog against hangs, not a speed check).
func readN(t testing.TB, p *tun.MemPort, n int) [][]byte {
	t.Helper()
	type res struct {
		pkts [][]byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		var out [][]byte
		bufs := make([][]byte, p.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, p.MTU())
		}
		sizes := make([]int, len(bufs))
		for len(out) < n {
			k, err := p.Read(bufs[:min(len(bufs), n-len(out))], sizes, 0)
			if err != nil {
				ch <- res{out, err}
				return
			}
			for i := range k {
				out = append(out, bytes.Clone(bufs[i][:sizes[i]]))
			}
		}
		ch <- res{out, nil}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("reading %d packets from %s: got %d, then %v", n, p.Name(), len(r.pkts), r.err)
		}
		return r.pkts
	case <-time.After(20 * time.Second):
		t.Fatalf("reading %d packets from %s: timed out (watchdog)", n, p.Name())
	}
	return nil
}

func write(t testing.TB, p *tun.MemPort, pkts ...[]byte) {
	t.Helper()
	if _, err := p.Write(pkts, 0); err != nil {
		t.Fatal(err)
	}
}

// udp and udpWith build UDP datagrams (package packettest).
var udp, udpWith = packettest.UDP, packettest.UDPWith

// espSPI returns the SPI and sequence number of an ESP packet (plain or
// UDP-encapsulated), or fails.
func espSPI(t testing.TB, pkt []byte) (spi, seq uint32) {
	t.Helper()
	loc, err := packet.Locate(pkt, 4500)
	if err != nil {
		t.Fatalf("not an IPsec packet: %v (% x)", err, pkt[:min(len(pkt), 64)])
	}
	if loc.IPsec == packet.ProtoESP {
		return loc.SPI, binary.BigEndian.Uint32(pkt[loc.Off+4:])
	}
	return loc.SPI, binary.BigEndian.Uint32(pkt[loc.Off+8:])
}

// drops returns a direction's drop counter by name.
func (s *side) drops(dir, name string) uint64 {
	st := s.nic.Stats()
	d := st.TX
	if dir == "rx" {
		d = st.RX
	}
	return d.Drops[name]
}

// mustEqualPackets is packettest.MustEqualPackets.
var mustEqualPackets = packettest.MustEqualPackets

func ptr[T any](v T) *T { return &v }

func (tp topo) String() string {
	s := fmt.Sprintf("%s/v%d", tp.mode, 4+2*boolInt(tp.v6))
	if tp.outer6 != nil {
		s += fmt.Sprintf("-outer-v%d", 4+2*boolInt(*tp.outer6))
	}
	if tp.alg.enc != "" {
		s += "/esp-" + tp.alg.name
	}
	if tp.ah != "" {
		s += "/ah-" + tp.ah
	}
	if tp.encap {
		s += "/udp-encap"
	}
	return s
}
