package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	secnicd "github.com/secnic/secnic/daemon"
)

func runCommand(a *app) *cobra.Command {
	var (
		cfgPath   string
		check     bool
		logFormat string
	)
	c := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the secnic daemon: the NIC, its control API and metrics",
		Long: "run starts the secnic NIC described by the configuration file (docs/config.md, example in\n" +
			"docs/config-example.yaml): it loads the capabilities profile and the SAs and policies,\n" +
			"creates the host TUN device and opens the wire port, serves the control API on the\n" +
			"configured unix socket (the --socket flag does not apply here) and Prometheus metrics,\n" +
			"and moves packets until SIGTERM or SIGINT, when it removes the TUN device, deletes the SAs\n" +
			"(zeroing their keys) and removes the socket. SIGHUP re-reads the file and applies the SA\n" +
			"and policy changes without touching unchanged SAs; a file that cannot be applied as a\n" +
			"whole is refused and nothing changes. Needs CAP_NET_ADMIN (and CAP_NET_RAW for a link\n" +
			"wire port).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return usagef("--config is required: give the daemon's configuration file (see docs/config-example.yaml)")
			}
			if check {
				cfg, err := secnicd.LoadConfig(cfgPath)
				if err != nil {
					return err
				}
				for _, w := range cfg.Warnings() {
					fmt.Fprintf(a.errOut, "warning: %s\n", w)
				}
				fmt.Fprintf(a.out, "%s: configuration OK (%d SA bundles, %d policies, wire %s)\n",
					cfgPath, len(cfg.SAs), len(cfg.Policies), cfg.Wire.Type)
				for i := range cfg.SAs {
					cfg.SAs[i].Wipe()
				}
				return nil
			}
			opts := &slog.HandlerOptions{Level: slog.LevelDebug} // the config's log_level filters
			var h slog.Handler
			switch logFormat {
			case "text":
				h = slog.NewTextHandler(a.errOut, opts)
			case "json":
				h = slog.NewJSONHandler(a.errOut, opts)
			default:
				return usagef("--log-format %q: use text or json", logFormat)
			}
			return secnicd.RunFile(cmd.Context(), cfgPath, slog.New(h))
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (YAML or JSON)")
	c.Flags().BoolVar(&check, "check", false, "only validate the configuration file and exit")
	c.Flags().StringVar(&logFormat, "log-format", "text", "log format on standard error: text or json")
	return c
}
