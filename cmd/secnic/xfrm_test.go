package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/xfrm"
)

const (
	xkOut = "0x1f2e3d4c5b6a79880102030405060708a1b2c3d4"
	xkIn  = "0x99887766554433221100ffeeddccbbaa0a0b0c0d"
)

// words splits an ip xfrm line for the CLI, as the shell would.
func words(t *testing.T, line string) []string {
	t.Helper()
	w, err := xfrm.Split(line)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestXfrmCLI(t *testing.T) {
	sock, tb := daemon(t, "full")
	c := cli{t: t, sock: sock}
	c.ok(words(t, `xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' `+xkOut+` 128 dir out`)...)
	// No dir: --local says 192.0.2.1 is ours, so this one is inbound.
	c.ok(words(t, `xfrm --local 192.0.2.1 state add src 192.0.2.2 dst 192.0.2.1 proto esp spi 0x2000 reqid 2 mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' `+xkIn+` 128`)...)
	c.ok(words(t, `xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel`)...)
	c.ok(words(t, `xfrm p a src 10.2.0.0/16 dst 10.1.0.0/16 dir in tmpl src 192.0.2.2 dst 192.0.2.1 proto esp reqid 2 mode tunnel`)...)

	if b := tb.List(false); len(b) != 2 || b[1].Spec.Dir != "in" {
		t.Fatalf("bundles %+v", b)
	}
	out := c.ok("xfrm", "state")
	want := "src 192.0.2.1 dst 192.0.2.2\n" +
		"\tproto esp spi 0x00001000 reqid 1 mode tunnel\n" +
		"\treplay-window 0 \n" +
		"\taead rfc4106(gcm(aes)) <<Keys hidden>> 128\n" +
		"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
		"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
		"\tdir out\n" +
		"\tsel src 10.1.0.0/16 dst 10.2.0.0/16 \n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("xfrm state:\n%s\nwant first:\n%s", out, want)
	}
	if strings.Contains(out, xkOut[2:]) || strings.Contains(out, xkIn[2:]) {
		t.Error("keys printed without --keys")
	}
	if out := c.ok("xfrm", "--keys", "state", "get", "dst", "192.0.2.2", "proto", "esp", "spi", "0x1000"); !strings.Contains(out, xkOut) {
		t.Errorf("--keys:\n%s", out)
	}
	if out := c.ok("xfrm", "-s", "state", "list", "reqid", "2"); !strings.Contains(out, "spi 0x00002000(8192) reqid 2(0x00000002)") || strings.Contains(out, "0x00001000") {
		t.Errorf("-s list reqid 2:\n%s", out)
	}
	if out := c.ok("xfrm", "--dev", "eth4", "state", "count"); out != "\t SAD count 2\n" {
		t.Errorf("count %q", out)
	}
	if out := c.ok("xfrm", "policy"); !strings.Contains(out, "\tdir in priority 0 ptype main \n\ttmpl src 192.0.2.2 dst 192.0.2.1\n\t\tproto esp reqid 2 mode tunnel\n") {
		t.Errorf("xfrm policy:\n%s", out)
	}

	// The netdevsim view of the same SAs.
	nd := c.ok("sa", "list", "--format", "netdevsim", "--keys")
	if !strings.HasPrefix(nd, "SA count=2 tx=0\nsa[0] tx ipaddr=0.0.0.0\nsa[0]    spi=0x00001000 proto=0x32 salt=0xd4c3b2a1 crypt=1\nsa[0]    key=0x4c3d2e1f 88796a5b 04030201 08070605\nsa[1] rx ipaddr=192.0.2.1\n") {
		t.Errorf("netdevsim view:\n%s", nd)
	}
	if errOut := c.fail(2, "sa", "list", "--format", "netdevsim"); !strings.Contains(errOut, "--keys") {
		t.Errorf("netdevsim without keys: %s", errOut)
	}

	// An unsupported word: refused, named, nothing installed.
	errOut := c.fail(1, words(t, `xfrm state add src 192.0.2.1 dst 192.0.2.9 proto esp spi 0x3000 mark 5 aead 'rfc4106(gcm(aes))' `+xkOut+` 128 dir out`)...)
	if !strings.Contains(errOut, `"mark" is not supported`) {
		t.Errorf("mark: %s", errOut)
	}
	if errOut := c.fail(2, "xfrm", "--json", "state"); !strings.Contains(errOut, "sa list --json") {
		t.Errorf("--json: %s", errOut)
	}
	if errOut := c.fail(2, "xfrm", "state", "allocspi"); !strings.Contains(errOut, "allocspi") {
		t.Errorf("allocspi: %s", errOut)
	}
	// A key already in use by another outbound SA is the daemon's
	// business; the message comes back as the daemon wrote it.
	if len(tb.List(false)) != 2 {
		t.Errorf("something was installed by a refused command")
	}

	// A script: flush, then the same tunnel with the policy first.
	script := "ip xfrm state flush\nip xfrm policy flush\n" +
		"ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out \\\n  tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel\n" +
		"# the state comes after the policy that uses it\n" +
		"ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1001 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' 0x0badc0de0badc0de0badc0de0badc0de0badc0de 128 dir out\n"
	out, errOut2, code := c.run(script, "xfrm", "-b", "-")
	if code != 0 {
		t.Fatalf("script: %d %s %s", code, out, errOut2)
	}
	ps := tb.Policies()
	if len(ps) != 1 || !ps[0].Complete || len(tb.List(false)) != 1 {
		t.Errorf("after script: %d policies %+v, %d bundles", len(ps), ps, len(tb.List(false)))
	}
	if _, errOut, code := c.run("ip xfrm state add bogus\n", "xfrm", "-b", "-"); code != 1 || !strings.Contains(errOut, "line 1") {
		t.Errorf("bad script: %d %s", code, errOut)
	}
}

// TestXfrmMonitorCLI follows the event stream as ip xfrm monitor does.
func TestXfrmMonitorCLI(t *testing.T) {
	sock, _ := daemon(t, "full")
	c := cli{t: t, sock: sock}
	out, errOut := newNotifyBuffer(), newNotifyBuffer()
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"--socket", sock, "xfrm", "monitor", "--count", "3"}, nil, out, errOut, commands)
	}()
	errOut.waitFor(t, "following events")
	c.ok(words(t, `xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' `+xkOut+` 128 dir out`)...)
	out.waitFor(t, "\tdir out\n\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n")
	c.ok(words(t, `xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel`)...)
	out.waitFor(t, "\tdir out priority 0 ptype main \n")
	c.ok("xfrm", "state", "flush")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("monitor exited %d: %s", code, errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("monitor did not end:\n%s", out)
	}
	got := out.String()
	if !strings.HasPrefix(got, "src 192.0.2.1 dst 192.0.2.2\n\tproto esp spi 0x00001000 reqid 1 mode tunnel\n") ||
		!strings.Contains(got, "Deleted src 192.0.2.1 dst 192.0.2.2\n") || strings.Contains(got, xkOut[2:]) {
		t.Errorf("monitor output:\n%s", got)
	}
	if errOut := c.fail(2, "xfrm", "monitor", "aevent"); !strings.Contains(errOut, `"aevent" is not supported`) {
		t.Errorf("monitor aevent: %s", errOut)
	}
}
