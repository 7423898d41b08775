package sadb

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

func TestLookupIn(t *testing.T) {
	tb := newTable(t, "full")
	d2, d3 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	v6 := netip.MustParseAddr("2001:db8::2")
	exact := mustAdd(t, tb, gcmSpec("exact", 0x1000, "192.0.2.2"))
	wild := mustAdd(t, tb, gcmSpec("wild", 0x2000, ""))
	both := gcmSpec("both", 0x3000, "192.0.2.2")
	both.AH = &saspec.SASpec{SPI: 0x3001, Auth: "hmac-sha256-128", AuthKey: testKey(32, 1)}
	hBoth := mustAdd(t, tb, both)
	v6spec := gcmSpec("v6", 0x1000, "2001:db8::2")
	v6spec.Src = "2001:db8::1"
	hV6 := mustAdd(t, tb, v6spec)
	out := gcmSpec("out", 0x4000, "192.0.2.2")
	out.Dir = "out"
	mustAdd(t, tb, out)

	snap := tb.Snapshot()
	cases := []struct {
		name  string
		proto sa.Protocol
		spi   uint32
		dst   netip.Addr
		want  sa.Handle // 0 = not found
	}{
		{"exact", sa.ESP, 0x1000, d2, exact},
		{"exact other dst", sa.ESP, 0x1000, d3, 0},
		{"exact wrong proto", sa.AH, 0x1000, d2, 0},
		{"wildcard", sa.ESP, 0x2000, d3, wild},
		{"wildcard v6", sa.ESP, 0x2000, v6, wild},
		{"bundle ESP part", sa.ESP, 0x3000, d2, hBoth},
		{"bundle AH part", sa.AH, 0x3001, d2, hBoth},
		{"v6 exact", sa.ESP, 0x1000, v6, hV6},
		{"outbound not indexed", sa.ESP, 0x4000, d2, 0},
		{"unknown", sa.ESP, 0x5555, d2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := snap.LookupIn(c.proto, c.spi, c.dst)
			if c.want == 0 {
				if s != nil || b != nil {
					t.Fatalf("found %v in bundle %d", s, b.Handle)
				}
				return
			}
			if s == nil || b == nil || b.Handle != c.want || s.SPI != c.spi || s.Proto != c.proto {
				t.Fatalf("got %v / %v, want an SA of bundle %d", s, b, c.want)
			}
		})
	}
	if allocs := testing.AllocsPerRun(1000, func() { snap.LookupIn(sa.ESP, 0x1000, d2); snap.LookupIn(sa.ESP, 0x2000, d3) }); allocs != 0 {
		t.Errorf("LookupIn allocates %.1f times per call", allocs)
	}
	if allocs := testing.AllocsPerRun(1000, func() { snap.Bundle(exact) }); allocs != 0 {
		t.Errorf("Bundle allocates %.1f times per call", allocs)
	}
	// Snapshots are immutable: an old one still sees a deleted bundle.
	if err := tb.Delete(exact); err != nil {
		t.Fatal(err)
	}
	if s, _ := snap.LookupIn(sa.ESP, 0x1000, d2); s == nil {
		t.Error("an old snapshot changed")
	}
	if s, _ := tb.Snapshot().LookupIn(sa.ESP, 0x1000, d2); s != nil {
		t.Error("the new snapshot still has the deleted SA")
	}
}

func linearMatch(ps map[uint32]Policy, dir sa.Direction, f sa.Flow) (uint32, bool) {
	var best *Policy
	for _, p := range ps {
		if p.Dir != dir || !p.Sel.Matches(f) {
			continue
		}
		if best == nil || better(&p, best) {
			c := p
			best = &c
		}
	}
	if best == nil {
		return 0, false
	}
	return best.ID, true
}

func TestPolicyMatchAgainstReference(t *testing.T) {
	tb := newTable(t, "full")
	rng := rand.New(rand.NewPCG(1, 2))
	spread := 3 // policies use a narrower address space than the flows
	addr := func() netip.Addr {
		if rng.IntN(4) == 0 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(rng.IntN(spread)), 15: byte(rng.IntN(4))})
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(spread)), byte(rng.IntN(spread)), byte(rng.IntN(4))})
	}
	prefix := func(a netip.Addr) string {
		switch rng.IntN(4) {
		case 0:
			return ""
		case 1:
			return a.String()
		}
		bits := []int{16, 24, 28, 30}[rng.IntN(4)]
		if a.Is6() {
			bits *= 4
		}
		p, _ := a.Prefix(bits)
		return p.String()
	}
	protos := []string{"", "tcp", "udp", "icmp"}
	installed := map[uint32]Policy{}
	for i := range 300 {
		src := addr()
		dst := src
		if rng.IntN(2) == 0 {
			dst = addr()
			if dst.Is4() != src.Is4() {
				dst = src
			}
		}
		spec := saspec.PolicySpec{
			Dir: []string{"in", "out"}[rng.IntN(2)], Priority: rng.IntN(5),
			Src: prefix(src), Dst: prefix(dst), Proto: saspec.Ref(protos[rng.IntN(len(protos))]),
			Action: []string{"bypass", "discard"}[rng.IntN(2)],
		}
		if spec.Src == "" && spec.Dst == "" {
			spec.Src = src.String() // keep catch-all selectors out, so that some flows match nothing
		}
		if spec.Proto == "tcp" || spec.Proto == "udp" {
			spec.DstPort = uint16(rng.IntN(3))
		}
		id, err := tb.AddPolicy(spec)
		if err != nil {
			t.Fatalf("policy %d (%s): %v", i, spec, err)
		}
		info, _ := tb.Policy(fmt.Sprint(id))
		pp, _ := info.Spec.Plan()
		installed[id] = Policy{ID: id, Dir: pp.Dir, Priority: spec.Priority, Sel: pp.Sel, Action: pp.Action}
		// Delete some on the way, to exercise head replacement and shapes.
		if rng.IntN(5) == 0 {
			for victim := range installed {
				if err := tb.DeletePolicy(fmt.Sprint(victim)); err != nil {
					t.Fatal(err)
				}
				delete(installed, victim)
				break
			}
		}
	}
	snap := tb.Snapshot()
	matched, unmatched := 0, 0
	spread = 12
	for i := range 5000 {
		src := addr()
		dst := addr()
		if dst.Is4() != src.Is4() {
			dst = src
		}
		f := sa.Flow{Src: src, Dst: dst, Proto: []uint8{6, 17, 1, 47}[rng.IntN(4)], DstPort: uint16(rng.IntN(3))}
		for _, dir := range []sa.Direction{sa.In, sa.Out} {
			want, ok := linearMatch(installed, dir, f)
			if ok {
				matched++
			} else {
				unmatched++
			}
			r := snap.Match(dir, f)
			switch {
			case !ok && r != nil:
				t.Fatalf("flow %d %+v %v: matched policy %d, reference matches none", i, f, dir, r.Policy.ID)
			case ok && r == nil:
				t.Fatalf("flow %d %+v %v: no match, reference matches %d (%+v)", i, f, dir, want, installed[want])
			case ok && r.Policy.ID != want:
				t.Fatalf("flow %d %+v %v: matched %d (%+v), reference %d (%+v)", i, f, dir, r.Policy.ID, *r.Policy, want, installed[want])
			}
		}
	}
	if matched < 1000 || unmatched < 100 {
		t.Errorf("the random flows are not a useful mix: %d matched, %d unmatched", matched, unmatched)
	}
	t.Logf("%d policies, %d shapes out, %d shapes in; %d flows matched, %d did not", len(installed), len(snap.pol[1].shapes), len(snap.pol[0].shapes), matched, unmatched)
	f := sa.Flow{Src: netip.MustParseAddr("10.1.1.1"), Dst: netip.MustParseAddr("10.2.2.2"), Proto: 6, DstPort: 1}
	if allocs := testing.AllocsPerRun(1000, func() { snap.MatchOut(f); snap.MatchIn(f) }); allocs != 0 {
		t.Errorf("policy match allocates %.1f times per call", allocs)
	}
}

func TestPolicyPriorityAndOrder(t *testing.T) {
	tb := newTable(t, "full")
	add := func(s saspec.PolicySpec) uint32 {
		t.Helper()
		id, err := tb.AddPolicy(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return id
	}
	def := add(saspec.PolicySpec{Name: "default", Dir: "out", Priority: 100, Action: "discard"})
	subnet := add(saspec.PolicySpec{Name: "subnet", Dir: "out", Priority: 50, Dst: "10.0.0.0/8", Action: "bypass"})
	host := add(saspec.PolicySpec{Name: "host", Dir: "out", Priority: 60, Dst: "10.1.1.1", Action: "discard"})
	same := add(saspec.PolicySpec{Name: "same", Dir: "out", Priority: 50, Dst: "10.0.0.0/8", Action: "discard"})
	f := sa.Flow{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.1.1.1"), Proto: 17}
	check := func(want uint32) {
		t.Helper()
		r := tb.Snapshot().MatchOut(f)
		if r == nil || r.Policy.ID != want {
			t.Fatalf("matched %+v, want policy %d", r, want)
		}
	}
	check(subnet) // priority 50 beats the more specific host at 60; ID breaks the tie with "same"
	if err := tb.DeletePolicy("subnet"); err != nil {
		t.Fatal(err)
	}
	check(same)
	if err := tb.DeletePolicy(fmt.Sprint(same)); err != nil {
		t.Fatal(err)
	}
	check(host)
	if err := tb.DeletePolicy("host"); err != nil {
		t.Fatal(err)
	}
	check(def)
	if r := tb.Snapshot().MatchIn(f); r != nil {
		t.Errorf("inbound lookup matched outbound policy %d", r.Policy.ID)
	}
	ps := tb.Policies()
	if len(ps) != 1 || ps[0].ID != def {
		t.Errorf("Policies() = %+v", ps)
	}
	if err := tb.DeletePolicy("nope"); saspec.ErrorCode(err) != "not_found" {
		t.Errorf("delete unknown: %v", err)
	}
}

func TestPolicyBundles(t *testing.T) {
	tb := newTable(t, "full")
	tr := cbcSpec("tr", "out", 0x1000)
	tun := cbcSpec("tun", "out", 0x1001)
	tun.Mode, tun.Src, tun.Dst = "tunnel", "198.51.100.1", "198.51.100.2"
	in := cbcSpec("in", "in", 0x1002)
	in2 := cbcSpec("in2", "in", 0x1003)
	v6 := cbcSpec("v6", "out", 0x1004)
	v6.Src, v6.Dst = "2001:db8::1", "2001:db8::2"
	hTr, hTun := mustAdd(t, tb, tr), mustAdd(t, tb, tun)
	hIn, hIn2 := mustAdd(t, tb, in), mustAdd(t, tb, in2)
	mustAdd(t, tb, v6)

	cases := []struct {
		name  string
		spec  saspec.PolicySpec
		field string
		code  string
	}{
		{"transport over tunnel", saspec.PolicySpec{Name: "tot", Dir: "out", Dst: "10.0.0.0/8", Bundles: []saspec.Ref{"tr", "tun"}}, "", ""},
		{"by handle", saspec.PolicySpec{Dir: "out", Dst: "10.9.0.0/16", Bundles: []saspec.Ref{saspec.Ref(fmt.Sprint(hTun))}}, "", ""},
		{"inbound", saspec.PolicySpec{Name: "pin", Dir: "in", Src: "10.0.0.0/8", Bundles: []saspec.Ref{"in", "in2"}}, "", ""},
		{"wrong order", saspec.PolicySpec{Dir: "out", Bundles: []saspec.Ref{"tun", "tr"}}, "bundles", "invalid"},
		{"unknown bundle", saspec.PolicySpec{Dir: "out", Bundles: []saspec.Ref{"nope"}}, "bundles[0]", "not_found"},
		{"unknown handle", saspec.PolicySpec{Dir: "out", Bundles: []saspec.Ref{"9999"}}, "bundles[0]", "not_found"},
		{"direction mismatch", saspec.PolicySpec{Dir: "in", Bundles: []saspec.Ref{"tr"}}, "bundles[0]", "invalid"},
		{"family mismatch", saspec.PolicySpec{Dir: "out", Dst: "10.0.0.0/8", Bundles: []saspec.Ref{"v6"}}, "bundles[0]", "invalid"},
		{"tunnel carries other family", saspec.PolicySpec{Dir: "out", Dst: "2001:db8:1::/48", Bundles: []saspec.Ref{"tun"}}, "", ""},
		{"duplicate name", saspec.PolicySpec{Name: "tot", Dir: "out", Action: "bypass"}, "name", "conflict"},
		{"duplicate ID", saspec.PolicySpec{ID: 1, Dir: "out", Action: "bypass"}, "id", "conflict"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tb.AddPolicy(c.spec)
			if c.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkErr(t, err, c.field, c.code)
		})
	}

	f := sa.Flow{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: 6}
	r := tb.Snapshot().MatchOut(f)
	if r == nil || r.Action != saspec.Protect || len(r.Bundles) != 2 || r.Bundles[0].Handle != hTr || r.Bundles[1].Handle != hTun {
		t.Fatalf("transport-over-tunnel resolved to %+v", r)
	}
	ri := tb.Snapshot().MatchIn(sa.Flow{Src: f.Src, Dst: f.Dst})
	if !ri.Allows(tb.Snapshot().Bundle(hIn)) || !ri.Allows(tb.Snapshot().Bundle(hIn2)) || ri.Allows(tb.Snapshot().Bundle(hTr)) {
		t.Errorf("inbound Allows wrong for %+v", ri)
	}

	// Deleting a linked bundle leaves the policy incomplete: outbound
	// protect then resolves to no bundles (drop, OutNoStates).
	if err := tb.Delete(hTun); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(hIn2); err != nil {
		t.Fatal(err)
	}
	r = tb.Snapshot().MatchOut(f)
	if r == nil || r.Action != saspec.Protect || len(r.Bundles) != 0 {
		t.Fatalf("after deleting the tunnel bundle: %+v", r)
	}
	info, _ := tb.Policy("tot")
	if info.Complete {
		t.Error("policy with a missing bundle reported complete")
	}
	ri = tb.Snapshot().MatchIn(sa.Flow{Src: f.Src, Dst: f.Dst})
	if len(ri.Bundles) != 1 || !ri.Allows(tb.Snapshot().Bundle(hIn)) {
		t.Errorf("inbound policy after deleting one of its bundles: %+v", ri)
	}
	// Adding a bundle with the same name links it again (a rekey: new SPI,
	// fresh keys; the old keys may not serve another SA).
	tun.ESP.SPI = 0x2001
	tun.ESP.EncKey = keyForSPI(tun.ESP.EncKey.Len(), 0x2001)
	hTun2 := mustAdd(t, tb, tun)
	r = tb.Snapshot().MatchOut(f)
	if len(r.Bundles) != 2 || r.Bundles[1].Handle != hTun2 {
		t.Fatalf("after re-adding tun: %+v", r)
	}
	if info, _ := tb.Policy("tot"); !info.Complete {
		t.Error("policy still incomplete after the bundle came back")
	}
}

func TestTransportOverTunnelNeedsCapability(t *testing.T) {
	tb := newTable(t, "full")
	tr := cbcSpec("tr", "out", 0x1000)
	tun := cbcSpec("tun", "out", 0x1001)
	tun.Mode, tun.Src, tun.Dst = "tunnel", "198.51.100.1", "198.51.100.2"
	mustAdd(t, tb, tr)
	mustAdd(t, tb, tun)
	if _, err := tb.Caps().SetFeature("transport_tunnel_combined", false); err != nil {
		t.Fatal(err)
	}
	_, err := tb.AddPolicy(saspec.PolicySpec{Dir: "out", Bundles: []saspec.Ref{"tr", "tun"}})
	checkErr(t, err, "bundles", "disabled")
}
