package control

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// TestPagedListing pages GET /v1/sas and GET /v1/stats: pages of the
// limit asked for with Next on all but the last, every bundle once in
// handle order, the clients that follow the pages, and bad page
// parameters refused.
func TestPagedListing(t *testing.T) {
	c, _, _, _ := testServer(t, capabilities.Config{Profile: "full"})
	ctx := context.Background()
	var specs []saspec.BundleSpec
	for i := range 25 {
		specs = append(specs, gcm(fmt.Sprintf("b%d", i), uint32(0x1000+i)))
	}
	if r, err := c.AddSAs(ctx, specs); err != nil || r.Offloaded != 25 {
		t.Fatalf("add: %+v, %v", r, err)
	}
	var sizes []int
	var last sa.Handle
	err := c.EachSAPage(ctx, false, 10, func(p ListSAsResponse) error {
		sizes = append(sizes, len(p.Bundles))
		for _, b := range p.Bundles {
			if b.Handle <= last {
				return fmt.Errorf("handle %d after %d", b.Handle, last)
			}
			last = b.Handle
		}
		if p.Usage.Bundles != 25 {
			return fmt.Errorf("usage %+v on a page", p.Usage)
		}
		if (p.Next != 0) != (len(sizes) < 3) || (p.Next != 0 && p.Next != last) {
			return fmt.Errorf("page %d: next %d, last handle %d", len(sizes), p.Next, last)
		}
		return nil
	})
	if err != nil || fmt.Sprint(sizes) != "[10 10 5]" {
		t.Fatalf("pages of 10: %v, %v", sizes, err)
	}
	list, err := c.ListSAs(ctx, false)
	if err != nil || len(list.Bundles) != 25 || list.Next != 0 {
		t.Fatalf("ListSAs: %d bundles, next %d, %v", len(list.Bundles), list.Next, err)
	}
	p, err := c.StatsPage(ctx, 0, 7)
	if err != nil || len(p.Table.SAs) != 7 || p.Next != p.Table.SAs[6].Handle || p.Table.Usage.Bundles != 25 {
		t.Fatalf("stats page of 7: %d SAs, next %d, %v", len(p.Table.SAs), p.Next, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || len(st.Table.SAs) != 25 || st.Next != 0 {
		t.Fatalf("Stats: %d SAs, next %d, %v", len(st.Table.SAs), st.Next, err)
	}
	for _, q := range []string{"limit=0", "limit=10001", "limit=x", "after=-1", "after=x"} {
		for _, path := range []string{"/v1/sas?", "/v1/stats?"} {
			err := c.do(ctx, http.MethodGet, path+q, nil, nil)
			if st, code := apiCode(t, err); st != http.StatusBadRequest || code != "invalid" {
				t.Errorf("%s%s: %d %s", path, q, st, code)
			}
		}
	}
}
