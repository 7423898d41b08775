//go:build linux

// Package bench measures secnic against host IPsec, side by side, on the
// same machine and the same traffic: two secnic NICs (link and UDP wire),
// the kernel's XFRM ESP, strongSwan's charon with kernel-libipsec, and a
// plain veth without IPsec as the ceiling. For every contender it builds
// a fresh pair of network namespaces joined by a veth (names starting
// with NamePrefix, addresses only inside them), brings the contender up
// with fresh keys, runs the built-in traffic generator through it (TCP
// single and multi-stream, UDP of several sizes with a loss-bounded rate
// search, TCP request/response latency; every byte checked), measures
// CPU time from /proc, and tears everything down. Contenders run
// interleaved over several runs; the report gives the median and spread,
// and ratios of secnic to every other contender measured in the same
// invocation. `secnic bench` is the command; docs/performance.md
// documents the JSON schema and the figures.
package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/secnic/secnic/internal/netlab"
)

// Traffic kinds. "tcp-N" (N parallel streams) and "udp-SIZE" (SIZE-byte
// UDP payloads; "udp-mtu" for the largest payload the path carries
// without fragmentation) are parsed from their names.
const (
	TrafficTCP = "tcp"
	TrafficRR  = "rr"
)

// DefaultTraffic is what a full run measures.
var DefaultTraffic = []string{"tcp", "tcp-4", "udp-64", "udp-512", "udp-1400", "udp-mtu", "rr"}

// QuickTraffic is what --quick measures.
var QuickTraffic = []string{"tcp", "tcp-4", "udp-64", "udp-1400", "rr"}

// AllContenders lists the contender keys in report order ("secnic-link"
// and "secnic-udp" are the two secnic wires).
var AllContenders = []string{"secnic-link", "secnic-udp", KernelXFRM, StrongSwan, Plain}

// Options configure Run.
type Options struct {
	// Runs is how many times every contender runs every traffic kind,
	// interleaved (default 3).
	Runs int
	// Duration of each traffic trial (default 5s).
	Duration time.Duration
	// SearchSteps bounds the paced trials of each UDP rate search
	// (default 6).
	SearchSteps int
	// Alg is the ESP algorithm (default aes-gcm-128).
	Alg string
	// Traffic lists the traffic kinds (default DefaultTraffic).
	Traffic []string
	// Contenders selects contenders by key (default AllContenders).
	Contenders []string
	// Tunnels lists SA-scale points for secnic (default [1]): for N > 1
	// the bench installs N tunnels per direction through the control API
	// and spreads UDP traffic over a sample of them.
	Tunnels []int
	// Iperf3 adds the iperf3 cross-check (TrafficIperf3) when iperf3 is
	// installed.
	Iperf3 bool
	// DaemonCPUs is each secnic daemon's datapath.cpus: 0 (default) gives
	// each half the machine's CPUs, at least one, because the two daemons
	// of a contender share the machine; -1 lets each use every CPU.
	DaemonCPUs int
	// DaemonCommand returns the command that runs a secnic daemon from a
	// configuration file (default: this executable's `run --config`).
	DaemonCommand func(config string) *exec.Cmd
	// Progress receives the progress display (nil: none).
	Progress io.Writer
	// Logger logs details (default: discard).
	Logger *slog.Logger
}

// daemonCPUs is the datapath.cpus each secnic daemon gets (0 = every CPU).
func (o *Options) daemonCPUs() int {
	switch {
	case o.DaemonCPUs > 0:
		return o.DaemonCPUs
	case o.DaemonCPUs < 0:
		return 0
	}
	return max(runtime.NumCPU()/2, 1)
}

func (o *Options) defaults() error {
	if o.Runs == 0 {
		o.Runs = 3
	}
	if o.Runs < 1 {
		return errors.New("runs must be at least 1")
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.SearchSteps == 0 {
		o.SearchSteps = 6
	}
	if o.Alg == "" {
		o.Alg = "aes-gcm-128"
	}
	if len(o.Traffic) == 0 {
		o.Traffic = DefaultTraffic
	}
	for _, t := range o.Traffic {
		if _, err := parseTraffic(t); err != nil {
			return err
		}
	}
	if len(o.Contenders) == 0 {
		o.Contenders = AllContenders
	}
	for _, c := range o.Contenders {
		if !slices.Contains(AllContenders, c) {
			return fmt.Errorf("unknown contender %q: use %s", c, strings.Join(AllContenders, ", "))
		}
	}
	if o.DaemonCPUs < -1 {
		return fmt.Errorf("--daemon-cpus %d: give -1 (every CPU), 0 (half the machine each) or a number of CPUs", o.DaemonCPUs)
	}
	if len(o.Tunnels) == 0 {
		o.Tunnels = []int{1}
	}
	for _, n := range o.Tunnels {
		if n < 1 || n > maxTunnels {
			return fmt.Errorf("--tunnels %d: give 1 to %d", n, maxTunnels)
		}
	}
	if o.DaemonCommand == nil {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the secnic executable to run the daemons: %w", err)
		}
		o.DaemonCommand = func(cfg string) *exec.Cmd { return exec.Command(self, "run", "--config", cfg) }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

type trafficKind struct {
	name    string
	streams int // tcp
	size    int // udp payload; -1 = path MTU
	rr      bool
	iperf   bool
}

func parseTraffic(s string) (trafficKind, error) {
	switch {
	case s == TrafficTCP:
		return trafficKind{name: s, streams: 1}, nil
	case s == TrafficRR:
		return trafficKind{name: s, rr: true}, nil
	case s == TrafficIperf3:
		return trafficKind{name: s, iperf: true}, nil
	case strings.HasPrefix(s, "tcp-"):
		n, err := strconv.Atoi(s[4:])
		if err == nil && n >= 1 && n <= 64 {
			return trafficKind{name: s, streams: n}, nil
		}
	case s == "udp-mtu":
		return trafficKind{name: s, size: -1}, nil
	case strings.HasPrefix(s, "udp-"):
		n, err := strconv.Atoi(s[4:])
		if err == nil && n >= udpHeader && n <= 65000 {
			return trafficKind{name: s, size: n}, nil
		}
	}
	return trafficKind{}, fmt.Errorf("traffic %q: use tcp, tcp-N (N streams, 1-64), udp-SIZE (%d-65000 bytes), udp-mtu or rr", s, udpHeader)
}

// Machine describes where the bench ran.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// Result is one line of the report: a contender on one traffic kind,
// aggregated over the runs.
type Result struct {
	Contender string `json:"contender"`
	Wire      string `json:"wire"`
	Alg       string `json:"alg"`
	Traffic   string `json:"traffic"`
	Tunnels   int    `json:"tunnels"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	// Gbps is the median goodput (payload delivered intact).
	Gbps float64 `json:"gbps"`
	// PPS is datagrams (UDP) or transactions (rr) per second; 0 for TCP.
	PPS float64 `json:"pps"`
	// Loss is the UDP loss at the reported rate.
	Loss float64 `json:"loss"`
	// CPUSPerGB is the contender's own processes' CPU seconds per GB
	// delivered (0 for the kernel contenders, which have none).
	CPUSPerGB float64 `json:"cpu_s_per_gb"`
	// SystemCPUSPerGB is the whole machine's busy CPU seconds per GB,
	// generator and softirq included.
	SystemCPUSPerGB float64 `json:"system_cpu_s_per_gb"`
	P50us           float64 `json:"p50_us,omitempty"`
	P99us           float64 `json:"p99_us,omitempty"`
	Intact          bool    `json:"intact"`
	Runs            int     `json:"runs"`
	// Spread is (max-min)/median of the headline figure over the runs
	// (Gbit/s; p50 latency for rr).
	Spread float64 `json:"spread"`
	// SAAddPerSec is the SA add rate through the control API (tunnels > 1).
	SAAddPerSec float64 `json:"sa_add_per_s,omitempty"`
	// RSSBytesPerSA is how much the resident memory of the larger daemon
	// grew per SA it holds while the tunnels were added (tunnels > 1;
	// their policies included); RSSMB is that daemon's resident memory
	// afterwards, in MB.
	RSSBytesPerSA float64 `json:"rss_bytes_per_sa,omitempty"`
	RSSMB         float64 `json:"rss_mb,omitempty"`
	// Samples are the headline figures of the single runs.
	Samples []float64 `json:"samples,omitempty"`
}

// Ratio is secnic's figure divided by another contender's, for one
// traffic kind, measured in the same invocation.
type Ratio struct {
	Secnic  string  `json:"secnic"` // "secnic/link" or "secnic/udp"
	Versus  string  `json:"versus"`
	Traffic string  `json:"traffic"`
	Metric  string  `json:"metric"` // gbps, pps or p50_us
	Ratio   float64 `json:"ratio"`
}

// Report is the whole outcome; it is what --json writes.
type Report struct {
	Machine Machine   `json:"machine"`
	Command string    `json:"command,omitempty"`
	Started time.Time `json:"started"`
	// DaemonCPUs is the datapath.cpus of every secnic daemon (0 = every
	// CPU).
	DaemonCPUs int      `json:"daemon_cpus"`
	Results    []Result `json:"results"`
	// Notes say what was left out and why (e.g. iperf3 not installed).
	Notes  []string `json:"notes,omitempty"`
	Ratios []Ratio  `json:"ratios,omitempty"`
}

func contenderFor(key string) contender {
	switch key {
	case "secnic-link":
		return secnicContender{wireType: "link"}
	case "secnic-udp":
		return secnicContender{wireType: "udp"}
	case KernelXFRM:
		return xfrmContender{}
	case StrongSwan:
		return swanContender{}
	}
	return plain{}
}

// sample is one run's outcome on one traffic kind.
type sample struct {
	s   Sample
	cpu CPUSnapshot
	ok  bool // the UDP search found a rate under the loss target
	err error
	add addStats // tunnels > 1: the SA adds
}

type key struct {
	contender string
	traffic   string
	tunnels   int
}

// Run measures every selected contender and returns the report. It needs
// root. It removes everything it creates, also when ctx is cancelled
// (then it returns ctx's error with the report so far).
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench needs root: it creates network namespaces, veth pairs and TUN devices. Run: sudo secnic bench")
	}
	for _, name := range netlab.StaleNamespaces(NamePrefix) {
		_ = netlab.DeleteNamespace(name)
	}
	dir, err := os.MkdirTemp("", "secnic-bench-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a working directory: %w", err)
	}
	defer os.RemoveAll(dir)
	e := &env{opts: &o, log: o.Logger, dir: dir}

	rep := &Report{Started: time.Now().UTC(), Machine: Machine{CPU: cpuModel(), Cores: runtime.NumCPU(), Kernel: kernelRelease(), Go: runtime.Version()}, DaemonCPUs: o.daemonCPUs()}
	if o.Iperf3 && !slices.Contains(o.Traffic, TrafficIperf3) {
		if _, err := exec.LookPath("iperf3"); err == nil {
			o.Traffic = append(slices.Clone(o.Traffic), TrafficIperf3)
		} else {
			rep.Notes = append(rep.Notes, "iperf3 cross-check: not installed: apt-get install iperf3")
		}
	}
	kinds := make([]trafficKind, len(o.Traffic))
	for i, t := range o.Traffic {
		kinds[i], _ = parseTraffic(t)
	}

	// Which contenders can run here.
	type entry struct {
		key string
		c   contender
	}
	var live []entry
	var results []Result
	for _, k := range o.Contenders {
		c := contenderFor(k)
		st, reason := c.check(e)
		if st != StatusOK {
			for _, t := range o.Traffic {
				results = append(results, Result{Contender: c.name(), Wire: c.wire(), Alg: o.Alg, Traffic: t, Tunnels: 1, Status: st, Reason: reason})
			}
			continue
		}
		live = append(live, entry{k, c})
	}

	steps := 0
	for _, en := range live {
		n := 1
		if strings.HasPrefix(en.key, "secnic") {
			n = len(o.Tunnels)
		}
		steps += o.Runs * len(kinds) * n
	}
	var bar *progressbar.ProgressBar
	if o.Progress != nil {
		bar = progressbar.NewOptions(steps, progressbar.OptionSetWriter(o.Progress), progressbar.OptionSetWidth(24),
			progressbar.OptionShowCount(), progressbar.OptionSetElapsedTime(true), progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetRenderBlankState(true))
		defer bar.Close()
	}
	progress := func(desc string) {
		if bar != nil {
			bar.Describe(desc)
		}
	}

	samples := map[key][]sample{}
	for run := 0; run < o.Runs && ctx.Err() == nil; run++ {
		// Rotate the order so that no contender always goes first.
		order := slices.Clone(live)
		if len(order) > 0 {
			r := run % len(order)
			order = append(order[r:], order[:r]...)
		}
		for _, en := range order {
			tunnelPoints := []int{1}
			if strings.HasPrefix(en.key, "secnic") {
				tunnelPoints = o.Tunnels
			}
			for _, nt := range tunnelPoints {
				if ctx.Err() != nil {
					break
				}
				label := fmt.Sprintf("run %d/%d %s", run+1, o.Runs, en.key)
				if nt > 1 {
					label += fmt.Sprintf(" ×%d tunnels", nt)
				}
				progress(label + ": setting up")
				e.tunnels = nt
				inst, err := en.c.start(ctx, e)
				if err != nil {
					e.log.Warn("set-up failed", "contender", en.key, "err", err)
				} else {
					e.log.Info("contender up", "contender", en.key, "run", run+1, "tunnels", nt, "namespaces", inst.path().Client+" "+inst.path().Server)
				}
				var addRate addStats
				if err == nil && nt > 1 {
					addRate, err = addTunnels(ctx, inst, nt, e)
				}
				for _, k := range kinds {
					kk := key{en.key, k.name, nt}
					if err != nil {
						samples[kk] = append(samples[kk], sample{err: err})
						if bar != nil {
							_ = bar.Add(1)
						}
						continue
					}
					if ctx.Err() != nil {
						break
					}
					progress(label + ": " + k.name)
					sm := measure(ctx, e, inst, k, nt)
					if ctx.Err() != nil {
						break // interrupted: the trial does not count
					}
					sm.add = addRate
					if sm.err != nil {
						e.log.Warn("trial failed", "contender", en.key, "traffic", k.name, "err", sm.err)
					}
					samples[kk] = append(samples[kk], sm)
					if bar != nil {
						_ = bar.Add(1)
					}
				}
				if inst != nil {
					progress(label + ": tearing down")
					if cerr := inst.close(); cerr != nil {
						e.log.Warn("teardown", "contender", en.key, "err", cerr)
					}
				}
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}

	for _, en := range live {
		tunnelPoints := []int{1}
		if strings.HasPrefix(en.key, "secnic") {
			tunnelPoints = o.Tunnels
		}
		for _, nt := range tunnelPoints {
			for _, k := range kinds {
				results = append(results, aggregate(en.c, o.Alg, k.name, nt, samples[key{en.key, k.name, nt}]))
			}
		}
	}
	order := func(r Result) int {
		k := r.Contender
		if r.Contender == Secnic {
			k += "-" + r.Wire
		}
		return slices.Index(AllContenders, k)
	}
	slices.SortStableFunc(results, func(a, b Result) int {
		return cmp.Or(cmp.Compare(a.Tunnels, b.Tunnels), cmp.Compare(order(a), order(b)),
			cmp.Compare(slices.Index(o.Traffic, a.Traffic), slices.Index(o.Traffic, b.Traffic)))
	})
	rep.Results = results
	rep.Ratios = ratios(results)
	return rep, ctx.Err()
}

// measure runs one traffic kind through inst and reads the CPU used.
func measure(ctx context.Context, e *env, inst instance, k trafficKind, tunnels int) sample {
	p := inst.path()
	pids := inst.pids()
	d := e.opts.Duration
	var sm sample
	before := TakeCPU(pids)
	switch {
	case k.iperf:
		sm.s, sm.err = iperf3TCP(ctx, p, d)
		sm.ok = true
	case k.rr:
		sm.s, sm.err = RequestResponse(ctx, p, d)
		sm.ok = true
	case k.streams > 0:
		sm.s, sm.err = TCPStreams(ctx, p, k.streams, d)
		sm.ok = true
	default:
		size := k.size
		if size < 0 {
			mtu, err := PathMTU(p)
			if err != nil {
				return sample{err: fmt.Errorf("path MTU: %w", err)}
			}
			size = mtu - 28
		}
		// Each trial of the search is short; the reported figures are the
		// best passing trial's, with the CPU of a confirming trial.
		trial := max(d/time.Duration(e.opts.SearchSteps/2+1), 300*time.Millisecond)
		var cpu CPUSnapshot
		sm.s, sm.ok, cpu, sm.err = udpSearchCPU(ctx, p, flowsFor(inst, tunnels), size, trial, e.opts.SearchSteps, pids)
		sm.cpu = cpu
		if sm.err == nil {
			sm.err = verifySpread(ctx, inst, tunnels)
		}
		return sm
	}
	sm.cpu = TakeCPU(pids).Sub(before)
	return sm
}

// udpSearchCPU runs UDPRateSearch and measures the CPU of the reported
// trial by repeating it at the found rate.
func udpSearchCPU(ctx context.Context, p Path, flows []udpFlow, size int, trial time.Duration, steps int, pids []int) (Sample, bool, CPUSnapshot, error) {
	best, ok, err := udpRateSearch(ctx, p, flows, size, trial, steps)
	if err != nil {
		return best, ok, CPUSnapshot{}, err
	}
	// The confirming trial at the found rate gives the CPU figures and
	// the reported numbers; if it loses more than the target, the search
	// result stands and the CPU of the confirming trial is still used.
	before := TakeCPU(pids)
	conf, err := udpFlood(ctx, p, flows, size, best.Rate, trial)
	cpu := TakeCPU(pids).Sub(before)
	if err != nil {
		return conf, false, cpu, err
	}
	cpu.Procs *= float64(best.Bytes) / float64(max(conf.Bytes, 1))
	cpu.System *= float64(best.Bytes) / float64(max(conf.Bytes, 1))
	return best, ok, cpu, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func aggregate(c contender, alg, traffic string, tunnels int, ss []sample) Result {
	r := Result{Contender: c.name(), Wire: c.wire(), Alg: alg, Traffic: traffic, Tunnels: tunnels, Runs: len(ss), Intact: true}
	if len(ss) == 0 {
		r.Status, r.Reason, r.Intact = StatusFailed, "not measured: the bench was interrupted first", false
		return r
	}
	var gbps, pps, loss, cpu, sys, p50, p99, head, add, rssPer, rss []float64
	for i, s := range ss {
		if s.err != nil {
			r.Status, r.Reason = StatusFailed, fmt.Sprintf("run %d: %v", i+1, s.err)
			r.Intact = s.s.Intact && s.s.Corrupt == 0 && !strings.Contains(s.err.Error(), "corrupt") && s.s.Bytes > 0
			return r
		}
		if traffic == TrafficIperf3 {
			r.Intact, r.Reason = false, "cross-check: iperf3 does not verify the payload"
		} else if !s.s.Intact {
			r.Status, r.Reason, r.Intact = StatusFailed, fmt.Sprintf("run %d: data did not arrive intact", i+1), false
			return r
		}
		if !s.ok && r.Reason == "" {
			r.Reason = fmt.Sprintf("run %d: no rate with loss under %.1f%% found (lowest tried %.0f pps, loss %.2f%%)", i+1, LossTarget*100, s.s.Rate, s.s.Loss()*100)
		}
		gbps = append(gbps, s.s.Gbps())
		pps = append(pps, s.s.PPS())
		loss = append(loss, s.s.Loss())
		cpu = append(cpu, perGB(s.cpu.Procs, s.s.Bytes))
		sys = append(sys, perGB(s.cpu.System, s.s.Bytes))
		if s.add.rate > 0 {
			add = append(add, s.add.rate)
			rssPer = append(rssPer, s.add.rssPerSA)
			rss = append(rss, s.add.rssMB)
		}
		if strings.HasPrefix(traffic, "rr") {
			p50 = append(p50, float64(s.s.Percentile(50))/1e3)
			p99 = append(p99, float64(s.s.Percentile(99))/1e3)
			head = append(head, float64(s.s.Percentile(50))/1e3)
		} else {
			head = append(head, s.s.Gbps())
		}
	}
	r.Status = StatusOK
	r.Gbps, r.Loss, r.CPUSPerGB, r.SystemCPUSPerGB = median(gbps), median(loss), median(cpu), median(sys)
	if !strings.HasPrefix(traffic, "tcp") {
		r.PPS = median(pps)
	}
	r.P50us, r.P99us = median(p50), median(p99)
	r.SAAddPerSec, r.RSSBytesPerSA, r.RSSMB = median(add), median(rssPer), median(rss)
	r.Samples = head
	if m := median(head); m > 0 {
		r.Spread = (slices.Max(head) - slices.Min(head)) / m
	}
	return r
}

// ratios divides secnic's figures by every other contender's for each
// traffic kind where both are ok (one tunnel).
func ratios(rs []Result) []Ratio {
	var out []Ratio
	for _, s := range rs {
		if s.Contender != Secnic || s.Status != StatusOK || s.Tunnels != 1 {
			continue
		}
		for _, o := range rs {
			if o.Contender == Secnic || o.Status != StatusOK || o.Traffic != s.Traffic || o.Tunnels != 1 {
				continue
			}
			metric, a, b := "gbps", s.Gbps, o.Gbps
			switch {
			case s.Traffic == TrafficRR:
				metric, a, b = "p50_us", s.P50us, o.P50us
			case strings.HasPrefix(s.Traffic, "udp"):
				metric, a, b = "pps", s.PPS, o.PPS
			}
			if b > 0 {
				out = append(out, Ratio{Secnic: "secnic/" + s.Wire, Versus: o.Contender, Traffic: s.Traffic, Metric: metric, Ratio: a / b})
			}
		}
	}
	return out
}
