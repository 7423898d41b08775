package control

import (
	"context"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/saspec"
)

// BenchmarkAPIAddSA measures adding one bundle per request through the
// client, HTTP over the unix socket, and the table.
func BenchmarkAPIAddSA(b *testing.B) {
	capacity := uint32(1 << 22)
	c, tb, _, _ := testServer(b, capabilities.Config{Hardware: capabilities.Overrides{SaOffloadCapacity: &capacity}})
	ctx := context.Background()
	key := saspec.KeyOf(make([]byte, 20))
	b.ReportAllocs()
	spi := uint32(0x1000)
	for b.Loop() {
		spi++
		spec := saspec.BundleSpec{Dir: "in", Dst: "192.0.2.2", ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: key}}
		if _, err := c.AddSAs(ctx, []saspec.BundleSpec{spec}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := tb.Usage().Bundles; got < 1 {
		b.Fatalf("table holds %d bundles", got)
	}
}

// BenchmarkAPIAddSABatch measures bundles offloaded per second when 100
// are sent in one request (NDIS ADD_SA with a linked list).
func BenchmarkAPIAddSABatch(b *testing.B) {
	capacity := uint32(1 << 22)
	c, _, _, _ := testServer(b, capabilities.Config{Hardware: capabilities.Overrides{SaOffloadCapacity: &capacity}})
	ctx := context.Background()
	key := saspec.KeyOf(make([]byte, 20))
	b.ReportAllocs()
	spi := uint32(0x1000)
	specs := make([]saspec.BundleSpec, 100)
	for b.Loop() {
		for i := range specs {
			spi++
			specs[i] = saspec.BundleSpec{Dir: "in", Dst: "192.0.2.2", ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: key}}
		}
		if r, err := c.AddSAs(ctx, specs); err != nil || r.Offloaded != len(specs) {
			b.Fatal(r, err)
		}
	}
	b.ReportMetric(float64(b.N*len(specs))/b.Elapsed().Seconds(), "bundles/s")
}
