package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
)

func capsCommand(a *app) *cobra.Command {
	var view string
	c := &cobra.Command{
		Use:   "caps",
		Short: "Show the hardware capabilities and the current offload configuration",
		Long: "caps shows the IPsec offload capabilities of the card (hardware) and what is enabled now\n" +
			"(current), as NDIS sees them (NDIS_IPSEC_OFFLOAD_V2), as secnic extends them, as Linux\n" +
			"ethtool features, and as the 32-byte NDIS binary structure.\n\n" +
			"Views: all (default), ndis, secnic, linux, binary.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch view {
			case "all", "ndis", "secnic", "linux", "binary":
			default:
				return usagef("--view %q: use all, ndis, secnic, linux or binary", view)
			}
			resp, err := a.client().Capabilities(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(resp)
			}
			printCaps(a, resp, view)
			return nil
		},
	}
	c.Flags().StringVar(&view, "view", "all", "which view to print: all, ndis, secnic, linux, binary")
	return c
}

func printCaps(a *app, r control.CapabilitiesResponse, view string) {
	all := view == "all"
	fmt.Fprintf(a.out, "profile: %s   IPsecV2 offload parameter: %s   SA bundles: %d of %d in use\n",
		r.Profile, r.Setting, r.Usage.Bundles, r.Capacity)
	if all || view == "ndis" {
		fmt.Fprintln(a.out, "\nNDIS_IPSEC_OFFLOAD_V2")
		sideBySide(a, r.Hardware.NDIS, r.Current.NDIS)
	}
	if all || view == "secnic" {
		fmt.Fprintln(a.out, "\nsecnic extensions and limits")
		sideBySide(a, r.Hardware.Secnic, r.Current.Secnic)
	}
	if all || view == "linux" {
		fmt.Fprintln(a.out, "\nLinux (ethtool -k)")
		for _, f := range r.Linux {
			fmt.Fprintf(a.out, "  %s\n", f)
		}
	}
	if all || view == "binary" {
		fmt.Fprintf(a.out, "\nNDIS_IPSEC_OFFLOAD_V2 (%d bytes, little-endian)\n", capabilities.BinarySize)
		fmt.Fprintf(a.out, "  hardware  %s\n  current   %s\n", spaced(r.Hardware.Binary), spaced(r.Current.Binary))
	}
	if all && len(r.Deviations) > 0 {
		fmt.Fprintln(a.out, "\nnotes")
		for _, d := range r.Deviations {
			fmt.Fprintf(a.out, "  - %s\n", d)
		}
	}
}

func sideBySide(a *app, hw, cur []capabilities.Field) {
	tw := a.table()
	fmt.Fprintln(tw, "  FIELD\tHARDWARE\tCURRENT")
	for i, f := range hw {
		c := ""
		if i < len(cur) {
			c = cur[i].Value
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, f.Value, c)
	}
	tw.Flush()
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
