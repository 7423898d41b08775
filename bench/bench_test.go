//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/daemon"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/testenv"
)

// daemonEnv makes the test binary act as `secnic run --config FILE`, so
// that the end-to-end test can start secnic daemons as separate
// processes without building the secnic command.
const daemonEnv = "SECNIC_BENCH_TEST_DAEMON"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(daemonEnv); cfg != "" {
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := daemon.RunFile(context.Background(), cfg, log); err != nil {
			log.Error("daemon", "err", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	for _, name := range netlab.StaleNamespaces(NamePrefix) {
		_ = netlab.DeleteNamespace(name)
	}
	os.Exit(m.Run())
}

func testDaemonCommand(cfg string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonEnv+"="+cfg)
	return cmd
}

// TestBenchShort is the CI run of the harness: every contender for a
// fraction of a second per traffic kind. Each must produce a number with
// its traffic intact, or say why it cannot run here; none may fail.
func TestBenchShort(t *testing.T) {
	testenv.RequireTUN(t)
	testenv.RequireTool(t, "ip", "Debian: iproute2")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	traffic := []string{"tcp", "tcp-2", "udp-64", "udp-mtu", "rr"}
	_, iperfErr := exec.LookPath("iperf3")
	rep, err := Run(ctx, Options{
		Runs: 1, Duration: 400 * time.Millisecond, SearchSteps: 2, Traffic: traffic,
		Tunnels: []int{1, 64}, DaemonCommand: testDaemonCommand, Iperf3: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rep.Results {
		k := r.label()
		seen[k]++
		switch r.Status {
		case StatusOK:
			if r.Traffic == TrafficIperf3 {
				if r.Intact || r.Reason == "" {
					t.Errorf("%s iperf3: intact=%v reason %q: iperf3 checks nothing and must say so", k, r.Intact, r.Reason)
				}
			} else if !r.Intact {
				t.Errorf("%s %s (%d tunnels): ok but not intact", k, r.Traffic, r.Tunnels)
			}
			if r.Gbps <= 0 {
				t.Errorf("%s %s (%d tunnels): ok with %v Gbit/s", k, r.Traffic, r.Tunnels, r.Gbps)
			}
			if r.Traffic == "rr" && (r.P50us <= 0 || r.P99us < r.P50us) {
				t.Errorf("%s rr: p50 %v µs, p99 %v µs", k, r.P50us, r.P99us)
			}
			if strings.HasPrefix(r.Traffic, "udp") && r.PPS <= 0 {
				t.Errorf("%s %s: no packets per second", k, r.Traffic)
			}
			t.Logf("%-22s %3d %-8s %7.3f Gbit/s %8.0f pps loss %.4f cpu %.1f s/GB %s", k, r.Tunnels, r.Traffic, r.Gbps, r.PPS, r.Loss, r.CPUSPerGB, r.Reason)
		case StatusUnavailable, StatusNotInstalled:
			if r.Reason == "" {
				t.Errorf("%s %s: %s without a reason", k, r.Traffic, r.Status)
			}
			t.Logf("%-22s %s: %s", k, r.Status, r.Reason)
		default:
			t.Errorf("%s %s (%d tunnels): %s: %s", k, r.Traffic, r.Tunnels, r.Status, r.Reason)
		}
	}
	if iperfErr == nil {
		traffic = append(traffic, TrafficIperf3)
	} else if len(rep.Notes) == 0 {
		t.Error("iperf3 is not installed and no note says so")
	}
	for _, k := range []string{"secnic/link", "secnic/udp", KernelXFRM, StrongSwan, Plain} {
		want := len(traffic)
		if strings.HasPrefix(k, "secnic") {
			want *= 2 // tunnels 1 and 64
		}
		if seen[k] != want {
			t.Errorf("%s: %d results, want %d", k, seen[k], want)
		}
	}
	// secnic and plain always run here; the ratios between them exist.
	if len(rep.Ratios) == 0 {
		t.Error("no ratios secnic ÷ contender")
	}
	dir := t.TempDir()
	if err := rep.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteSVG(filepath.Join(dir, "r.svg")); err != nil {
		t.Fatal(err)
	}
	// Nothing is left behind.
	ents, _ := os.ReadDir(netlab.NetnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), NamePrefix+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

// loopback is a path inside this test's own namespace, no root needed.
var loopback = Path{Dst: netip.MustParseAddr("127.0.0.1")}

func TestGeneratorLoopback(t *testing.T) {
	ctx := context.Background()
	s, err := TCPStreams(ctx, loopback, 3, 200*time.Millisecond)
	if err != nil || !s.Intact || s.Bytes == 0 || s.Gbps() <= 0 {
		t.Fatalf("TCP: %+v, %v", s, err)
	}
	u, err := UDPFlood(ctx, loopback, 512, 20000, 200*time.Millisecond)
	if err != nil || !u.Intact || u.Packets == 0 || u.Sent < u.Packets {
		t.Fatalf("UDP: %+v, %v", u, err)
	}
	if u.Bytes != u.Packets*512 {
		t.Errorf("UDP bytes %d for %d datagrams of 512", u.Bytes, u.Packets)
	}
	best, ok, err := UDPRateSearch(ctx, loopback, 64, 100*time.Millisecond, 3)
	if err != nil || !ok || best.Loss() >= LossTarget {
		t.Fatalf("rate search: %+v ok=%v %v", best, ok, err)
	}
	rr, err := RequestResponse(ctx, loopback, 200*time.Millisecond)
	if err != nil || !rr.Intact || len(rr.Latencies) == 0 || rr.Percentile(99) < rr.Percentile(50) {
		t.Fatalf("rr: %d latencies, %v", len(rr.Latencies), err)
	}
	mtu, err := PathMTU(loopback)
	if err != nil || mtu < 1500 {
		t.Fatalf("loopback path MTU %d, %v", mtu, err)
	}
}

// corruptingProxy forwards TCP from a listener to target, flipping one
// bit of the stream after skip bytes.
func corruptingProxy(t *testing.T, target string, skip int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(c, u) }()
				buf := make([]byte, 64*1024)
				var n int64
				for {
					k, err := c.Read(buf)
					if k > 0 {
						if n <= skip && skip < n+int64(k) {
							buf[skip-n] ^= 0x10
						}
						n += int64(k)
						if _, werr := u.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						u.(*net.TCPConn).CloseWrite()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestCorruptionDetected: a path that alters one bit yields an error and
// no number.
func TestCorruptionDetected(t *testing.T) {
	// TCP: the client dials a proxy that flips one bit of the stream.
	for _, skip := range []int64{0, 100000} {
		p := loopback
		p.via = func(target string) string { return corruptingProxy(t, target, skip) }
		s, err := TCPStreams(context.Background(), p, 1, 200*time.Millisecond)
		if err == nil || s.Intact || s.Bytes != 0 {
			t.Errorf("TCP through a corrupting proxy (bit flipped after %d bytes): %+v, %v", skip, s, err)
		}
		rr, err := RequestResponse(context.Background(), p, 100*time.Millisecond)
		if skip == 0 && (err == nil || rr.Intact) {
			t.Errorf("request/response through a corrupting proxy: %v", err)
		}
	}
	// UDP: a datagram with one bit changed fails verification.
	d := make([]byte, 1400)
	fillDatagram(d, 42, 7)
	if !verifyDatagram(append([]byte(nil), d...)) {
		t.Fatal("an unaltered datagram fails verification")
	}
	for _, i := range []int{0, 9, 13, 16, 30, 1399} {
		x := append([]byte(nil), d...)
		x[i] ^= 1
		if verifyDatagram(x) {
			t.Errorf("a datagram with byte %d altered passes verification", i)
		}
	}
	if verifyDatagram(d[:1000]) {
		t.Error("a truncated datagram passes verification")
	}
}

func TestParseTraffic(t *testing.T) {
	for _, s := range []string{"tcp", "tcp-4", "udp-64", "udp-1400", "udp-mtu", "rr"} {
		if _, err := parseTraffic(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "tcp-0", "udp-8", "icmp", "tcp-x", "udp-70000"} {
		if _, err := parseTraffic(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	k, _ := parseTraffic("udp-mtu")
	if k.size != -1 {
		t.Errorf("udp-mtu size %d", k.size)
	}
}

func TestAggregateAndRatios(t *testing.T) {
	mk := func(bytes int64, cpu float64) sample {
		return sample{s: Sample{Bytes: bytes, Elapsed: time.Second, Intact: true}, cpu: CPUSnapshot{Procs: cpu, System: 2 * cpu}, ok: true}
	}
	// 1, 2 and 4 GB in one second: 8, 16, 32 Gbit/s; median 16.
	r := aggregate(secnicContender{wireType: "link"}, "aes-gcm-128", "tcp", 1, []sample{mk(1e9, 1), mk(4e9, 4), mk(2e9, 2)})
	if r.Status != StatusOK || r.Gbps != 16 || r.CPUSPerGB != 1 || r.SystemCPUSPerGB != 2 || r.Runs != 3 {
		t.Fatalf("aggregate: %+v", r)
	}
	if want := (32.0 - 8) / 16; r.Spread != want {
		t.Errorf("spread %v, want %v", r.Spread, want)
	}
	bad := aggregate(plain{}, "aes-gcm-128", "tcp", 1, []sample{mk(1e9, 1), {err: io.ErrUnexpectedEOF}})
	if bad.Status != StatusFailed || !strings.Contains(bad.Reason, "run 2") {
		t.Errorf("a failed run: %+v", bad)
	}
	p := aggregate(plain{}, "aes-gcm-128", "tcp", 1, []sample{mk(4e9, 0)})
	rs := ratios([]Result{r, p})
	if len(rs) != 1 || rs[0].Ratio != 0.5 || rs[0].Versus != Plain || rs[0].Metric != "gbps" {
		t.Errorf("ratios: %+v", rs)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median %v", m)
	}
}

// TestJSONSchema checks the field names docs/performance.md documents.
func TestJSONSchema(t *testing.T) {
	rep := &Report{Machine: Machine{CPU: "x", Cores: 2, Kernel: "6", Go: "go"},
		Results: []Result{{Contender: Secnic, Wire: "link", Alg: "aes-gcm-128", Traffic: "rr", Tunnels: 1, Status: StatusOK, Gbps: 1, P50us: 2, P99us: 3, Intact: true, Runs: 3}}}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var doc struct {
		Machine map[string]any   `json:"machine"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpu", "cores", "kernel", "go"} {
		if _, ok := doc.Machine[k]; !ok {
			t.Errorf("machine.%s missing", k)
		}
	}
	for _, k := range []string{"contender", "wire", "alg", "traffic", "tunnels", "status", "gbps", "pps", "loss", "cpu_s_per_gb", "p50_us", "p99_us", "intact", "runs", "spread"} {
		if _, ok := doc.Results[0][k]; !ok {
			t.Errorf("results[0].%s missing", k)
		}
	}
	svg := filepath.Join(t.TempDir(), "r.svg")
	rep.Results = append(rep.Results, Result{Contender: Plain, Traffic: "tcp", Tunnels: 1, Status: StatusOK, Gbps: 10, SystemCPUSPerGB: 1})
	if err := rep.WriteSVG(svg); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(svg); !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "Gbit/s") {
		t.Error("the chart is not an SVG with its axis label")
	}
}

func TestCPUAccounting(t *testing.T) {
	before := TakeCPU([]int{os.Getpid()})
	deadline := time.Now().Add(150 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	d := TakeCPU([]int{os.Getpid()}).Sub(before)
	if d.Procs <= 0 || d.System <= 0 || x == 0 {
		t.Errorf("CPU used by a busy loop: %+v", d)
	}
	if cpuModel() == "" || kernelRelease() == "unknown" {
		t.Error("no CPU model or kernel release")
	}
}

func TestMicroRatios(t *testing.T) {
	in := `goos: linux
BenchmarkRaw/aes-gcm-128/1400-2         	  100	      1000 ns/op	1400.00 MB/s
BenchmarkEncap/aes-gcm-128/1400-2       	  100	      1000 ns/op	1000.00 MB/s
BenchmarkDecap/aes-gcm-128/1400-2       	  100	      1000 ns/op	1000.00 MB/s
BenchmarkDatapath/aes-gcm-128/1400-2    	  100	      2000 ns/op	 350.00 MB/s	0 B/op	0 allocs/op
BenchmarkDatapath/chacha20-poly1305/64  	  100	      2000 ns/op	 35.00 MB/s
PASS
`
	m, err := ParseGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	rs := MicroRatios(m)
	if len(rs) != 1 || rs[0].Case != "aes-gcm-128/1400" || rs[0].Datapath != 350 || rs[0].Raw != 1400 || rs[0].Encap != 1000 {
		t.Fatalf("%+v", rs)
	}
	var b strings.Builder
	if err := WriteMicroRatios(&b, rs); err != nil {
		t.Fatal(err)
	}
	// 350/1400 = 0.25; encap then decap = 500 MB/s, 350/500 = 0.70.
	if !strings.Contains(b.String(), "0.25") || !strings.Contains(b.String(), "0.70") {
		t.Errorf("table:\n%s", b.String())
	}
}
