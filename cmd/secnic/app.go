package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/control"
)

// command builds one top-level subcommand.
type command func(*app) *cobra.Command

// app holds what every subcommand shares: the global flags and the I/O.
type app struct {
	socket string
	json   bool
	in     io.Reader
	out    io.Writer
	errOut io.Writer
}

// client returns an API client for --socket.
func (a *app) client() *control.Client { return control.NewClient(a.socket) }

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a tabwriter for aligned columns; call Flush.
func (a *app) table() *tabwriter.Writer { return tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0) }

// usageError marks errors in the command line (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// execute runs the CLI with args and returns the exit status: 0 success, 1
// failure, 2 bad usage.
func execute(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer, cmds []command) int {
	a := &app{in: in, out: out, errOut: errOut}
	root := &cobra.Command{
		Use:   "secnic",
		Short: "Control the secnic IPsec offload NIC",
		Long: "secnic controls the secnic software NIC (an emulated NDIS IPsec Offload V2 card) through\n" +
			"its daemon's control API: capabilities and offload parameters, SA bundles, policies,\n" +
			"statistics and events. Every command takes --json for machine-readable output.",
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           versionString(),
		DisableAutoGenTag: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	def := control.DefaultSocket
	if env := os.Getenv("SECNIC_SOCKET"); env != "" {
		def = env
	}
	root.PersistentFlags().StringVar(&a.socket, "socket", def, "control socket of the daemon (env SECNIC_SOCKET)")
	root.PersistentFlags().BoolVar(&a.json, "json", false, "print JSON instead of tables")
	for _, c := range cmds {
		root.AddCommand(c(a))
	}
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(errOut, "secnic:", err)
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.Contains(err.Error(), "arg(s)") {
			return 2
		}
		return 1
	}
	return 0
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

// parseToggle reads NAME=on|off (also true/false, yes/no, 1/0).
func parseToggle(flag, s string) (string, bool, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", false, usagef("--%s %q: write NAME=on or NAME=off", flag, s)
	}
	switch strings.ToLower(val) {
	case "on", "true", "yes", "1", "enable", "enabled":
		return name, true, nil
	case "off", "false", "no", "0", "disable", "disabled":
		return name, false, nil
	}
	return "", false, usagef("--%s %q: the value must be on or off", flag, s)
}

// readInput reads a file argument ("-" = stdin).
func (a *app) readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(a.in)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return b, nil
}
