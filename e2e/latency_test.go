package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/twonic"
)

var rttLine = regexp.MustCompile(`= ([0-9.]+)/([0-9.]+)/([0-9.]+)/`)

// BenchmarkIdlePing measures the round-trip time of ping(8) through both
// NICs when the tunnel is otherwise idle (300 echo requests 5 ms apart per
// op; the default link wire, AES-GCM-128), for the datapath's worker and
// busy-poll settings. It reports ping's min, avg and max RTT in µs. Both
// daemons run in this process (secnic bench's rr runs them as processes).
func BenchmarkIdlePing(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	for _, c := range []struct {
		workers int
		poll    time.Duration
	}{{1, -1}, {1, 50 * time.Microsecond}, {2, -1}, {2, 50 * time.Microsecond}} {
		b.Run(fmt.Sprintf("workers=%d/busy_poll=%v", c.workers, max(c.poll, 0)), func(b *testing.B) {
			pair, err := netlab.NewPair(netlab.PairConfig{Prefix: nsPrefix})
			if err != nil {
				b.Fatal(err)
			}
			defer pair.Close()
			ca, cb, err := twonic.Configs(twonic.Scenario{LogLevel: "warn"}, pair)
			if err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			for i, cfg := range []*daemon.Config{ca, cb} {
				cfg.StateDir = filepath.Join(dir, strconv.Itoa(i))
				cfg.Datapath.Workers = c.workers
				cfg.Datapath.BusyPoll = daemon.Duration(c.poll)
				d, err := daemon.Start(context.Background(), cfg, daemon.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
			}
			dst := twonic.AddressesFor("tunnel", "b").Host4.Addr()
			var lo, avg, hi float64
			for range b.N {
				r, err := twonic.Ping(context.Background(), pair.A, dst, twonic.PingOptions{Count: 300, Interval: 5 * time.Millisecond, Wait: time.Second})
				if err != nil || r.Received != r.Sent {
					b.Fatalf("ping: %v, %d of %d answered", err, r.Received, r.Sent)
				}
				m := rttLine.FindStringSubmatch(r.Output)
				if m == nil {
					b.Fatalf("no rtt line in %q", r.Output)
				}
				x, _ := strconv.ParseFloat(m[1], 64)
				y, _ := strconv.ParseFloat(m[2], 64)
				z, _ := strconv.ParseFloat(m[3], 64)
				lo, avg, hi = lo+x, avg+y, hi+z
			}
			n := float64(b.N)
			b.ReportMetric(1000*lo/n, "min-µs")
			b.ReportMetric(1000*avg/n, "avg-µs")
			b.ReportMetric(1000*hi/n, "max-µs")
		})
	}
}
