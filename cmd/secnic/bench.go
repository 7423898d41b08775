//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/bench"
)

func benchCommand(a *app) *cobra.Command {
	var (
		o          bench.Options
		quick      bool
		traffic    string
		contenders string
		tunnels    string
		jsonPath   string
		svgPath    string
		verbose    bool
		noProgress bool
	)
	c := &cobra.Command{
		Use:   "bench",
		Short: "secnic against host IPsec (kernel XFRM, strongSwan libipsec) and a plain veth, side by side (root)",
		Long: "bench builds two network namespaces joined by a veth pair for every contender in turn\n" +
			"(names starting with " + bench.NamePrefix + ", addresses only inside them), brings the contender up\n" +
			"with fresh random keys, and runs the built-in traffic generator through it: TCP with one\n" +
			"and N streams, UDP at several payload sizes with a search for the highest rate under 0.1%\n" +
			"loss, and TCP request/response latency. Every byte is checked, so a tunnel that corrupts\n" +
			"or loses data reports a failure, not a number. Contenders: secnic (link and UDP wire),\n" +
			"kernel XFRM ESP, strongSwan's charon with kernel-libipsec (IKEv2 PSK), and plain (no IPsec,\n" +
			"the ceiling). One that cannot run here is shown with the reason (not installed, or the\n" +
			"kernel lacks ESP). Runs are interleaved; the table gives medians, spread, CPU seconds\n" +
			"per GB (the contender's processes and the whole machine) and ratios secnic ÷ each other\n" +
			"contender. Everything is removed at the end and on interrupt. Needs root.\n\n" +
			"Traffic kinds: tcp, tcp-N, udp-SIZE, udp-mtu, rr, and tcp-iperf3 (iperf3 as a cross-check,\n" +
			"when installed). docs/performance.md explains the\n" +
			"figures and the --json schema.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if quick {
				if !cmd.Flags().Changed("runs") {
					o.Runs = 1
				}
				if !cmd.Flags().Changed("duration") {
					o.Duration = time.Second
				}
				if !cmd.Flags().Changed("traffic") {
					o.Traffic = bench.QuickTraffic
				}
				if !cmd.Flags().Changed("steps") {
					o.SearchSteps = 4
				}
			}
			if traffic != "" {
				o.Traffic = splitList(traffic)
			}
			if contenders != "" {
				o.Contenders = splitList(contenders)
			}
			for _, s := range splitList(tunnels) {
				n, err := strconv.Atoi(strings.ReplaceAll(strings.ReplaceAll(s, "k", "000"), "_", ""))
				if err != nil {
					return usagef("--tunnels %q: give counts such as 1,1k,100k", tunnels)
				}
				o.Tunnels = append(o.Tunnels, n)
			}
			if o.Runs < 1 {
				return usagef("--runs must be at least 1")
			}
			if o.Duration < 100*time.Millisecond {
				return usagef("--duration must be at least 100ms")
			}
			if jsonPath != "" && jsonPath != "-" && svgPath == "" {
				svgPath = strings.TrimSuffix(jsonPath, ".json") + ".svg"
			}
			if os.Geteuid() != 0 {
				return errors.New("bench needs root: it creates network namespaces, veth pairs and TUN devices. Run: sudo secnic bench (or sudo make bench)")
			}
			signal.Ignore(syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGHUP, os.Interrupt, syscall.SIGTERM)
			defer stop()
			level := slog.LevelError
			if verbose {
				level = slog.LevelInfo
			}
			o.Logger = slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: level}))
			// The progress bar redraws one line: only on a terminal.
			if f, ok := a.errOut.(*os.File); ok && !noProgress {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					o.Progress = a.errOut
				}
			}
			fmt.Fprintf(a.out, "secnic bench: %s, %d run(s) of %v per trial; contenders %s\n", strings.Join(orDefault(o.Traffic, bench.DefaultTraffic), " "),
				max(o.Runs, 1), o.Duration, strings.Join(orDefault(o.Contenders, bench.AllContenders), " "))
			rep, err := bench.Run(ctx, o)
			if rep == nil {
				return err
			}
			rep.Command = "secnic bench " + strings.Join(os.Args[2:], " ")
			if ctx.Err() != nil {
				fmt.Fprintln(a.out, "interrupted: everything the bench created was removed; the figures so far:")
			}
			if jsonPath == "-" {
				if perr := a.printJSON(rep); perr != nil {
					return perr
				}
			} else if terr := rep.WriteTable(a.out); terr != nil {
				return terr
			}
			if jsonPath != "" && jsonPath != "-" {
				if werr := rep.WriteJSON(jsonPath); werr != nil {
					return fmt.Errorf("write %s: %w", jsonPath, werr)
				}
				fmt.Fprintf(a.out, "\nwrote %s\n", jsonPath)
			}
			if svgPath != "" {
				if werr := rep.WriteSVG(svgPath); werr != nil {
					return fmt.Errorf("write %s: %w", svgPath, werr)
				}
				fmt.Fprintf(a.out, "wrote %s\n", svgPath)
			}
			if ctx.Err() != nil {
				return errors.New("bench interrupted; everything it created was removed")
			}
			if err != nil {
				return err
			}
			for _, r := range rep.Results {
				if r.Status == bench.StatusFailed {
					return fmt.Errorf("%s failed on %s: %s", r.Contender, r.Traffic, r.Reason)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.Runs, "runs", 3, "runs of every contender and traffic kind, interleaved (median and spread)")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each traffic trial")
	f.IntVar(&o.SearchSteps, "steps", 6, "paced trials of each UDP rate search")
	f.BoolVar(&quick, "quick", false, "one short run (1 run, 1s trials, tcp tcp-4 udp-64 udp-1400 rr)")
	f.StringVar(&o.Alg, "alg", "aes-gcm-128", "ESP algorithm (aes-gcm-128/192/256, chacha20-poly1305, aes-cbc-128/256)")
	f.StringVar(&traffic, "traffic", "", "comma-separated traffic kinds (default "+strings.Join(bench.DefaultTraffic, ",")+")")
	f.StringVar(&contenders, "contenders", "", "comma-separated contenders (default "+strings.Join(bench.AllContenders, ",")+")")
	f.IntVar(&o.DaemonCPUs, "daemon-cpus", 0, "CPUs each secnic daemon runs on (datapath.cpus); 0 = half the machine's each (the two daemons share it), -1 = every CPU")
	f.StringVar(&tunnels, "tunnels", "", "comma-separated SA-scale points for secnic, e.g. 1,1k,100k (default 1)")
	// --json here takes a file and shadows the global --json switch.
	f.StringVar(&jsonPath, "json", "", "write the report as JSON to this FILE (- = standard output instead of the table) and the chart beside it as .svg")
	f.StringVar(&svgPath, "svg", "", "write the chart to this SVG file")
	f.BoolVarP(&verbose, "verbose", "v", false, "log details of each step")
	f.BoolVar(&noProgress, "no-progress", false, "no progress display (it is shown only when standard error is a terminal)")
	f.BoolVar(&o.Iperf3, "iperf3", true, "add an iperf3 TCP cross-check ("+bench.TrafficIperf3+") when iperf3 is installed")
	c.AddCommand(benchRatiosCommand(a))
	return c
}

// benchRatiosCommand reads `go test -bench` output and prints the
// datapath ÷ raw crypto ratios (make bench pipes the micro-benchmarks
// into it).
func benchRatiosCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ratios [FILE]",
		Short: "Datapath ÷ raw crypto ratios from go test -bench output (FILE or standard input)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			in := "-"
			if len(args) == 1 {
				in = args[0]
			}
			b, err := a.readInput(in)
			if err != nil {
				return err
			}
			m, err := bench.ParseGoBench(strings.NewReader(string(b)))
			if err != nil {
				return err
			}
			return bench.WriteMicroRatios(a.out, bench.MicroRatios(m))
		},
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func orDefault(v, d []string) []string {
	if len(v) == 0 {
		return d
	}
	return v
}
