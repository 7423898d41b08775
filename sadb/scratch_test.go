package sadb

import (
	"strings"
	"testing"

	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

func TestSPIClashNamesTheHolder(t *testing.T) {
	tb := newTable(t, "full")
	if _, err := tb.Reconcile(saspec.State{SAs: []saspec.BundleSpec{gcmSpec("cfg", 0x100, "192.0.2.2")}}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"a", "b", "c"} {
		if _, err := tb.Add(gcmSpec(n, uint32(0x200+i), "192.0.2.2")); err != nil {
			t.Fatal(err)
		}
	}
	wild := gcmSpec("w", 0x300, "")
	if _, err := tb.Add(wild); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		spec saspec.BundleSpec
		want string
	}{
		{"exact", gcmSpec("x", 0x202, "192.0.2.2"), `already used by bundle 4 ("c", added through the API)`},
		{"config", gcmSpec("x", 0x100, "192.0.2.2"), `already used by bundle 1 ("cfg", from the configuration file)`},
		{"under a wildcard", gcmSpec("x", 0x300, "192.0.2.9"), `already used by bundle 5 ("w", added through the API), whose destination is the wildcard`},
		{"wildcard over exact", gcmSpec("x", 0x201, ""), `already used by bundle 3 ("b", added through the API) with a specific destination`},
	}
	for _, c := range cases {
		_, err := tb.Add(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCopyIntoKeepsHandles(t *testing.T) {
	src := newTable(t, "full")
	for i := range 5 {
		if _, err := src.Add(gcmSpec("", uint32(0x400+i), "192.0.2.2")); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []sa.Handle{1, 2, 4} {
		if err := src.Delete(h); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Reconcile(saspec.State{
		SAs:      []saspec.BundleSpec{gcmSpec("cfg", 0x500, "192.0.2.2")},
		Policies: []saspec.PolicySpec{{Name: "p", Dir: "in", Src: "10.2.0.0/16", Dst: "10.1.0.0/16", Bundles: []saspec.Ref{"cfg"}}},
	}); err != nil {
		t.Fatal(err)
	}
	dst := newTable(t, "full")
	if err := src.CopyInto(dst); err != nil {
		t.Fatal(err)
	}
	a, b := src.List(true), dst.List(true)
	if len(a) != len(b) {
		t.Fatalf("copied %d of %d bundles", len(b), len(a))
	}
	for i := range a {
		if a[i].Handle != b[i].Handle || a[i].Origin != b[i].Origin || a[i].Spec.String() != b[i].Spec.String() || !a[i].Spec.ESP.EncKey.Equal(b[i].Spec.ESP.EncKey) {
			t.Errorf("bundle %d: %+v, copy %+v", i, a[i].Spec, b[i].Spec)
		}
	}
	pa, pb := src.Policies(), dst.Policies()
	if len(pa) != 1 || len(pb) != 1 || pa[0].ID != pb[0].ID || pa[0].Origin != pb[0].Origin {
		t.Errorf("policies %+v, copy %+v", pa, pb)
	}
	// New handles in the copy follow the source's.
	h, err := dst.Add(gcmSpec("", 0x600, "192.0.2.2"))
	if err != nil || h != 7 {
		t.Errorf("next handle in the copy: %d, %v; want 7", h, err)
	}
	if err := dst.CopyInto(src); err == nil {
		t.Error("CopyInto a non-empty table was accepted")
	}
}
