//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/twonic"
)

// TestAutoMTU: with host MTU "auto" the TUN device leaves room for the
// SAs' worst-case overhead, so a full-size packet with DF set fits the
// wire after protection: no fragments, no ICMP.
func TestAutoMTU(t *testing.T) {
	l := startLab(t, twonic.Scenario{})
	mtu := l.A.HostMTU()
	if mtu >= 1500 || mtu < 1400 {
		t.Fatalf("auto host MTU %d for an ESP-GCM tunnel on a 1500-byte wire", mtu)
	}
	if got := l.A.NIC().Stats().HostMTU; got != mtu {
		t.Errorf("TUN MTU %d, NIC says %d", mtu, got)
	}
	for _, v6 := range []bool{false, true} {
		hdr := 28
		if v6 {
			hdr = 48
		}
		r := ping(t, l, "a", v6, twonic.PingOptions{Count: 3, Size: mtu - hdr, DF: true})
		if r.Received != 3 {
			t.Errorf("IPv6 %v: full-size DF ping: %d of 3 answered\n%s", v6, r.Received, r.Output)
		}
	}
	for _, side := range []string{"a", "b"} {
		st := l.Daemon(side).NIC().Stats()
		if st.FragmentsOut != 0 || st.ICMPTooBig != 0 || st.TX.Dropped != 0 {
			t.Errorf("NIC %s: %s", side, statsLine(st))
		}
	}
}

// TestTooBig: with the TUN MTU fixed at the wire MTU, a packet that no
// longer fits after protection is fragmented after protection when it
// may be (IPv4 without DF), and otherwise answered with ICMP
// fragmentation-needed (IPv4 with DF) or ICMPv6 packet-too-big.
func TestTooBig(t *testing.T) {
	l := startLab(t, twonic.Scenario{HostMTU: 1500})
	if got := l.A.HostMTU(); got != 1500 {
		t.Fatalf("host MTU %d, want the configured 1500", got)
	}

	// IPv4 without DF: fragmented after protection, reassembled by b.
	r := ping(t, l, "a", false, twonic.PingOptions{Count: 3, Size: 1472, NoDF: true})
	if r.Received != 3 {
		t.Errorf("1500-byte pings without DF: %d of 3 answered\n%s", r.Received, r.Output)
	}
	a, b := l.A.NIC().Stats(), l.B.NIC().Stats()
	if a.FragmentsOut < 6 || b.Reassembled < 3 {
		t.Errorf("want a to fragment the protected packets and b to reassemble them:\nA: %s\nB: %s", statsLine(a), statsLine(b))
	}
	if a.TX.Dropped != 0 || b.RX.Dropped != 0 {
		t.Errorf("drops:\nA: %s\nB: %s", statsLine(a), statsLine(b))
	}

	// IPv4 with DF: ICMP fragmentation needed back to the host.
	icmp0 := a.ICMPTooBig
	r = ping(t, l, "a", false, twonic.PingOptions{Count: 1, Size: 1472, DF: true, Wait: 500 * time.Millisecond})
	if r.Received != 0 || !strings.Contains(strings.ToLower(r.Output), "frag needed") {
		t.Errorf("1500-byte ping with DF: want 'Frag needed' from the NIC, got\n%s", r.Output)
	}
	a = l.A.NIC().Stats()
	if a.ICMPTooBig != icmp0+1 || a.TX.Drops["SecnicFragNeeded"] != 1 {
		t.Errorf("want one ICMP fragmentation-needed and one SecnicFragNeeded drop: %s", statsLine(a))
	}
	// The kernel learned the path MTU from it: the next DF ping of that
	// size is refused locally, and one that fits goes through.
	r = ping(t, l, "a", false, twonic.PingOptions{Count: 1, Size: 1472, DF: true, Wait: 500 * time.Millisecond})
	if !strings.Contains(strings.ToLower(r.Output), "too long") {
		t.Errorf("after ICMP frag-needed the host should know the path MTU; ping said\n%s", r.Output)
	}

	// IPv6: never fragmented by the tunnel above 1280 bytes: packet too big.
	icmp0 = l.A.NIC().Stats().ICMPTooBig
	r = ping(t, l, "a", true, twonic.PingOptions{Count: 1, Size: 1452, Wait: 500 * time.Millisecond})
	if !strings.Contains(strings.ToLower(r.Output), "too big") {
		t.Errorf("1500-byte IPv6 ping: want 'Packet too big' from the NIC, got\n%s", r.Output)
	}
	if got := l.A.NIC().Stats().ICMPTooBig; got != icmp0+1 {
		t.Errorf("ICMPv6 packet-too-big sent %d times, want 1", got-icmp0)
	}
	// Now a fragments IPv6 itself, to the MTU it learned. b's first
	// 1500-byte reply meets the same limit on b's side: b's NIC answers
	// its host with packet-too-big, and the later replies are fragmented.
	r = ping(t, l, "a", true, twonic.PingOptions{Count: 3, Size: 1452})
	if r.Received < 2 {
		t.Errorf("IPv6 pings after packet-too-big: %d of 3 answered\n%s", r.Received, r.Output)
	}
	if b := l.B.NIC().Stats(); b.ICMPTooBig < 1 {
		t.Errorf("b sent no packet-too-big for its 1500-byte reply: %s", statsLine(b))
	}
}
