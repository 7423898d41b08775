package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
)

func capsCommand(a *app) *cobra.Command {
	var (
		view  string
		full  bool
		width int
	)
	c := &cobra.Command{
		Use:   "caps",
		Short: "Show the hardware capabilities and the current offload configuration",
		Long: "caps shows the IPsec offload capabilities of the card (hardware) and what is enabled now\n" +
			"(current), as NDIS sees them (NDIS_IPSEC_OFFLOAD_V2), as secnic extends them, as Linux\n" +
			"ethtool features, and as the 32-byte NDIS binary structure.\n\n" +
			"By default each field shows its current value, and the hardware value only where it\n" +
			"differs; --full shows both for every field. Flag and algorithm lists are wrapped under\n" +
			"their field to fit the terminal (--width, $COLUMNS).\n\n" +
			"Views: all (default), ndis, secnic, linux, binary.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch view {
			case "all", "ndis", "secnic", "linux", "binary":
			default:
				return usagef("--view %q: use all, ndis, secnic, linux or binary", view)
			}
			if width != 0 && width < 60 {
				return usagef("--width %d: give at least 60 columns", width)
			}
			resp, err := a.client().Capabilities(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(resp)
			}
			if width == 0 {
				width = terminalWidth(a.out)
			}
			printCaps(a, resp, view, full, width)
			return nil
		},
	}
	c.Flags().StringVar(&view, "view", "all", "which view to print: all, ndis, secnic, linux, binary")
	c.Flags().BoolVar(&full, "full", false, "show hardware and current values of every field")
	c.Flags().IntVar(&width, "width", 0, "wrap at this many columns (default: the terminal's, $COLUMNS, or 80)")
	return c
}

// terminalWidth is the width of out if it is a terminal, else $COLUMNS,
// else 80.
func terminalWidth(out io.Writer) int {
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col >= 60 {
			return int(ws.Col)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 60 {
		return n
	}
	return 80
}

func printCaps(a *app, r control.CapabilitiesResponse, view string, full bool, width int) {
	all := view == "all"
	head := fmt.Sprintf("profile: %s   IPsecV2 offload parameter: %s   SA bundles: %d of %d in use", r.Profile, r.Setting, r.Usage.Bundles, r.Capacity)
	for _, l := range wrapWords(strings.Split(head, "   "), "   ", width, "") {
		fmt.Fprintln(a.out, l)
	}
	what := "CURRENT, with HARDWARE where it differs (--full: both)"
	if full {
		what = "HARDWARE and CURRENT"
	}
	title := func(t string) {
		fmt.Fprintln(a.out)
		for i, l := range wrapWords(strings.Fields(t), " ", width-2, "") {
			if i > 0 {
				l = "  " + l
			}
			fmt.Fprintln(a.out, l)
		}
	}
	if all || view == "ndis" {
		title("NDIS_IPSEC_OFFLOAD_V2: " + what)
		printFields(a, r.Hardware.NDIS, r.Current.NDIS, full, width)
	}
	if all || view == "secnic" {
		title("secnic extensions and limits: " + what)
		printFields(a, r.Hardware.Secnic, r.Current.Secnic, full, width)
	}
	if all || view == "linux" {
		fmt.Fprintln(a.out, "\nLinux (ethtool -k)")
		for _, f := range r.Linux {
			fmt.Fprintf(a.out, "  %s\n", f)
		}
	}
	if all || view == "binary" {
		title(fmt.Sprintf("NDIS_IPSEC_OFFLOAD_V2 (%d bytes, little-endian)", capabilities.BinarySize))
		for _, l := range [][2]string{{"hardware", r.Hardware.Binary}, {"current", r.Current.Binary}} {
			for i, w := range wrapWords(strings.Fields(spaced(l[1])), " ", width, "            ") {
				if i == 0 {
					w = fmt.Sprintf("  %-9s %s", l[0], strings.TrimSpace(w))
				}
				fmt.Fprintln(a.out, w)
			}
		}
	}
	if all && len(r.Deviations) > 0 {
		fmt.Fprintln(a.out, "\nnotes")
		for _, d := range r.Deviations {
			for i, l := range wrapWords(strings.Fields(d), " ", width, "    ") {
				if i == 0 {
					l = "  - " + strings.TrimSpace(l)
				}
				fmt.Fprintln(a.out, l)
			}
		}
	}
}

// splitValue cuts a field value into what goes on the field's line and a
// list to wrap under it: "0x0000000f (A|B|C)" gives "0x0000000f" and
// A, B, C (joined by spaces); "a, b, c" gives "" and a, b, c (joined by
// commas).
func splitValue(v string) (head string, list []string, sep string) {
	if i := strings.Index(v, " ("); i > 0 && strings.HasSuffix(v, ")") && strings.Contains(v[i:], "|") {
		return v[:i], strings.Split(v[i+2:len(v)-1], "|"), " "
	}
	if strings.Contains(v, ", ") {
		return "", strings.Split(v, ", "), ", "
	}
	return v, nil, ""
}

// wrapWords joins words with sep into lines of at most width columns
// (a word longer than that gets a line of its own), every line starting
// with indent.
func wrapWords(words []string, sep string, width int, indent string) []string {
	var lines []string
	cur := indent
	for i, w := range words {
		last := i == len(words)-1
		piece := w
		if !last && strings.TrimSpace(sep) != "" {
			piece += strings.TrimRight(sep, " ")
		}
		if cur != indent && len(cur)+len(sep)+len(piece) > width {
			lines = append(lines, strings.TrimRight(cur, " "))
			cur = indent
		}
		if cur != indent {
			if strings.TrimSpace(sep) != "" {
				cur += " "
			} else {
				cur += sep
			}
		}
		cur += piece
	}
	if cur != indent || len(lines) == 0 {
		lines = append(lines, strings.TrimRight(cur, " "))
	}
	return lines
}

// printFields prints capability fields, one per line as ethtool does, with
// flag and algorithm lists wrapped under the field.
func printFields(a *app, hw, cur []capabilities.Field, full bool, width int) {
	curBy := map[string]string{}
	for _, f := range cur {
		curBy[f.Name] = f.Value
	}
	nameW := 0
	for _, f := range hw {
		nameW = max(nameW, len(f.Name)+1)
	}
	nameW = min(nameW, width/2)
	value := func(label, v string, labelW int) {
		head, list, sep := splitValue(v)
		first := fmt.Sprintf("  %-*s %s", labelW, label, head)
		if list == nil && len(first) > width {
			// Plain text too long for the line: wrap its words.
			head, list, sep = "", strings.Fields(v), " "
			first = fmt.Sprintf("  %-*s ", labelW, label)
		}
		indent := strings.Repeat(" ", 6)
		// A short list stays on the field's line.
		if len(list) > 0 {
			joined := strings.Join(list, strings.TrimRight(sep, " ")+" ")
			if head == "" && len(first)+len(joined) <= width {
				first += joined
				list = nil
			} else if head != "" && len(first)+len(joined)+3 <= width {
				first += " (" + strings.Join(list, "|") + ")"
				list = nil
			}
		}
		fmt.Fprintln(a.out, strings.TrimRight(first, " "))
		if len(list) > 0 {
			for _, l := range wrapWords(list, sep, width, indent) {
				fmt.Fprintln(a.out, l)
			}
		}
	}
	for _, f := range hw {
		c, have := curBy[f.Name]
		switch {
		case full:
			fmt.Fprintf(a.out, "  %s\n", f.Name)
			value("  hardware:", f.Value, 11)
			if have {
				value("  current:", c, 11)
			}
		case !have || c == "" || c == f.Value:
			value(f.Name+":", f.Value, nameW)
		default:
			value(f.Name+":", c, nameW)
			value("  hardware:", f.Value, nameW)
		}
	}
}

// spaced groups hex in 4-byte words.
func spaced(h string) string {
	var parts []string
	for len(h) > 8 {
		parts = append(parts, h[:8])
		h = h[8:]
	}
	parts = append(parts, h)
	return strings.Join(parts, " ")
}

func offloadCommand(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "offload",
		Short: "Change the offload parameters (NDIS OID_TCP_OFFLOAD_PARAMETERS)",
	}
	var (
		v2, v2ipv4                   string
		features, encs, auths, ethts []string
	)
	set := &cobra.Command{
		Use:   "set",
		Short: "Set offload parameters and switch features and algorithms",
		Long: "set changes the current offload configuration, all together or not at all, and the daemon\n" +
			"emits one NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG indication (see `secnic events`).\n\n" +
			"--ipsec-v2 takes the NDIS_OFFLOAD_PARAMETERS value: disabled, ah-enabled, esp-enabled,\n" +
			"ah-and-esp-enabled, no-change (or 0-4, or the NDIS names). Toggles are applied in this\n" +
			"order: --feature, --ethtool, --enc, --auth.\n\n" +
			"Examples:\n" +
			"  secnic offload set --ipsec-v2 esp-enabled\n" +
			"  secnic offload set --feature tunnel=off --enc aes-cbc-128=off\n" +
			"  secnic offload set --feature legacy_algorithms=on --enc 3des-cbc=on\n" +
			"  secnic offload set --ethtool esp-hw-offload=off",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := control.OffloadRequest{}
			if v2 != "" {
				req.IPsecV2 = refOf(v2)
			}
			if v2ipv4 != "" {
				req.IPsecV2IPv4 = refOf(v2ipv4)
			}
			for _, g := range []struct {
				flag string
				vals []string
				mk   func(string, bool) control.Toggle
			}{
				{"feature", features, func(n string, on bool) control.Toggle { return control.Toggle{Feature: n, On: on} }},
				{"ethtool", ethts, func(n string, on bool) control.Toggle { return control.Toggle{Ethtool: n, On: on} }},
				{"enc", encs, func(n string, on bool) control.Toggle { return control.Toggle{Encryption: n, On: on} }},
				{"auth", auths, func(n string, on bool) control.Toggle { return control.Toggle{Integrity: n, On: on} }},
			} {
				for _, v := range g.vals {
					n, on, err := parseToggle(g.flag, v)
					if err != nil {
						return err
					}
					req.Toggles = append(req.Toggles, g.mk(n, on))
				}
			}
			if req.IPsecV2 == "" && req.IPsecV2IPv4 == "" && len(req.Toggles) == 0 {
				return usagef("nothing to set: give --ipsec-v2, --ipsec-v2-ipv4, --feature, --ethtool, --enc or --auth")
			}
			resp, err := a.client().SetOffload(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(resp)
			}
			if resp.Changed {
				fmt.Fprintf(a.out, "current configuration changed (IPsecV2 = %s); indication %s sent\n", resp.Setting, capabilities.StatusTaskOffloadCurrentConfig)
			} else {
				fmt.Fprintf(a.out, "current configuration unchanged (IPsecV2 = %s)\n", resp.Setting)
			}
			tw := a.table()
			for _, f := range resp.NDIS {
				fmt.Fprintf(tw, "  %s\t%s\n", f.Name, f.Value)
			}
			return tw.Flush()
		},
	}
	f := set.Flags()
	f.StringVar(&v2, "ipsec-v2", "", "NDIS_OFFLOAD_PARAMETERS.IPsecV2: disabled, ah-enabled, esp-enabled, ah-and-esp-enabled, no-change")
	f.StringVar(&v2ipv4, "ipsec-v2-ipv4", "", "NDIS_OFFLOAD_PARAMETERS.IPsecV2IPv4 (IPv4-only cards)")
	f.StringArrayVar(&features, "feature", nil, "NAME=on|off: a capability feature, e.g. tunnel, extended_sequence_numbers, legacy_algorithms (repeatable)")
	f.StringArrayVar(&ethts, "ethtool", nil, "NAME=on|off: esp-hw-offload, esp-tx-csum-hw-offload, tx-esp-segmentation (repeatable)")
	f.StringArrayVar(&encs, "enc", nil, "NAME=on|off: an encryption algorithm, e.g. aes-cbc-128 (repeatable)")
	f.StringArrayVar(&auths, "auth", nil, "NAME=on|off: an integrity algorithm, e.g. hmac-sha1-96 (repeatable)")
	c.AddCommand(set)
	return c
}
