package sadb

import (
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestManySAsBoundedMemory installs many inbound AES-GCM SAs and checks
// that memory grows by a small constant per SA, that the capacity is a
// hard limit, that a lookup stays fast, and that deleting them gives the
// memory back. CI installs 2^16 (2^14 under the race detector);
// SECNIC_LOAD_SAS=1048576 runs the million of docs/reliability.md (about
// five minutes and 4 GiB).
func TestManySAsBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	n := 1 << 16
	if raceEnabled {
		n = 1 << 14
	}
	if v := os.Getenv("SECNIC_LOAD_SAS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1<<24 {
			t.Fatalf("SECNIC_LOAD_SAS=%q: give a number of SAs from 1 to 16777216", v)
		}
	}
	capN := uint32(n + 16)
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: "full",
		Hardware: capabilities.Overrides{SaOffloadCapacity: &capN}, Current: capabilities.Overrides{SaOffloadCapacity: &capN}})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := NewTable(TableConfig{Caps: m, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	base := heapInUse()
	start := time.Now()
	key := make([]byte, 20)
	batch := make([]saspec.BundleSpec, 0, 1024)
	for i := 0; i < n; i += len(batch) {
		batch = batch[:0]
		for j := i; j < min(i+1024, n); j++ {
			binary.BigEndian.PutUint32(key, uint32(j))
			dst := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
			batch = append(batch, saspec.BundleSpec{Dir: "in", Dst: dst.String(),
				ESP: &saspec.SASpec{SPI: saspec.SPI(0x1000 + j), Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}})
		}
		if _, err := tb.AddBundles(batch); err != nil {
			t.Fatalf("at %d: %v", i, err)
		}
	}
	took := time.Since(start)
	if u := tb.Usage(); int(u.Bundles) != n {
		t.Fatalf("%d bundles installed, want %d", u.Bundles, n)
	}
	used := heapInUse() - base
	per := used / uint64(n)
	// Lookups stay O(1).
	snap := tb.Snapshot()
	ls := time.Now()
	const lookups = 100000
	for i := range lookups {
		j := (i * 7919) % n
		dst := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
		if s, _ := snap.LookupIn(sa.ESP, uint32(0x1000+j), dst); s == nil {
			t.Fatalf("SA %d not found", j)
		}
	}
	perLookup := time.Since(ls) / lookups
	t.Logf("%d SAs: added in %v (%v per SA), heap %d MiB (%d bytes per SA), lookup %v", n, took.Round(time.Millisecond), took/time.Duration(n), used>>20, per, perLookup)
	const maxPer = 6 << 10
	if per > maxPer {
		t.Errorf("%d bytes per SA, want at most %d", per, maxPer)
	}
	// One more than the capacity is refused, not grown into.
	for i := n; i < int(capN); i++ {
		binary.BigEndian.PutUint32(key, uint32(i))
		if _, err := tb.Add(saspec.BundleSpec{Dir: "in", Dst: "192.0.2.1", ESP: &saspec.SASpec{SPI: saspec.SPI(0x1000 + i), Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}}); err != nil {
			t.Fatal(err)
		}
	}
	binary.BigEndian.PutUint32(key, 0xffffffff)
	if _, err := tb.Add(saspec.BundleSpec{Dir: "in", Dst: "192.0.2.1", ESP: &saspec.SASpec{SPI: 0xfffffff0, Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}}); saspec.ErrorCode(err) != "capacity" {
		t.Errorf("an SA beyond the capacity: %v", err)
	}
	// Deleting every SA gives the memory back.
	var hs []sa.Handle
	for _, bi := range tb.List(false) {
		hs = append(hs, bi.Handle)
	}
	for i := 0; i < len(hs); i += 4096 {
		for _, err := range tb.DeleteBundles(hs[i:min(i+4096, len(hs))]) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A key-use ledger may keep a small record of every key used.
	if left := heapInUse(); left > base+used/4 {
		t.Errorf("after deleting every SA the heap is %d MiB above the start (it was %d MiB with them)", (left-base)>>20, used>>20)
	}
}
