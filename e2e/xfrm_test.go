//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/twonic"
)

// xfrmLab starts two NICs with no SAs and no policies, and control
// sockets: everything comes from secnic xfrm lines.
func xfrmLab(t *testing.T, mode string) (*twonic.Lab, string) {
	t.Helper()
	requireLab(t)
	pair, err := netlab.NewPair(netlab.PairConfig{Prefix: nsPrefix})
	if err != nil {
		t.Fatal(err)
	}
	sockDir := t.TempDir()
	if err := os.Chmod(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sc := twonic.Scenario{Mode: mode, SocketDir: sockDir}
	l := &twonic.Lab{Scenario: sc, Pair: pair}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	ca, cb, err := twonic.Configs(sc, pair)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*daemon.Config{ca, cb} {
		c.SAs, c.Policies = nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if l.A, err = daemon.Start(ctx, ca, daemon.Options{Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	if l.B, err = daemon.Start(ctx, cb, daemon.Options{Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	return l, sockDir
}

// secnicIn runs the secnic CLI inside side's namespace (so that its local
// addresses are the namespace's), with stdin.
func secnicIn(t *testing.T, side netlab.Side, sock, stdin string, args ...string) string {
	t.Helper()
	bin := buildSecnic(t)
	cmd := exec.Command("ip", append([]string{"netns", "exec", side.Name, bin, "--socket", sock}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("secnic %s in %s: %v\n%s", strings.Join(args, " "), side.Name, err, out)
	}
	return string(out)
}

func randKey(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "0x" + hex.EncodeToString(b)
}

// TestXfrmTunnel sets up an ESP tunnel between two secnic daemons only
// with ip xfrm lines as strongSwan's documentation writes them (states
// and in, out and fwd policies; no "dir" on the states, whose direction
// comes from the namespace's addresses), and moves traffic through it.
func TestXfrmTunnel(t *testing.T) {
	l, sockDir := xfrmLab(t, "tunnel")
	kAB, kBA := randKey(t, 20), randKey(t, 36)
	script := func(me, peer string) string {
		a, b := twonic.AddressesFor("tunnel", me), twonic.AddressesFor("tunnel", peer)
		spi := map[string]string{"a": "0xc1a0b001", "b": "0xc1b0a002"}
		key := map[string]string{"a": kAB, "b": kBA}
		req := map[string]string{"a": "1", "b": "2"}
		var s strings.Builder
		fmt.Fprintf(&s, "ip xfrm state add src %s dst %s proto esp spi %s reqid %s mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' %s 128\n",
			a.Under4, b.Under4, spi[me], req[me], key[me])
		fmt.Fprintf(&s, "ip xfrm state add src %s dst %s proto esp spi %s reqid %s mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' %s 128\n",
			b.Under4, a.Under4, spi[peer], req[peer], key[peer])
		fmt.Fprintf(&s, "ip xfrm policy add src %s dst %s dir out \\\n\ttmpl src %s dst %s proto esp reqid %s mode tunnel\n",
			a.Host4.Masked(), b.Host4.Masked(), a.Under4, b.Under4, req[me])
		for _, dir := range []string{"in", "fwd"} {
			fmt.Fprintf(&s, "ip xfrm policy add src %s dst %s dir %s \\\n\ttmpl src %s dst %s proto esp reqid %s mode tunnel\n",
				b.Host4.Masked(), a.Host4.Masked(), dir, b.Under4, a.Under4, req[peer])
		}
		return s.String()
	}
	sockA, sockB := filepath.Join(sockDir, "a.sock"), filepath.Join(sockDir, "b.sock")
	secnicIn(t, l.Pair.A, sockA, script("a", "b"), "xfrm", "-b", "-")
	secnicIn(t, l.Pair.B, sockB, script("b", "a"), "xfrm", "-b", "-")

	mustPing(t, l, "a", false)
	mustTransfer(t, l, false, 1<<20)

	// What ip -s xfrm state would show: the outbound SA counted the
	// traffic, and the keys stay hidden.
	out := secnicIn(t, l.Pair.A, sockA, "", "xfrm", "-s", "state", "get", "src", "192.168.200.1", "dst", "192.168.200.2", "proto", "esp", "spi", "0xc1a0b001")
	if !strings.Contains(out, "proto esp spi 0xc1a0b001(3248533505) reqid 1(0x00000001) mode tunnel") || strings.Contains(out, kAB[2:]) {
		t.Errorf("xfrm -s state get:\n%s", out)
	}
	if _, cur, ok := strings.Cut(out, "lifetime current:\n"); !ok || strings.HasPrefix(cur, "\t  0(bytes), 0(packets)") {
		t.Errorf("the outbound SA counted no traffic:\n%s", out)
	}
	out = secnicIn(t, l.Pair.A, sockA, "", "xfrm", "policy", "count")
	if out != "\t SPD IN  1 OUT 1 FWD 1\n" {
		t.Errorf("policy count %q", out)
	}
	// Flushing the states stops the tunnel: the out policy has no state
	// left and drops (XfrmOutNoStates).
	secnicIn(t, l.Pair.A, sockA, "", "xfrm", "state", "flush")
	r := ping(t, l, "a", false, twonic.PingOptions{Count: 2, Wait: 300 * time.Millisecond})
	if r.Received != 0 {
		t.Errorf("ping answered after the flush:\n%s", r.Output)
	}
	if d := drops(l.A.NIC().Stats().TX, "XfrmOutNoStates"); d == 0 {
		t.Errorf("no XfrmOutNoStates drops after the flush: %s", statsLine(l.A.NIC().Stats()))
	}
}

// TestXfrmSelftestTransport runs the kernel selftest's lines
// (kci_test_ipsec_offload: policies first, then offloaded states with
// sel and "offload dev DEV dir in|out", its key) between two secnic
// daemons in transport mode, pings three times, and reads netdevsim's
// debugfs text from secnic sa list --format netdevsim-hex.
func TestXfrmSelftestTransport(t *testing.T) {
	l, sockDir := xfrmLab(t, "transport")
	const selftestKey = "0x3132333435363738393031323334353664636261"
	other := randKey(t, 20)
	script := func(me, peer, out, in string) string {
		a, b := twonic.AddressesFor("transport", me).Host4.Addr(), twonic.AddressesFor("transport", peer).Host4.Addr()
		spi := map[string]string{"a": "0x109", "b": "0x10a"}
		algo := func(k string) string { return `aead "rfc4106(gcm(aes))" ` + k + " 128" }
		return fmt.Sprintf("ip x p add dir out src %[1]s/24 dst %[2]s/24 tmpl proto esp src %[1]s dst %[2]s spi %[3]s mode transport reqid 42\n", a, b, spi[me]) +
			fmt.Sprintf("ip x p add dir in src %[2]s/24 dst %[1]s/24 tmpl proto esp src %[2]s dst %[1]s spi %[3]s mode transport reqid 43\n", a, b, spi[peer]) +
			fmt.Sprintf("ip x s add proto esp src %[1]s dst %[2]s spi %[3]s mode transport reqid 42 %[4]s sel src %[1]s/24 dst %[2]s/24 offload dev secnic-%[5]s dir out\n", a, b, spi[me], algo(out), me) +
			fmt.Sprintf("ip x s add proto esp src %[2]s dst %[1]s spi %[3]s mode transport reqid 43 %[4]s sel src %[2]s/24 dst %[1]s/24 offload dev secnic-%[5]s dir in\n", a, b, spi[peer], algo(in), me)
	}
	sockA, sockB := filepath.Join(sockDir, "a.sock"), filepath.Join(sockDir, "b.sock")
	secnicIn(t, l.Pair.A, sockA, script("a", "b", selftestKey, other), "xfrm", "-b", "-")
	secnicIn(t, l.Pair.B, sockB, script("b", "a", other, selftestKey), "xfrm", "-b", "-")

	// Does offload show up in ip output (the selftest's grep).
	out := secnicIn(t, l.Pair.A, sockA, "", "xfrm", "--dev", "secnic-a", "state", "list")
	if n := strings.Count(out, "crypto offload parameters: dev secnic-a dir"); n != 2 {
		t.Errorf("%d offload lines:\n%s", n, out)
	}
	mustPing(t, l, "a", false)

	// The selftest's expected driver data, for secnic's SPIs.
	nd := secnicIn(t, l.Pair.A, sockA, "", "sa", "list", "--format", "netdevsim-hex", "--keys")
	want := "SA count=2 tx=3\n" +
		"sa[0] tx ipaddr=0x00000000 00000000 00000000 00000000\n" +
		"sa[0]    spi=0x00000109 proto=0x32 salt=0x61626364 crypt=1\n" +
		"sa[0]    key=0x34333231 38373635 32313039 36353433\n" +
		"sa[1] rx ipaddr=0x00000000 00000000 00000000 0100c80a\n"
	if !strings.HasPrefix(nd, want) {
		t.Errorf("netdevsim view:\n%s\nwant first:\n%s", nd, want)
	}
	mustTransfer(t, l, false, 256<<10)

	// Removed from the driver after a flush.
	secnicIn(t, l.Pair.A, sockA, "ip x s flush\nip x p flush\n", "xfrm", "-b", "-")
	if nd := secnicIn(t, l.Pair.A, sockA, "", "sa", "list", "--format", "netdevsim", "--keys"); !strings.HasPrefix(nd, "SA count=0 ") {
		t.Errorf("after flush: %s", nd)
	}
}
