package nic

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
	"github.com/secnic/secnic/wire"
)

// The NIC over the real wire ports of package wire.

// loopbackPair opens two UDP wire ports on random loopback addresses
// (127.x.y.z, all local on Linux) pointing at each other.
func loopbackPair(t testing.TB, mtu int) (a, b *wire.UDPPort) {
	t.Helper()
	return testenv.LoopbackPair(t, 4789, func(local, peer netip.AddrPort) (*wire.UDPPort, error) {
		return wire.OpenUDP(wire.UDPConfig{Local: local, Peer: peer, MTU: mtu, Batch: 32})
	})
}

// vethEnv is two network namespaces joined by a veth pair, with
// 192.0.2.1/24 and 2001:db8::1/64 on side A and .2 / ::2 on side B.
type vethEnv struct {
	nsA, nsB string // /run/netns paths
	ifA, ifB string
}

func newVethEnv(t *testing.T) *vethEnv {
	t.Helper()
	p := testenv.VethPair(t, netlab.PairConfig{Prefix: "secnic-nic", V4A: out4A, V4B: out4B, V6A: out6A, V6B: out6B})
	return &vethEnv{nsA: p.A.Path, nsB: p.B.Path, ifA: p.A.Veth, ifB: p.B.Veth}
}

// TestNICsOverUDP runs two NICs whose wire is the UDP cable over loopback.
func TestNICsOverUDP(t *testing.T) {
	wa, wb := loopbackPair(t, 1400)
	tp := topo{alg: algGCM}
	mk := func(wp tun.Port, me, peer netip.Addr, outSPI, inSPI uint32, outSeed, inSeed byte, myNet, peerNet string) (*NIC, *tun.MemPort) {
		tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []saspec.BundleSpec{tp.bundle("out", "out", me, peer, outSPI, outSeed), tp.bundle("in", "in", peer, me, inSPI, inSeed)} {
			s.Mode = "tunnel"
			if _, err := tb.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []saspec.PolicySpec{
			{Dir: "out", Src: myNet, Dst: peerNet, Bundles: []saspec.Ref{"out"}},
			{Dir: "in", Src: peerNet, Dst: myNet, Bundles: []saspec.Ref{"in"}},
		} {
			if _, err := tb.AddPolicy(p); err != nil {
				t.Fatal(err)
			}
		}
		host, app := tun.NewMemPair(64, 9000)
		n, err := New(Config{}, tb, host, wp, quietLogger())
		if err != nil {
			t.Fatal(err)
		}
		return n, app
	}
	na, appA := mk(wa, out4A, out4B, 0x1000, 0x2000, 1, 2, "10.1.0.0/16", "10.2.0.0/16")
	nb, appB := mk(wb, out4B, out4A, 0x2000, 0x1000, 2, 1, "10.2.0.0/16", "10.1.0.0/16")
	(&side{nic: na}).run(t)
	(&side{nic: nb}).run(t)
	var want [][]byte
	for i := range 200 {
		want = append(want, udp(in4A, in4B, 1, 2, (i*31)%1300, uint32(i), false))
	}
	// Loopback UDP does not lose datagrams unless a socket buffer overflows;
	// send in modest batches so that it does not.
	for i := 0; i < len(want); i += 20 {
		write(t, appA, want[i:i+20]...)
		mustEqualPackets(t, readN(t, appB, 20), want[i:i+20])
	}
	if st := nb.Stats(); st.RX.Protected != 200 || st.RX.Dropped != 0 {
		t.Fatalf("B stats %+v", st.RX)
	}
	if got := na.Stats().WirePort; got != wa.Name() {
		t.Fatalf("wire port name %q", got)
	}
}

// TestNICsOverLink runs two NICs whose wire ports are the two ends of a
// veth pair in two namespaces: real ESP on a real (virtual) link.
func TestNICsOverLink(t *testing.T) {
	e := newVethEnv(t)
	for _, tp := range []topo{
		{mode: "tunnel", alg: algGCM},
		{mode: "tunnel", alg: algCBC, v6: true},
		{mode: "tunnel", alg: algGCM, encap: true},
		{mode: "transport", alg: algGCM, ah: "hmac-sha256-128"},
	} {
		t.Run(tp.String(), func(t *testing.T) {
			mk := func(ns, ifname string, me, peer netip.Addr, outSPI, inSPI uint32, outSeed, inSeed byte, myNet, peerNet string) (*side, *wire.LinkPort) {
				tb, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range []saspec.BundleSpec{tp.bundle("out", "out", me, peer, outSPI, outSeed), tp.bundle("in", "in", peer, me, inSPI, inSeed)} {
					if _, err := tb.Add(s); err != nil {
						t.Fatal(err)
					}
				}
				for _, p := range []saspec.PolicySpec{
					{Dir: "out", Src: myNet, Dst: peerNet, Bundles: []saspec.Ref{"out"}},
					{Dir: "in", Src: peerNet, Dst: myNet, Bundles: []saspec.Ref{"in"}},
				} {
					if _, err := tb.AddPolicy(p); err != nil {
						t.Fatal(err)
					}
				}
				wp, err := wire.OpenLink(wire.LinkConfig{Interface: ifname, EncapPort: 4500, NetnsPath: ns})
				if err != nil {
					t.Fatal(err)
				}
				host, app := tun.NewMemPair(64, 9000)
				n, err := New(Config{}, tb, host, wp, quietLogger())
				if err != nil {
					t.Fatal(err)
				}
				s := &side{nic: n, table: tb, app: app}
				s.run(t)
				return s, wp
			}
			ea, eb := tp.ends()
			na, nb := tp.nets()
			a, _ := mk(e.nsA, e.ifA, ea, eb, 0x1000, 0x2000, 1, 2, na, nb)
			b, _ := mk(e.nsB, e.ifB, eb, ea, 0x2000, 0x1000, 2, 1, nb, na)
			ha, hb := tp.hosts()
			var ab, ba [][]byte
			for i := range 50 {
				ab = append(ab, udp(ha, hb, 1, 2, (i*61)%1300, uint32(i), false))
				ba = append(ba, udp(hb, ha, 2, 1, (i*61)%1300, uint32(i), false))
			}
			if !tp.v6 {
				ab = append(ab, udp(ha, hb, 1, 2, 4000, 99, false)) // fragmented on the wire
			}
			write(t, a.app, ab...)
			mustEqualPackets(t, readN(t, b.app, len(ab)), ab)
			write(t, b.app, ba...)
			mustEqualPackets(t, readN(t, a.app, len(ba)), ba)
			if st := b.nic.Stats(); st.RX.Dropped != 0 || (!tp.v6 && st.Reassembled != 1) || st.WireMethod != wire.LinkXDP {
				t.Fatalf("B stats %+v", st)
			}

			if tp.encap {
				// IKE from A's kernel to B's port 4500 reaches B's host untouched.
				var c *net.UDPConn
				if err := netns.Do(e.nsA, func() (err error) {
					c, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(out4B, 4500)))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ike := append([]byte{0, 0, 0, 0}, []byte("IKE_SA_INIT")...)
				if _, err := c.Write(ike); err != nil {
					t.Fatal(err)
				}
				got := readN(t, b.app, 1)[0]
				if !bytes.HasSuffix(got, ike) || b.nic.Stats().IKEPassthrough != 1 {
					t.Fatalf("IKE packet not passed through: % x", got)
				}
			}
		})
	}
}
