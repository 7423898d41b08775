package sadb

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

func TestAddValidationAgainstTable(t *testing.T) {
	cases := []struct {
		name    string
		profile string
		setup   func(t *testing.T, tb *Table)
		spec    func() saspec.BundleSpec
		field   string
		code    string
	}{
		{"ok gcm", "netdevsim", nil, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "", ""},
		{"enc key too short", "netdevsim", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ESP.EncKey = testKey(16, 0)
			return b
		}, "esp.enc_key", "invalid"},
		{"auth key wrong length", "full", nil, func() saspec.BundleSpec {
			b := cbcSpec("a", "in", 0x1000)
			b.ESP.AuthKey = testKey(20, 0)
			return b
		}, "esp.auth_key", "invalid"},
		{"ah key wrong length", "full", nil, func() saspec.BundleSpec {
			return saspec.BundleSpec{Dir: "in", AH: &saspec.SASpec{SPI: 0x1000, Auth: "hmac-sha1-96", AuthKey: testKey(16, 0)}}
		}, "ah.auth_key", "invalid"},
		{"combined mode with auth key", "full", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ESP.AuthKey = testKey(16, 0)
			return b
		}, "esp.auth_key", "invalid"},
		{"gcm with hmac", "full", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ESP.Auth = "hmac-sha256-128"
			return b
		}, "", "invalid"},
		{"bad gcm icv", "full", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ESP.ICVLen = 10
			return b
		}, "", "invalid"},
		{"AH not in netdevsim", "netdevsim", nil, func() saspec.BundleSpec {
			return saspec.BundleSpec{Dir: "in", AH: &saspec.SASpec{SPI: 0x1000, Auth: "hmac-sha256-128", AuthKey: testKey(32, 0)}}
		}, "", "not_supported"},
		{"cbc not in netdevsim", "netdevsim", nil, func() saspec.BundleSpec { return cbcSpec("a", "in", 0x1000) }, "", "not_supported"},
		{"esn not in netdevsim", "netdevsim", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ESN = true
			return b
		}, "", "not_supported"},
		{"tunnel not in ixgbe", "ixgbe", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.Mode = "tunnel"
			return b
		}, "", "not_supported"},
		{"algorithm disabled", "full", func(t *testing.T, tb *Table) {
			if _, err := tb.Caps().SetEncryption("aes-cbc-128", false); err != nil {
				t.Fatal(err)
			}
		}, func() saspec.BundleSpec { return cbcSpec("a", "in", 0x1000) }, "", "disabled"},
		{"ESP disabled by offload parameters", "full", func(t *testing.T, tb *Table) {
			if _, err := tb.Caps().SetOffloadParameters(capabilities.OffloadParameters{IPsecV2: capabilities.IPsecV2AHEnabled}); err != nil {
				t.Fatal(err)
			}
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "", "disabled"},
		{"IPv6 disabled", "full", func(t *testing.T, tb *Table) {
			if _, err := tb.Caps().SetFeature(capabilities.FeatureIPv6Supported, false); err != nil {
				t.Fatal(err)
			}
		}, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "2001:db8::2")
			b.Src = "2001:db8::1"
			return b
		}, "", "disabled"},
		{"legacy without allow_legacy", "full", nil, func() saspec.BundleSpec {
			return saspec.BundleSpec{Dir: "in", ESP: &saspec.SASpec{SPI: 0x1000, Enc: "3des-cbc", Auth: "hmac-sha1-96", EncKey: testKey(24, 0), AuthKey: testKey(20, 0)}}
		}, "", "disabled"},
		{"legacy allowed by config but not by bundle", "full", func(t *testing.T, tb *Table) {
			if _, err := tb.Caps().SetFeature(capabilities.FeatureLegacyAlgorithms, true); err != nil {
				t.Fatal(err)
			}
			if _, err := tb.Caps().SetEncryption("3des-cbc", true); err != nil {
				t.Fatal(err)
			}
		}, func() saspec.BundleSpec {
			return saspec.BundleSpec{Dir: "in", ESP: &saspec.SASpec{SPI: 0x1000, Enc: "3des-cbc", Auth: "hmac-sha1-96", EncKey: testKey(24, 0), AuthKey: testKey(20, 0)}}
		}, "esp", "invalid"},
		{"replay window above current maximum", "mlx5", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.ReplayWindow = intp(1024)
			return b
		}, "", "not_supported"},
		{"duplicate SPI same destination", "full", func(t *testing.T, tb *Table) {
			mustAdd(t, tb, gcmSpec("x", 0x1000, "192.0.2.2"))
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "esp.spi", "conflict"},
		{"duplicate SPI under wildcard", "full", func(t *testing.T, tb *Table) {
			mustAdd(t, tb, gcmSpec("x", 0x1000, ""))
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "esp.spi", "conflict"},
		{"wildcard would shadow", "full", func(t *testing.T, tb *Table) {
			mustAdd(t, tb, gcmSpec("x", 0x1000, "192.0.2.2"))
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "") }, "esp.spi", "conflict"},
		{"same SPI other destination is fine", "full", func(t *testing.T, tb *Table) {
			mustAdd(t, tb, gcmSpec("x", 0x1000, "192.0.2.3"))
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "", ""},
		{"same SPI other direction is fine", "full", func(t *testing.T, tb *Table) {
			b := gcmSpec("x", 0x1000, "192.0.2.2")
			b.Dir = "out"
			mustAdd(t, tb, b)
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "", ""},
		{"duplicate name", "full", func(t *testing.T, tb *Table) {
			mustAdd(t, tb, gcmSpec("a", 0x2000, "192.0.2.2"))
		}, func() saspec.BundleSpec { return gcmSpec("a", 0x1000, "192.0.2.2") }, "name", "conflict"},
		{"structural error", "full", nil, func() saspec.BundleSpec {
			b := gcmSpec("a", 0x1000, "192.0.2.2")
			b.Dir = "up"
			return b
		}, "dir", "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := newTable(t, c.profile)
			if c.setup != nil {
				c.setup(t, tb)
			}
			before := tb.Usage()
			gen := tb.Snapshot().Gen()
			h, err := tb.Add(c.spec())
			if c.code == "" {
				if err != nil || h == 0 {
					t.Fatalf("Add = %d, %v; want success", h, err)
				}
				return
			}
			if h != 0 {
				t.Errorf("refused add returned handle %d", h)
			}
			if c.field != "" {
				checkErr(t, err, c.field, c.code)
			} else if got := saspec.ErrorCode(err); got != c.code {
				t.Fatalf("code = %q, want %q (error: %v)", got, c.code, err)
			}
			if tb.Usage() != before || tb.Snapshot().Gen() != gen {
				t.Errorf("refused add left something behind: usage %+v -> %+v, gen %d -> %d", before, tb.Usage(), gen, tb.Snapshot().Gen())
			}
		})
	}
}

func mustAdd(t testing.TB, tb *Table, b saspec.BundleSpec) sa.Handle {
	t.Helper()
	h, err := tb.Add(b)
	if err != nil {
		t.Fatalf("add %s: %v", b, err)
	}
	return h
}

func TestCapacityExhaustionAndRecovery(t *testing.T) {
	tb := newTable(t, "netdevsim")
	capacity := int(tb.Caps().Current().SaOffloadCapacity)
	if capacity != 33 {
		t.Fatalf("netdevsim capacity = %d, want 33", capacity)
	}
	var hs []sa.Handle
	for i := range capacity {
		hs = append(hs, mustAdd(t, tb, gcmSpec(fmt.Sprintf("b%d", i), uint32(0x1000+i), "192.0.2.2")))
	}
	_, err := tb.Add(gcmSpec("extra", 0x9999, "192.0.2.2"))
	if !errors.Is(err, saspec.ErrCapacity) || saspec.ErrorCode(err) != "capacity" {
		t.Fatalf("add beyond capacity: %v; want a capacity error", err)
	}
	for _, want := range []string{"33", "delete"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("capacity error %q does not mention %q", err, want)
		}
	}
	if u := tb.Usage(); u.Bundles != 33 || u.InboundSAs != 33 {
		t.Errorf("usage after refusal = %+v", u)
	}
	if err := tb.Delete(hs[7]); err != nil {
		t.Fatal(err)
	}
	h := mustAdd(t, tb, gcmSpec("extra", 0x9999, "192.0.2.2"))
	if s, _ := tb.Snapshot().LookupIn(sa.ESP, 0x9999, netip.MustParseAddr("192.0.2.2")); s == nil || tb.Snapshot().Bundle(h) == nil {
		t.Error("bundle added after recovery is not in the snapshot")
	}
	// The freed slot's SPI can be reused as well.
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, tb, gcmSpec("again", 0x1007, "192.0.2.2"))
}

func TestPerDirectionCapacity(t *testing.T) {
	hw, _ := newManager(t, "ixgbe").Snapshot()
	hw.Limits.SAsPerDirection = 2
	cur := capabilities.DefaultConfig(hw)
	m, err := capabilities.NewManager(hw, cur)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := NewTable(TableConfig{Caps: m, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	mustAdd(t, tb, gcmSpec("i1", 0x1000, "192.0.2.2"))
	mustAdd(t, tb, gcmSpec("i2", 0x1001, "192.0.2.2"))
	if _, err := tb.Add(gcmSpec("i3", 0x1002, "192.0.2.2")); saspec.ErrorCode(err) != "capacity" || !strings.Contains(err.Error(), "inbound") {
		t.Fatalf("third inbound SA: %v; want an inbound capacity error", err)
	}
	out := gcmSpec("o1", 0x1002, "192.0.2.2")
	out.Dir = "out"
	mustAdd(t, tb, out)
}

func TestMultiBundleNDISSemantics(t *testing.T) {
	tb := newTable(t, "full")
	sub := tb.Subscribe(64)
	defer sub.Close()
	bad := gcmSpec("bad", 0x2001, "192.0.2.2")
	bad.ESP.EncKey = testKey(3, 0)
	res, err := tb.AddBundles([]saspec.BundleSpec{gcmSpec("one", 0x2000, "192.0.2.2"), bad, gcmSpec("three", 0x2002, "192.0.2.2")})
	if err != nil {
		t.Fatalf("request with some valid entries failed: %v", err)
	}
	if res[0].Handle == 0 || res[2].Handle == 0 || res[0].Handle == res[2].Handle {
		t.Errorf("offloaded entries got handles %d and %d", res[0].Handle, res[2].Handle)
	}
	if res[1].Handle != 0 || res[1].Code != "invalid" || !strings.Contains(res[1].Error, "sas[1].esp.enc_key") {
		t.Errorf("failed entry = %+v; want no handle and an error naming sas[1].esp.enc_key", res[1])
	}
	if got := types(drain(sub)); len(got) != 2 || got[0] != EventSAAdded || got[1] != EventSAAdded {
		t.Errorf("events = %v, want two sa_added", got)
	}

	gen := tb.Snapshot().Gen()
	res, err = tb.AddBundles([]saspec.BundleSpec{bad, gcmSpec("one", 0x3000, "192.0.2.2")})
	if err == nil {
		t.Fatal("request where every entry fails succeeded")
	}
	if !strings.Contains(err.Error(), "no bundle was offloaded") || res[0].Handle != 0 || res[1].Handle != 0 || res[1].Code != "conflict" {
		t.Errorf("err = %v, results = %+v", err, res)
	}
	if tb.Snapshot().Gen() != gen || len(drain(sub)) != 0 || tb.Usage().Bundles != 2 {
		t.Error("a failed request changed the table or emitted events")
	}
	if _, err := tb.AddBundles(nil); saspec.ErrorCode(err) != "invalid" {
		t.Errorf("empty request: %v", err)
	}
	// Within one request, a later entry sees the earlier ones (duplicate SPI).
	res, err = tb.AddBundles([]saspec.BundleSpec{gcmSpec("", 0x4000, "192.0.2.2"), gcmSpec("", 0x4000, "192.0.2.2")})
	if err != nil || res[0].Handle == 0 || res[1].Code != "conflict" {
		t.Errorf("duplicate inside one request: err=%v results=%+v", err, res)
	}
}

func TestDeleteZeroesKeys(t *testing.T) {
	tb := newTable(t, "full")
	spec := gcmSpec("k", 0x1000, "192.0.2.2")
	spec.AH = &saspec.SASpec{SPI: 0x1001, Auth: "hmac-sha256-128", AuthKey: testKey(32, 0x40)}
	h := mustAdd(t, tb, spec)

	tb.mu.Lock()
	be := tb.bundles[h]
	encKey, ahKey := be.spec.ESP.EncKey.Bytes(), be.spec.AH.AuthKey.Bytes()
	tb.mu.Unlock()
	b := tb.Snapshot().Bundle(h)
	if b == nil || b.ESP == nil || b.AH == nil {
		t.Fatal("bundle not published")
	}
	withKeys, err := tb.Get("k", true)
	if err != nil || withKeys.Spec.ESP.EncKey.Hex() != spec.ESP.EncKey.Hex() {
		t.Fatalf("show with keys: %v", err)
	}
	without, _ := tb.Get("k", false)
	if !without.Spec.ESP.EncKey.IsZero() || !without.Spec.ESP.KeysRedacted {
		t.Error("show without keys returned key material")
	}

	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	for what, k := range map[string][]byte{"esp enc_key": encKey, "ah auth_key": ahKey} {
		for _, c := range k {
			if c != 0 {
				t.Errorf("%s copy kept by the table is not zeroed: %x", what, k)
				break
			}
		}
	}
	for _, s := range []*sa.SA{b.ESP, b.AH} {
		if !s.Suite.Closed() || !s.Expired() {
			t.Errorf("%v SA after delete: suite closed=%v expired=%v", s.Proto, s.Suite.Closed(), s.Expired())
		}
	}
	if s, _ := tb.Snapshot().LookupIn(sa.ESP, 0x1000, netip.MustParseAddr("192.0.2.2")); s != nil {
		t.Error("deleted SA still found by LookupIn")
	}
	if _, err := tb.Get("k", false); saspec.ErrorCode(err) != "not_found" {
		t.Errorf("get after delete: %v", err)
	}
	if err := tb.Delete(h); saspec.ErrorCode(err) != "not_found" {
		t.Errorf("second delete: %v", err)
	}
}

func TestUpdateSA(t *testing.T) {
	tb := newTable(t, "full")
	out := cbcSpec("out", "out", 0x1000)
	out.ESN = true
	hOut := mustAdd(t, tb, out)
	in := cbcSpec("in", "in", 0x1001)
	in.ESN, in.SeqHigh = true, 2
	hIn := mustAdd(t, tb, in)
	plain := mustAdd(t, tb, cbcSpec("plain", "in", 0x1002))
	sub := tb.Subscribe(16)
	defer sub.Close()

	cases := []struct {
		name string
		h    sa.Handle
		u    saspec.UpdateSpec
		code string
	}{
		{"outbound", hOut, saspec.UpdateSpec{SeqHigh: 5}, ""},
		{"inbound by SPI", hIn, saspec.UpdateSpec{SeqHigh: 9, Proto: "esp", SPI: 0x1001}, ""},
		{"backwards", hOut, saspec.UpdateSpec{SeqHigh: 4}, "invalid"},
		{"no ESN", plain, saspec.UpdateSpec{SeqHigh: 1}, "invalid"},
		{"unknown handle", 999, saspec.UpdateSpec{SeqHigh: 1}, "not_found"},
		{"wrong SPI", hIn, saspec.UpdateSpec{SeqHigh: 10, SPI: 0x7777}, "not_found"},
		{"wrong proto", hIn, saspec.UpdateSpec{SeqHigh: 10, Proto: "ah"}, "not_found"},
		{"bad proto", hIn, saspec.UpdateSpec{SeqHigh: 10, Proto: "gre"}, "invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := tb.Update(c.h, c.u)
			if got := saspec.ErrorCode(err); got != c.code {
				t.Fatalf("code = %q, want %q (%v)", got, c.code, err)
			}
		})
	}
	snap := tb.Snapshot()
	if got := snap.Bundle(hOut).ESP.LastSeq(); got != 5<<32 {
		t.Errorf("outbound sequence after update = %#x, want %#x", got, uint64(5)<<32)
	}
	if got := snap.Bundle(hIn).ESP.Replay.Top(); got != 9<<32 {
		t.Errorf("inbound window top after update = %#x, want %#x", got, uint64(9)<<32)
	}
	info, _ := tb.Get("out", false)
	if info.SAs[0].SeqHigh != 5 {
		t.Errorf("show reports seq_high %d", info.SAs[0].SeqHigh)
	}
	if got := types(drain(sub)); len(got) != 2 || got[0] != EventSAUpdated {
		t.Errorf("events = %v, want two sa_updated", got)
	}
}

func TestEventsOnEveryChange(t *testing.T) {
	tb := newTable(t, "full")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tb.Start(ctx)
	sub := tb.Subscribe(64)
	defer sub.Close()
	next := func(want EventType) Event {
		t.Helper()
		select {
		case e := <-sub.C:
			if e.Type != want {
				t.Fatalf("event %+v, want type %s", e, want)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
		return Event{}
	}

	out := cbcSpec("o", "out", 0x1000)
	out.ESN = true
	h := mustAdd(t, tb, out)
	if e := next(EventSAAdded); e.Handle != h || e.Name != "o" || e.Seq == 0 {
		t.Errorf("sa_added = %+v", e)
	}
	if err := tb.Update(h, saspec.UpdateSpec{SeqHigh: 1}); err != nil {
		t.Fatal(err)
	}
	next(EventSAUpdated)
	id, err := tb.AddPolicy(saspec.PolicySpec{Name: "p", Dir: "out", Bundles: []saspec.Ref{"o"}})
	if err != nil {
		t.Fatal(err)
	}
	if e := next(EventPolicyAdded); e.PolicyID != id {
		t.Errorf("policy_added = %+v", e)
	}
	if err := tb.DeletePolicy("p"); err != nil {
		t.Fatal(err)
	}
	next(EventPolicyDeleted)
	if err := tb.Delete(h); err != nil {
		t.Fatal(err)
	}
	next(EventSADeleted)
	if _, err := tb.Reconcile(saspec.State{}); err != nil {
		t.Fatal(err)
	}
	next(EventReconciled)

	// Capabilities changes arrive as indications.
	if _, err := tb.Caps().SetOffloadParameters(capabilities.OffloadParameters{IPsecV2: capabilities.IPsecV2ESPEnabled}); err != nil {
		t.Fatal(err)
	}
	e := next(EventIndication)
	if e.Indication == nil || e.Indication.Status != capabilities.StatusTaskOffloadCurrentConfig || e.Indication.Record.Ah {
		t.Errorf("indication = %+v", e.Indication)
	}
	if _, err := tb.Caps().SetFeature(capabilities.FeatureTunnel, false); err != nil {
		t.Fatal(err)
	}
	next(EventIndication)
}

func TestSubscriptionDropsOldest(t *testing.T) {
	tb := newTable(t, "full")
	sub := tb.Subscribe(2)
	defer sub.Close()
	for i := range 5 {
		mustAdd(t, tb, gcmSpec("", uint32(0x1000+i), "192.0.2.2"))
	}
	es := drain(sub)
	if len(es) != 2 || sub.Dropped() != 3 {
		t.Fatalf("got %d events, dropped %d; want 2 and 3", len(es), sub.Dropped())
	}
	if es[0].Seq+1 != es[1].Seq || es[1].Seq != 5 {
		t.Errorf("kept events %d and %d; want the newest (4 and 5)", es[0].Seq, es[1].Seq)
	}
	sub.Close()
	sub.Close()
	if _, ok := <-sub.C; ok {
		t.Error("channel open after Close")
	}
}

func TestLifetimes(t *testing.T) {
	tb := newTable(t, "full")
	sub := tb.Subscribe(64)
	defer sub.Close()

	pk := gcmSpec("pk", 0x1000, "192.0.2.2")
	pk.Lifetime = saspec.LifetimeSpec{Soft: saspec.LimitSpec{Packets: 2}, Hard: saspec.LimitSpec{Packets: 3}}
	hPk := mustAdd(t, tb, pk)
	by := gcmSpec("by", 0x1001, "192.0.2.2")
	by.Lifetime = saspec.LifetimeSpec{Soft: saspec.LimitSpec{Bytes: 1000}, Hard: saspec.LimitSpec{Bytes: 2000}}
	hBy := mustAdd(t, tb, by)
	tm := gcmSpec("tm", 0x1002, "192.0.2.2")
	tm.Lifetime = saspec.LifetimeSpec{Soft: saspec.LimitSpec{Seconds: 60}, Hard: saspec.LimitSpec{Seconds: 120}}
	hTm := mustAdd(t, tb, tm)
	sq := cbcSpec("sq", "out", 0x1003)
	hSq := mustAdd(t, tb, sq)
	drain(sub)

	snap := tb.Snapshot()
	s := snap.Bundle(hPk).ESP
	for i := range 3 {
		if !s.Account(100) {
			t.Fatalf("packet %d refused before the hard limit", i+1)
		}
	}
	if !s.Expired() || s.Account(100) {
		t.Error("SA still accepts packets after its hard packet limit")
	}
	b := snap.Bundle(hBy).ESP
	b.Account(1500)
	b.Account(600)

	tb.CheckLifetimes(time.Now()) // nothing due yet
	tb.CheckLifetimes(time.Now().Add(90 * time.Second))
	tb.CheckLifetimes(time.Now().Add(150 * time.Second))

	o := snap.Bundle(hSq).ESP
	max := o.MaxSeq()
	if err := o.SetSeq(max - max/SeqSoftFraction); err != nil {
		t.Fatal(err)
	}
	tb.CheckLifetimes(time.Now())
	if err := o.SetSeq(max); err != nil {
		t.Fatal(err)
	}
	tb.CheckLifetimes(time.Now())
	tb.CheckLifetimes(time.Now()) // no repeat

	type key struct {
		h      sa.Handle
		typ    EventType
		reason string
	}
	got := map[key]int{}
	for _, e := range drain(sub) {
		got[key{e.Handle, e.Type, e.Reason}]++
		if e.SPI == 0 || e.Proto != "esp" {
			t.Errorf("expiry event without SA identity: %+v", e)
		}
	}
	want := map[key]int{
		{hPk, EventSADeleteRequest, ReasonPackets}:  1,
		{hPk, EventSAExpired, ReasonPackets}:        1,
		{hBy, EventSADeleteRequest, ReasonBytes}:    1,
		{hBy, EventSAExpired, ReasonBytes}:          1,
		{hTm, EventSADeleteRequest, ReasonSeconds}:  1,
		{hTm, EventSAExpired, ReasonSeconds}:        1,
		{hSq, EventSADeleteRequest, ReasonSequence}: 1,
		{hSq, EventSAExpired, ReasonSequence}:       1,
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s %s (%s): %d events, want %d", k.typ, tableName(tb, k.h), k.reason, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected events: %v", got)
	}
	// Hard-expired SAs stay until deleted (NDIS: the NIC must not drop them).
	for _, h := range []sa.Handle{hPk, hBy, hTm} {
		info, err := tb.Get(fmt.Sprint(h), false)
		if err != nil || !info.SAs[0].Expired || !info.SAs[0].SoftExpired {
			t.Errorf("bundle %d after hard expiry: %+v, %v", h, info, err)
		}
	}
	if info, _ := tb.Get("sq", false); !info.SAs[0].SeqExhausted {
		t.Error("sequence exhaustion not shown")
	}
	if _, err := o.NextSeq(); !errors.Is(err, sa.ErrSeqExhausted) {
		t.Errorf("NextSeq after exhaustion: %v", err)
	}
}

func tableName(tb *Table, h sa.Handle) string {
	info, err := tb.Get(fmt.Sprint(h), false)
	if err != nil {
		return fmt.Sprint(h)
	}
	return info.Spec.Name
}

func TestConcurrentAddDeleteLookup(t *testing.T) {
	tb := newTable(t, "full")
	mustAdd(t, tb, gcmSpec("fixed", 0x100, "192.0.2.2"))
	if _, err := tb.AddPolicy(saspec.PolicySpec{Name: "fixed", Dir: "out", Action: "bypass", Dst: "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("192.0.2.2")
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := tb.Snapshot()
				if s, b := snap.LookupIn(sa.ESP, 0x100, dst); s == nil || b.Name != "fixed" {
					t.Error("lookup of a bundle that is never deleted failed")
					return
				}
				if r := snap.MatchOut(sa.Flow{Src: dst, Dst: netip.MustParseAddr("10.1.2.3")}); r == nil || r.Action != saspec.Bypass {
					t.Error("policy lookup failed during concurrent changes")
					return
				}
				snap.LookupIn(sa.ESP, 0x2000, dst)
			}
		}()
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 150 {
				spi := uint32(0x10000*(w+1) + i)
				h, err := tb.Add(gcmSpec("", spi, "192.0.2.2"))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := tb.AddPolicy(saspec.PolicySpec{Dir: "in", Src: fmt.Sprintf("10.%d.%d.0/24", w, i), Bundles: []saspec.Ref{saspec.Ref(fmt.Sprint(h))}}); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := tb.Delete(h); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if u := tb.Usage(); u.Bundles != 1+150 {
		t.Errorf("usage = %+v, want 151 bundles", u)
	}
	if n := tb.Snapshot().Len(); n != 151 {
		t.Errorf("snapshot holds %d bundles", n)
	}
}

// TestListPage pages through a table in pages of several sizes and checks
// that every bundle comes exactly once, in handle order, that each page
// reports whether more follow, and that StatsPage pages the same way.
func TestListPage(t *testing.T) {
	tb := scaleTable(t, 100)
	defer tb.Close()
	specs := make([]saspec.BundleSpec, 37)
	inboundBatch(specs, 0)
	if _, err := tb.AddBundles(specs); err != nil {
		t.Fatal(err)
	}
	// A gap in the handles: delete a few.
	all := tb.List(false)
	for _, i := range []int{0, 5, 6, 36} {
		if err := tb.Delete(all[i].Handle); err != nil {
			t.Fatal(err)
		}
	}
	want := tb.List(false)
	for _, limit := range []int{1, 2, 5, 32, 33, 34, 1000} {
		var got []sa.Handle
		var after sa.Handle
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: the listing does not end", limit)
			}
			page, more := tb.ListPage(after, limit, false)
			if len(page) > limit || (more && len(page) != limit) {
				t.Fatalf("limit %d: page of %d, more %v", limit, len(page), more)
			}
			st, smore := tb.StatsPage(after, limit)
			if smore != more || len(st.SAs) != len(page) || st.Usage.Bundles != uint32(len(want)) {
				t.Fatalf("limit %d: StatsPage has %d SAs (more %v), ListPage %d (more %v)", limit, len(st.SAs), smore, len(page), more)
			}
			for i, b := range page {
				got = append(got, b.Handle)
				if st.SAs[i].Handle != b.Handle {
					t.Fatalf("limit %d: stats for handle %d where the listing has %d", limit, st.SAs[i].Handle, b.Handle)
				}
			}
			if !more {
				break
			}
			after = page[len(page)-1].Handle
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: %d bundles listed, want %d", limit, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i].Handle {
				t.Fatalf("limit %d: bundle %d is handle %d, want %d", limit, i, got[i], want[i].Handle)
			}
		}
	}
	if page, more := tb.ListPage(want[len(want)-1].Handle, 10, false); len(page) != 0 || more {
		t.Fatalf("after the last handle: %d bundles, more %v", len(page), more)
	}
}
