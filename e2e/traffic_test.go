//go:build linux

package e2e

import (
	"net/netip"
	"testing"

	"github.com/secnic/secnic/internal/twonic"
)

// TestTraffic sends ping and a verified TCP transfer both ways of every
// address family through two NICs, for each protocol, mode and wire, and
// checks that the packets were protected, the right SAs counted them, and
// nothing was dropped.
func TestTraffic(t *testing.T) {
	tests := []struct {
		name string
		sc   twonic.Scenario
	}{
		{"esp-tunnel-gcm128-v4-link", twonic.Scenario{}},
		{"esp-tunnel-gcm256-v6outer-link", twonic.Scenario{Enc: "aes-gcm-256", Outer6: true}},
		{"esp-tunnel-cbc-sha256-udp", twonic.Scenario{Enc: "aes-cbc-128", Auth: "hmac-sha256-128", Wire: "udp"}},
		{"esp-tunnel-ctr-sha512-esn-link", twonic.Scenario{Enc: "aes-ctr-256", Auth: "hmac-sha512-256", ESN: true}},
		{"esp-transport-chacha-udp", twonic.Scenario{Mode: "transport", Enc: "chacha20-poly1305", Wire: "udp"}},
		{"esp-tunnel-udpencap-link", twonic.Scenario{UDPEncap: true}},
		{"esp-tunnel-udpencap-v6outer-link", twonic.Scenario{UDPEncap: true, Outer6: true}},
		{"esp-transport-udpencap-udp", twonic.Scenario{Mode: "transport", UDPEncap: true, Wire: "udp"}},
		{"ah-transport-sha256-udp", twonic.Scenario{Mode: "transport", Proto: twonic.AH, Wire: "udp"}},
		{"ah-tunnel-gmac-link", twonic.Scenario{Proto: twonic.AH, Auth: "aes-gmac-128"}},
		{"ahesp-tunnel-link", twonic.Scenario{Proto: twonic.AHESP, Auth: "hmac-sha1-96"}},
		{"ahesp-transport-udp", twonic.Scenario{Mode: "transport", Proto: twonic.AHESP, Wire: "udp"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.sc.CaptureDir = t.TempDir()
			l := startLab(t, tc.sc)
			for _, v6 := range []bool{false, true} {
				mustPing(t, l, "a", v6)
				mustPing(t, l, "b", v6)
				mustTransfer(t, l, v6, 1<<20)
			}
			for _, side := range []string{"a", "b"} {
				st := l.Daemon(side).NIC().Stats()
				if st.TX.Dropped != 0 || st.RX.Dropped != 0 {
					t.Errorf("NIC %s dropped packets: %s", side, statsLine(st))
				}
				if st.TX.Protected == 0 || st.RX.Protected == 0 {
					t.Errorf("NIC %s protected %d and decapsulated %d packets, want both > 0", side, st.TX.Protected, st.RX.Protected)
				}
				for _, s := range st.SAs {
					if s.Packets == 0 {
						t.Errorf("NIC %s: SA %s %s %s processed no packets", side, s.Proto, s.Dir, s.SPI)
					}
					if len(s.Drops) != 0 {
						t.Errorf("NIC %s: SA %s %s %s dropped %v", side, s.Proto, s.Dir, s.SPI, s.Drops)
					}
				}
			}
			// The protocol on the wire is the one configured.
			want := map[string]bool{}
			switch tc.sc.Proto {
			case "", twonic.ESP:
				want["esp"] = true
			case twonic.AH:
				want["ah"] = true
			case twonic.AHESP:
				want["esp"], want["ah"] = true, true
			}
			got := map[string]bool{}
			for _, s := range l.A.NIC().Stats().SAs {
				got[s.Proto] = true
			}
			for p := range want {
				if !got[p] {
					t.Errorf("no %s SA in NIC a's table: %v", p, got)
				}
			}
			checkWire(t, l, tc.sc)
			if tc.sc.ESN {
				for _, b := range l.A.Table().List(false) {
					if !b.Spec.ESN {
						t.Errorf("bundle %s has no ESN", b.Spec.Name)
					}
				}
			}
		})
	}
}

// checkWire reads NIC a's wire capture and checks that everything it sent
// towards b's inner addresses was protected as configured: the right
// protocol between the right endpoints, and no plaintext.
func checkWire(t *testing.T, l *twonic.Lab, sc twonic.Scenario) {
	t.Helper()
	if err := l.A.Close(); err != nil { // flushes the captures
		t.Fatal(err)
	}
	pkts := readCapture(t, l.CapturePath("a", "wire"))
	wantProto, wantNext := "esp", ""
	switch {
	case sc.UDPEncap:
		wantProto = "udp-esp"
	case sc.Proto == twonic.AH:
		wantProto = "ah"
	case sc.Proto == twonic.AHESP:
		wantProto, wantNext = "ah", "esp"
	}
	under := twonic.AddressesFor("tunnel", "a")
	srcs := map[netip.Addr]bool{l.Addr("a", false): true, l.Addr("a", true): true}
	if sc.Mode != "transport" {
		srcs = map[netip.Addr]bool{under.Under4: true, under.Under6: true}
	}
	sent := 0
	for _, p := range pkts {
		if !srcs[p.src] {
			continue // received, or link-local control traffic
		}
		sent++
		if p.proto != wantProto || (wantNext != "" && p.next != wantNext) {
			t.Errorf("packet %s -> %s on the wire is %s (next %q), want %s (next %q)", p.src, p.dst, p.proto, p.next, wantProto, wantNext)
			break
		}
		if sc.Mode != "transport" && (p.dst != twonic.AddressesFor("tunnel", "b").Under4 && p.dst != twonic.AddressesFor("tunnel", "b").Under6) {
			t.Errorf("tunnel packet to %s, want b's underlay address", p.dst)
			break
		}
		if sc.Mode != "transport" && sc.Outer6 != p.src.Is6() {
			t.Errorf("tunnel packet from %s: outer family is wrong (Outer6=%v)", p.src, sc.Outer6)
			break
		}
	}
	if sent == 0 {
		t.Errorf("NIC a's wire capture holds no packet sent by a (%d packets in all)", len(pkts))
	}
}
