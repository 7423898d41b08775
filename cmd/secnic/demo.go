package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/nic"
)

// demoPrefix starts the names of the demo's network namespaces.
const demoPrefix = "secnic-demo"

func demoCommand(a *app) *cobra.Command {
	var (
		size    string
		pings   int
		wire    string
		verbose bool
	)
	c := &cobra.Command{
		Use:   "demo",
		Short: "Two namespaces, two secnic NICs, real traffic through an AES-GCM tunnel (root)",
		Long: "demo builds two network namespaces joined by a veth pair and starts a secnic NIC in each\n" +
			"(its TUN device and wire port inside its namespace), with an ESP AES-GCM-128 tunnel\n" +
			"between them whose keys are generated at random and never shown. It pings across the\n" +
			"tunnel over IPv4 and IPv6, transfers data over TCP and checks it with SHA-256, prints\n" +
			"each NIC's capabilities, SAs and counters, and removes everything it created, also when\n" +
			"interrupted. It needs root (network namespaces, veth, TUN devices) and nothing but\n" +
			"iproute2: the pings are a built-in ICMP echo, no ping(8) needed.\n\n" +
			"The wire is real ESP on the veth (--wire link, the default) or a UDP cable (--wire udp).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseSize(size)
			if err != nil {
				return usagef("--bytes %q: %v", size, err)
			}
			if wire != "link" && wire != "udp" {
				return usagef("--wire %q: use link or udp", wire)
			}
			if pings < 1 {
				return usagef("--pings must be at least 1")
			}
			if os.Geteuid() != 0 {
				return errors.New("demo needs root: it creates network namespaces, a veth pair and TUN devices. Run: sudo secnic demo (or sudo make demo)")
			}
			return runDemo(cmd.Context(), a, demoOptions{bytes: n, pings: pings, wire: wire, verbose: verbose})
		},
	}
	c.Flags().StringVar(&size, "bytes", "16MiB", "size of the TCP transfer (e.g. 16MiB, 100MB, 65536)")
	c.Flags().IntVar(&pings, "pings", 5, "echo requests per address family")
	c.Flags().StringVar(&wire, "wire", "link", "wire port: link (real ESP on the veth) or udp (a UDP cable)")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the daemons' logs")
	return c
}

type demoOptions struct {
	bytes   int64
	pings   int
	wire    string
	verbose bool
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	var v int64
	if _, err := fmt.Sscan(s, &v); err != nil || v <= 0 {
		return 0, errors.New("give a positive size such as 16MiB")
	}
	if v > (8<<30)/mult {
		return 0, errors.New("at most 8GiB")
	}
	return v * mult, nil
}

func runDemo(ctx context.Context, a *app, o demoOptions) (err error) {
	// Whatever happens to the terminal, clean up: a closed pipe (secnic
	// demo | head) makes writes fail instead of killing the process, and
	// a hangup stops the demo like Ctrl-C does.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := a.out
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: level}))

	fmt.Fprintln(w, "secnic demo: two network namespaces, two emulated IPsec offload NICs, an ESP AES-GCM-128 tunnel")
	fmt.Fprintln(w)
	for _, name := range netlab.StaleNamespaces(demoPrefix) {
		if err := netlab.DeleteNamespace(name); err == nil {
			fmt.Fprintf(w, "removed namespace %s left behind by an earlier demo that was killed\n", name)
		}
	}

	sockDir, err := os.MkdirTemp("", "secnic-demo-")
	if err != nil {
		return fmt.Errorf("cannot create a directory for the control sockets: %w", err)
	}
	defer os.RemoveAll(sockDir)

	sc := twonic.Scenario{Wire: o.wire, SocketDir: sockDir}
	step := func(n int, format string, args ...any) {
		fmt.Fprintf(w, "[%d/6] %s\n", n, fmt.Sprintf(format, args...))
	}

	step(1, "creating two network namespaces joined by a veth pair, starting a NIC in each")
	lab, err := twonic.Start(ctx, sc, demoPrefix, logger)
	if err != nil {
		return fmt.Errorf("set-up failed (everything created so far was removed): %w", err)
	}
	cleaned := false
	cleanup := func() {
		if cleaned {
			return
		}
		cleaned = true
		cerr := lab.Close()
		if cerr != nil {
			fmt.Fprintf(w, "cleanup: %v\n", cerr)
			err = errors.Join(err, cerr)
			return
		}
		fmt.Fprintf(w, "[6/6] cleaned up: both NICs stopped (TUN devices removed, SAs deleted and their keys zeroed), namespaces %s and %s deleted\n",
			lab.Pair.A.Name, lab.Pair.B.Name)
	}
	defer cleanup()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("demo interrupted")
		}
	}()

	for _, side := range []string{"a", "b"} {
		ns, d := lab.Side(side), lab.Daemon(side)
		st := d.NIC().Stats()
		fmt.Fprintf(w, "      NIC %s  namespace %-30s TUN %s (%s, %s, MTU %d)  wire %s\n", strings.ToUpper(side), ns.Name,
			d.HostName(), lab.Addr(side, false), lab.Addr(side, true), d.HostMTU(), st.WirePort)
	}
	fmt.Fprintf(w, "      tunnel  %s <-> %s, ESP aes-gcm-128, SPI %v (A->B) and %v (B->A), fresh random keys (never shown)\n",
		lab.Pair.A.V4, lab.Pair.B.V4, twonic.SPI("a", twonic.ESP, false), twonic.SPI("b", twonic.ESP, false))
	fmt.Fprintln(w)

	step(2, "ping (built-in ICMP echo) from A's host side to B's TUN address, through the tunnel")
	var pingOK = true
	for _, v6 := range []bool{false, true} {
		dst := lab.Addr("b", v6)
		r, perr := twonic.Echo(ctx, lab.Pair.A, dst, twonic.PingOptions{Count: o.pings})
		if perr != nil {
			return perr
		}
		fmt.Fprintf(w, "      ping %-15s %d sent, %d answered\n", dst, r.Sent, r.Received)
		if r.Received != r.Sent {
			pingOK = false
			fmt.Fprintf(w, "%s\n", indent(r.Output, "        "))
		}
	}
	fmt.Fprintln(w)

	step(3, "TCP transfer of %s from a server in B (%s) to a client in A, checked with SHA-256", humanBytes(o.bytes), lab.Addr("b", false))
	tctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	tr, terr := twonic.TCPTransfer(tctx, lab.Pair.B, lab.Addr("b", false), lab.Pair.A, o.bytes)
	cancel()
	if terr != nil {
		return fmt.Errorf("TCP transfer: %w", terr)
	}
	verdict := "match"
	if !tr.OK() {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(w, "      %s in %v (%.0f Mbit/s); SHA-256 sent %x… received %x…: %s\n",
		humanBytes(tr.Bytes), tr.Duration.Round(time.Millisecond), tr.Mbps(), tr.Sent[:8], tr.Received[:8], verdict)
	fmt.Fprintln(w)

	step(4, "what each NIC reports (through its control API; keys are never shown)")
	var drops uint64
	for _, side := range []string{"a", "b"} {
		d := lab.Daemon(side)
		fmt.Fprintf(w, "\n  ── NIC %s (%s) ──\n", strings.ToUpper(side), d.HostName())
		cl := control.NewClient(d.ControlSocket())
		caps, cerr := cl.Capabilities(ctx)
		if cerr != nil {
			return cerr
		}
		printDemoCaps(w, caps)
		list, lerr := cl.ListSAs(ctx, false)
		if lerr != nil {
			return lerr
		}
		printDemoSAs(w, list)
		st := d.NIC().Stats()
		printDemoCounters(w, st)
		drops += st.TX.Dropped + st.RX.Dropped
	}
	fmt.Fprintln(w)

	a2b, b2a := lab.A.NIC().Stats(), lab.B.NIC().Stats()
	ok := pingOK && tr.OK() && drops == 0
	if ok {
		step(5, "result: OK")
	} else {
		step(5, "result: PROBLEM")
	}
	fmt.Fprintf(w, "      A encrypted %d packets, B decrypted %d; B encrypted %d, A decrypted %d; %d dropped\n",
		a2b.TX.Protected, b2a.RX.Protected, b2a.TX.Protected, a2b.RX.Protected, drops)
	if n := a2b.TX.Bypassed + b2a.TX.Bypassed; n > 0 {
		fmt.Fprintf(w, "      %d packet(s) bypassed: traffic no policy covers, such as the kernel's IPv6 router solicitations\n"+
			"      to ff02::2, goes out unprotected under the default policy (bypass; discard is configurable)\n", n)
	}
	cleanup()
	if !ok {
		return errors.New("the demo saw lost pings, corrupted data or drops; run with --verbose for the daemons' logs")
	}
	return nil
}

func printDemoCaps(w io.Writer, r control.CapabilitiesResponse) {
	fmt.Fprintf(w, "  capabilities  profile %s, offload parameter IPsecV2=%s, %d of %d SA bundles in use\n",
		r.Profile, r.Setting, r.Usage.Bundles, r.Capacity)
	var yes, no []string
	var other []capabilities.Field
	for _, f := range r.Current.NDIS {
		switch f.Value {
		case "TRUE":
			yes = append(yes, f.Name)
		case "FALSE":
			no = append(no, f.Name)
		default:
			if f.Name != "SaOffloadCapacity" {
				other = append(other, f)
			}
		}
	}
	fmt.Fprintf(w, "    NDIS current  enabled: %s\n", strings.Join(yes, " "))
	if len(no) > 0 {
		fmt.Fprintf(w, "                  off:     %s\n", strings.Join(no, " "))
	}
	for _, f := range other {
		fmt.Fprintf(w, "                  %s: %s\n", f.Name, f.Value)
	}
	var feats []string
	for _, f := range r.Linux {
		feats = append(feats, f.String())
	}
	fmt.Fprintf(w, "    Linux view    %s\n", strings.Join(feats, ", "))
}

func printDemoSAs(w io.Writer, r control.ListSAsResponse) {
	fmt.Fprintln(w, "  SAs")
	tw := newDemoTable(w)
	fmt.Fprintln(tw, "    HANDLE\tNAME\tDIR\tMODE\tENDPOINTS\tPROTO\tSPI\tALGORITHM\tSEQ\tPACKETS\tBYTES\tDROPS\tKEYS")
	for _, b := range r.Bundles {
		for _, s := range b.SAs {
			alg := s.Enc
			if s.Auth != "" && s.Auth != "none" {
				if alg != "" {
					alg += "/"
				}
				alg += s.Auth
			}
			keys := "-"
			if (b.Spec.ESP != nil && b.Spec.ESP.KeysRedacted) || (b.Spec.AH != nil && b.Spec.AH.KeysRedacted) {
				keys = "redacted"
			}
			fmt.Fprintf(tw, "    %d\t%s\t%s\t%s\t%s->%s\t%s\t%v\t%s\t%d\t%d\t%d\t%d\t%s\n", b.Handle, b.Spec.Name, b.Spec.Dir, b.Spec.Mode,
				b.Spec.Src, b.Spec.Dst, s.Proto, s.SPI, alg, s.Seq, s.Counters.Packets, s.Counters.Bytes, sumDrops(s.Counters.Drops), keys)
		}
	}
	tw.Flush()
}

func printDemoCounters(w io.Writer, s nic.Stats) {
	fmt.Fprintf(w, "  counters      wire MTU %d, host MTU %d\n", s.WireMTU, s.HostMTU)
	tw := newDemoTable(w)
	fmt.Fprintln(tw, "    DIRECTION\tPACKETS\tBYTES\tPROTECTED\tBYPASSED\tDROPPED")
	for _, d := range []struct {
		name string
		d    nic.DirStats
	}{{"tx (host->wire, encrypt)", s.TX}, {"rx (wire->host, decrypt)", s.RX}} {
		fmt.Fprintf(tw, "    %s\t%d\t%d\t%d\t%d\t%d%s\n", d.name, d.d.Packets, d.d.Bytes, d.d.Protected, d.d.Bypassed, d.d.Dropped, dropDetail(d.d.Drops))
	}
	tw.Flush()
}

func newDemoTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func sumDrops(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func dropDetail(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
