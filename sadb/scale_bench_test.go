package sadb

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/saspec"
)

// cpuTime returns the CPU time the process has used (user and system,
// every thread: the garbage collector's workers included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// scaleTable returns an empty table with room for n bundles.
func scaleTable(tb testing.TB, n int) *Table {
	capN := uint32(n + 16)
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: "full",
		Hardware: capabilities.Overrides{SaOffloadCapacity: &capN}, Current: capabilities.Overrides{SaOffloadCapacity: &capN}})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := NewTable(TableConfig{Caps: m, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// inboundBatch fills specs with inbound AES-GCM-128 bundles lo..lo+len-1,
// each with its own key, SPI and destination.
func inboundBatch(specs []saspec.BundleSpec, lo int) {
	key := make([]byte, 20)
	for i := range specs {
		j := lo + i
		binary.BigEndian.PutUint32(key, uint32(j))
		key[4] = byte(j >> 24)
		dst := netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)})
		specs[i] = saspec.BundleSpec{Dir: "in", Mode: "tunnel", Src: "192.0.2.1", Dst: dst.String(),
			ESP: &saspec.SASpec{SPI: saspec.SPI(0x1000 + j), Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}}
	}
}

// BenchmarkAddBatched adds 100k inbound AES-GCM SAs in ten batches of
// 10k (the issue 15 figure) per iteration, and reports SAs added per
// second and the heap each SA holds.
func BenchmarkAddBatched(b *testing.B) {
	for _, n := range []int{100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			const batch = 10000
			specs := make([]saspec.BundleSpec, batch)
			var took, cpu time.Duration
			var heap uint64
			for b.Loop() {
				b.StopTimer()
				tb := scaleTable(b, n)
				base := heapInUse()
				b.StartTimer()
				for lo := 0; lo < n; lo += batch {
					b.StopTimer()
					inboundBatch(specs, lo)
					b.StartTimer()
					t0, c0 := time.Now(), cpuTime()
					if _, err := tb.AddBundles(specs); err != nil {
						b.Fatal(err)
					}
					took += time.Since(t0)
					cpu += cpuTime() - c0
				}
				b.StopTimer()
				heap = heapInUse() - base
				if f := os.Getenv("SECNIC_HEAPPROF"); f != "" {
					w, err := os.Create(f)
					if err != nil {
						b.Fatal(err)
					}
					pprof.WriteHeapProfile(w)
					w.Close()
				}
				tb.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "SAs/s")
			// On a shared machine the wall-clock rate follows the load;
			// the process's CPU time per SA (GC included) does less.
			b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/SA")
			b.ReportMetric(float64(heap)/float64(n), "heap-B/SA")
		})
	}
}
