package xfrm

import (
	"strings"
	"testing"
)

// A strongSwan-style tunnel between 192.0.2.1 (here) and 192.0.2.2: an
// outbound and an inbound state, in, out and fwd policies, a blocking and
// a bypass policy.
var tunnelLines = []string{
	`ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1000001 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' ` + k20a + ` 128 dir out`,
	`ip xfrm state add src 192.0.2.2 dst 192.0.2.1 proto esp spi 0xc2000001 reqid 2 mode tunnel replay-window 32 aead 'rfc4106(gcm(aes))' ` + k20b + ` 128 dir in`,
	`ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel`,
	`ip xfrm policy add src 10.2.0.0/16 dst 10.1.0.0/16 dir in tmpl src 192.0.2.2 dst 192.0.2.1 proto esp reqid 2 mode tunnel`,
	`ip xfrm policy add src 10.2.0.0/16 dst 10.1.0.0/16 dir fwd tmpl src 192.0.2.2 dst 192.0.2.1 proto esp reqid 2 mode tunnel`,
	`ip xfrm policy add src 10.1.0.5/32 dst 10.2.0.0/16 proto tcp dport 22 dir out priority 100 action block`,
	`ip xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 proto icmp type 8 dir out priority 50`,
}

func TestGoldenPolicyForms(t *testing.T) {
	g := newRig(t)
	g.run(tunnelLines...)

	// The secnic policies behind them.
	ps := g.tb.Policies()
	if len(ps) != 5 {
		t.Fatalf("%d policies", len(ps))
	}
	byName := map[string]int{}
	for i, p := range ps {
		byName[p.Spec.Name] = i
	}
	out := ps[byName[PolicyName("out", Selector{Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16")})]]
	if out.Spec.Dir != "out" || out.Spec.Action != "protect" || len(out.Bundles) != 1 || !out.Complete {
		t.Errorf("out policy %+v", out)
	}
	fwd := ps[byName[PolicyName("fwd", Selector{Src: pfx("10.2.0.0/16"), Dst: pfx("10.1.0.0/16")})]]
	if fwd.Spec.Dir != "in" || fwd.Spec.Action != "protect" || len(fwd.Bundles) != 1 {
		t.Errorf("fwd policy %+v", fwd)
	}

	// In secnic's matching order (inbound first, then by priority).
	want := "src 10.2.0.0/16 dst 10.1.0.0/16 \n" +
		"\tdir in priority 0 ptype main \n" +
		"\ttmpl src 192.0.2.2 dst 192.0.2.1\n" +
		"\t\tproto esp reqid 2 mode tunnel\n" +
		"src 10.2.0.0/16 dst 10.1.0.0/16 \n" +
		"\tdir fwd priority 0 ptype main \n" +
		"\ttmpl src 192.0.2.2 dst 192.0.2.1\n" +
		"\t\tproto esp reqid 2 mode tunnel\n" +
		"src 10.1.0.0/16 dst 10.2.0.0/16 \n" +
		"\tdir out priority 0 ptype main \n" +
		"\ttmpl src 192.0.2.1 dst 192.0.2.2\n" +
		"\t\tproto esp reqid 1 mode tunnel\n" +
		"src 10.1.0.0/16 dst 10.2.0.0/16 proto icmp type 8 \n" +
		"\tdir out priority 50 ptype main \n" +
		"src 10.1.0.5/32 dst 10.2.0.0/16 proto tcp dport 22 \n" +
		"\tdir out action block priority 100 ptype main \n"
	if got := g.run("ip xfrm policy list"); got != want {
		t.Errorf("ip xfrm policy:\n%s\nwant:\n%s", got, want)
	}
	if got := g.run("ip xfrm policy count"); got != "\t SPD IN  1 OUT 3 FWD 1\n" {
		t.Errorf("count %q", got)
	}
	// Filters.
	if got := g.run("ip xfrm policy list dir fwd"); got != strings.Join(strings.SplitAfter(want, "\n")[4:8], "") {
		t.Errorf("list dir fwd:\n%s", got)
	}
	if got := g.run("ip xfrm policy list action block"); !strings.HasPrefix(got, "src 10.1.0.5/32") || strings.Count(got, "\n") != 2 {
		t.Errorf("list action block:\n%s", got)
	}

	// -s: index, action allow, lifetimes, levels and masks.
	g.r.Print.Stats = true
	wantS := "src 10.1.0.0/16 dst 10.2.0.0/16 uid 0\n" +
		"\tdir out action allow index 1 priority 0 ptype main share any flag  (0x00000000)\n" +
		"\tlifetime config:\n" +
		"\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n" +
		"\t  limit: soft (INF)(packets), hard (INF)(packets)\n" +
		"\t  expire add: soft 0(sec), hard 0(sec)\n" +
		"\t  expire use: soft 0(sec), hard 0(sec)\n" +
		"\tlifetime current:\n" +
		"\t  0(bytes), 0(packets)\n" +
		"\t  add TIME use -\n" +
		"\ttmpl src 192.0.2.1 dst 192.0.2.2\n" +
		"\t\tproto esp spi 0x00000000(0) reqid 1(0x00000001) mode tunnel\n" +
		"\t\tlevel required share any \n" +
		"\t\tenc-mask ffffffff auth-mask ffffffff comp-mask ffffffff\n"
	if got := stamp(g.run("ip xfrm policy get src 10.1.0.0/16 dst 10.2.0.0/16 dir out")); got != wantS {
		t.Errorf("ip -s xfrm policy get:\n%s\nwant:\n%s", got, wantS)
	}
	g.r.Print.Stats = false

	// The states show the selector of the policy they serve.
	if got := g.run("ip xfrm state get src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1000001"); !strings.HasSuffix(got, "\tsel src 10.1.0.0/16 dst 10.2.0.0/16 \n") {
		t.Errorf("state sel:\n%s", got)
	}

	// update replaces, delete removes, by selector or index.
	g.run(`ip xfrm policy update src 10.1.0.0/16 dst 10.2.0.0/16 proto icmp type 8 dir out priority 60 action block`)
	if got := g.run("ip xfrm policy get src 10.1.0.0/16 dst 10.2.0.0/16 proto icmp type 8 dir out"); !strings.Contains(got, "action block priority 60") {
		t.Errorf("after update:\n%s", got)
	}
	g.run("ip xfrm policy delete dir out index 1")
	g.run("ip xfrm policy deleteall dir fwd")
	if got := g.run("ip xfrm policy count"); got != "\t SPD IN  1 OUT 2 FWD 0\n" {
		t.Errorf("after deletes %q", got)
	}
	if msg := g.fail("ip xfrm policy delete dir out index 1"); !strings.Contains(msg, "no policy") {
		t.Errorf("delete twice: %s", msg)
	}
	// A state update keeps the bundle's place for the policies that name
	// it (same name, new key).
	g.run(`ip xfrm state update src 192.0.2.2 dst 192.0.2.1 proto esp spi 0xc2000001 reqid 2 mode tunnel replay-window 64 aead 'rfc4106(gcm(aes))' ` + k20c + ` 128 dir in`)
	if got := g.run("ip xfrm state list dst 192.0.2.1"); !strings.Contains(got, "replay_window 64") {
		t.Errorf("after state update:\n%s", got)
	}
	for _, p := range g.tb.Policies() {
		if !p.Complete {
			t.Errorf("policy %d incomplete after state update", p.ID)
		}
	}
	// Flushing the states leaves the policies waiting for new ones.
	g.run("ip xfrm state flush")
	if got := g.run("ip xfrm state count"); got != "\t SAD count 0\n" {
		t.Errorf("after flush %q", got)
	}
}

// Transport over tunnel: two templates, transport first, as Linux orders
// them (innermost first).
func TestGoldenTransportOverTunnel(t *testing.T) {
	g := newRig(t)
	g.run(
		`ip xfrm state add src 10.1.0.1 dst 10.2.0.1 proto esp spi 0x5001 reqid 5 mode transport aead 'rfc4106(gcm(aes))' `+k20a+` 128 dir out`,
		`ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x5002 reqid 6 mode tunnel aead 'rfc4106(gcm(aes))' `+k20b+` 128 dir out`,
		`ip xfrm policy add src 10.1.0.1/32 dst 10.2.0.1/32 dir out tmpl proto esp reqid 5 mode transport tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 6 mode tunnel`,
	)
	p := g.tb.Policies()[0]
	if len(p.Spec.Bundles) != 2 || !strings.Contains(string(p.Spec.Bundles[0]), "-00005001-") {
		t.Fatalf("policy bundles %v", p.Spec.Bundles)
	}
	want := "src 10.1.0.1/32 dst 10.2.0.1/32 \n" +
		"\tdir out priority 0 ptype main \n" +
		"\ttmpl src 10.1.0.1 dst 10.2.0.1\n" +
		"\t\tproto esp reqid 5 mode transport\n" +
		"\ttmpl src 192.0.2.1 dst 192.0.2.2\n" +
		"\t\tproto esp reqid 6 mode tunnel\n"
	if got := g.run("ip x p"); got != want {
		t.Errorf("ip x p:\n%s\nwant:\n%s", got, want)
	}
}

// TestUpdateKeepsOldOnFailure: an update that the table refuses leaves
// the old state and policy in place.
func TestUpdateKeepsOldOnFailure(t *testing.T) {
	g := newRig(t)
	g.run(tunnelLines[0], tunnelLines[2])
	// The table refuses a soft limit above the hard one, after the old
	// state was deleted: the old one is added back.
	msg := g.fail(`ip xfrm state update src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc1000001 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' ` + k20c + ` 128 limit byte-soft 10 limit byte-hard 5 dir out`)
	if !strings.Contains(msg, "old state is kept") {
		t.Errorf("update error: %s", msg)
	}
	bs := g.tb.List(true)
	if len(bs) != 1 || bs[0].Spec.ESP.EncKey.Hex() != k20a[2:] {
		t.Errorf("old state not restored: %+v", bs)
	}
	// A policy update whose template finds no state fails before the old
	// policy is deleted.
	msg = g.fail(`ip xfrm policy update src 10.1.0.0/16 dst 10.2.0.0/16 dir out priority 5 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 9 mode tunnel`)
	if !strings.Contains(msg, "matches no outbound state") {
		t.Errorf("policy update: %s", msg)
	}
	if ps := g.tb.Policies(); len(ps) != 1 || ps[0].Spec.Priority != 0 || !ps[0].Complete {
		t.Errorf("policies after refused update: %+v", ps)
	}
}
