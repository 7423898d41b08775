//go:build linux

package e2e

import (
	"net/netip"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/saspec"
)

// TestPolicies checks bypass and discard policies and the default policy
// with real traffic: which packets go out in the clear, which are
// dropped, and under which counter.
func TestPolicies(t *testing.T) {
	aIn := twonic.AddressesFor("tunnel", "a").Host4.Addr()
	bIn := twonic.AddressesFor("tunnel", "b").Host4.Addr()
	host := func(a netip.Addr) string { return netip.PrefixFrom(a, 32).String() }
	icmpOut := func(action string) saspec.PolicySpec {
		return saspec.PolicySpec{Name: "icmp-out-" + action, Dir: "out", Priority: -10, Src: host(aIn), Dst: host(bIn), Proto: "icmp", Action: action}
	}
	icmpIn := func(action string) saspec.PolicySpec {
		return saspec.PolicySpec{Name: "icmp-in-" + action, Dir: "in", Priority: -10, Src: host(aIn), Dst: host(bIn), Proto: "icmp", Action: action}
	}
	extra := func(a, b []saspec.PolicySpec) func(string) []saspec.PolicySpec {
		return func(side string) []saspec.PolicySpec {
			if side == "a" {
				return a
			}
			return b
		}
	}
	type want struct {
		received  int    // echo replies
		aBypassed uint64 // a tx bypassed, at least
		bBypassed uint64 // b rx bypassed, at least
		aDrop     string // a tx drop reason, exactly 3
		bDrop     string // b rx drop reason, exactly 3
	}
	tests := []struct {
		name string
		sc   twonic.Scenario
		dst  netip.Addr
		want want
	}{
		{"bypass-both-ends",
			twonic.Scenario{Wire: "udp", Extra: extra([]saspec.PolicySpec{icmpOut("bypass")}, []saspec.PolicySpec{icmpIn("bypass")})},
			bIn, want{received: 3, aBypassed: 3, bBypassed: 3}},
		// On a link wire, plaintext reaches b's kernel directly: the link
		// port takes only ESP, AH and UDP-encapsulated ESP from the link.
		{"bypass-out-link",
			twonic.Scenario{Extra: extra([]saspec.PolicySpec{icmpOut("bypass")}, nil)},
			bIn, want{received: 3, aBypassed: 3}},
		{"discard-out",
			twonic.Scenario{Wire: "udp", Extra: extra([]saspec.PolicySpec{icmpOut("discard")}, nil)},
			bIn, want{aDrop: "XfrmOutPolBlock"}},
		{"plaintext-where-protect-expected",
			twonic.Scenario{Wire: "udp", Extra: extra([]saspec.PolicySpec{icmpOut("bypass")}, nil)},
			bIn, want{aBypassed: 3, bDrop: "XfrmInNoPols"}},
		{"discard-in",
			twonic.Scenario{Wire: "udp", Extra: extra([]saspec.PolicySpec{icmpOut("bypass")}, []saspec.PolicySpec{icmpIn("discard")})},
			bIn, want{aBypassed: 3, bDrop: "XfrmInPolBlock"}},
		{"default-out-discard",
			twonic.Scenario{Wire: "udp", DefaultOut: "discard"},
			netip.MustParseAddr("10.200.1.77"), want{aDrop: "XfrmOutPolBlock"}},
		{"default-out-bypass",
			twonic.Scenario{Wire: "udp"},
			netip.MustParseAddr("10.200.1.77"), want{aBypassed: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := startLab(t, tc.sc)
			a0, b0 := l.A.NIC().Stats(), l.B.NIC().Stats()
			wait := 2 * time.Second
			if tc.want.received == 0 {
				wait = 300 * time.Millisecond // nothing comes back anyway
			}
			r, err := twonic.Ping(ctxFor(t, 30*time.Second), l.Pair.A, tc.dst, twonic.PingOptions{Count: 3, Interval: 50 * time.Millisecond, Wait: wait})
			if err != nil {
				t.Fatal(err)
			}
			if r.Received != tc.want.received {
				t.Errorf("%d echo replies, want %d\n%s", r.Received, tc.want.received, r.Output)
			}
			var a1, b1 = l.A.NIC().Stats(), l.B.NIC().Stats()
			// Wait for the counters of the last packets (the far side may
			// still be processing them when ping gives up).
			waitFor(func() bool {
				a1, b1 = l.A.NIC().Stats(), l.B.NIC().Stats()
				return (tc.want.bDrop == "" || drops(b1.RX, tc.want.bDrop)-drops(b0.RX, tc.want.bDrop) >= 3) &&
					b1.RX.Bypassed-b0.RX.Bypassed >= tc.want.bBypassed
			})
			if got := a1.TX.Bypassed - a0.TX.Bypassed; got < tc.want.aBypassed {
				t.Errorf("a bypassed %d packets, want at least %d", got, tc.want.aBypassed)
			}
			if got := b1.RX.Bypassed - b0.RX.Bypassed; got < tc.want.bBypassed {
				t.Errorf("b delivered %d unprotected packets, want at least %d", got, tc.want.bBypassed)
			}
			for _, c := range []struct {
				side, reason string
				before, now  uint64
			}{
				{"a tx", tc.want.aDrop, drops(a0.TX, tc.want.aDrop), drops(a1.TX, tc.want.aDrop)},
				{"b rx", tc.want.bDrop, drops(b0.RX, tc.want.bDrop), drops(b1.RX, tc.want.bDrop)},
			} {
				// A default-discard host loses its own packets too (the
				// kernel's IPv6 router solicitations on the TUN), so there
				// A counts at least the 3 pings.
				if n := c.now - c.before; c.reason != "" && n != 3 && (n < 3 || c.side != "a tx" || tc.sc.DefaultOut != "discard") {
					t.Errorf("%s %s: %d, want 3 (all drops: a tx %v, b rx %v)", c.side, c.reason, c.now-c.before, a1.TX.Drops, b1.RX.Drops)
				}
			}
			if tc.want.aDrop == "" && a1.TX.Dropped != a0.TX.Dropped {
				t.Errorf("a dropped: %v", a1.TX.Drops)
			}
			if tc.want.bDrop == "" && b1.RX.Dropped != b0.RX.Dropped {
				t.Errorf("b dropped: %v", b1.RX.Drops)
			}
		})
	}
}
