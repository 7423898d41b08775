package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/xfrm"
)

func refOf(s string) saspec.Ref { return saspec.Ref(s) }

func saCommand(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "sa",
		Short: "Add, delete, update, list and show SA bundles",
		Long: "An SA bundle is what NDIS offloads with one ADD_SA: an ESP SA, an AH SA, or both, in one\n" +
			"direction. Bundles are identified by their handle (a number) or their name.\n" +
			"The schema is documented in docs/config-schema.md.",
	}
	c.AddCommand(saAddCommand(a), saDelCommand(a), saUpdateCommand(a), saListCommand(a), saShowCommand(a))
	return c
}

// keyArg reads a key flag: hex, or @FILE holding hex (a file others may
// read is refused unless allowInsecure).
func keyArg(a *app, allowInsecure bool, flag, v string) (saspec.Key, error) {
	if v == "" {
		return saspec.Key{}, nil
	}
	if strings.HasPrefix(v, "@") {
		if err := a.checkKeyFile(v[1:], allowInsecure); err != nil {
			return saspec.Key{}, fmt.Errorf("--%s: %w", flag, err)
		}
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return saspec.Key{}, fmt.Errorf("--%s: %w", flag, err)
		}
		v = strings.TrimSpace(string(b))
	}
	k, err := saspec.ParseKey(v)
	if err != nil {
		return saspec.Key{}, usagef("--%s %s", flag, err)
	}
	return k, nil
}

func saAddCommand(a *app) *cobra.Command {
	var (
		file                                     string
		allowInsecure                            bool
		b                                        saspec.BundleSpec
		replay                                   int
		encapType                                string
		encapSport, encapDport                   uint16
		spi, ahSPI                               string
		enc, auth, encKey, authKey               string
		icv                                      int
		ahAuth, ahKey                            string
		softB, softP, softS, hardB, hardP, hardS uint64
	)
	c := &cobra.Command{
		Use:   "add",
		Short: "Offload SA bundles, from flags or from a YAML/JSON file",
		Long: "add offloads one bundle described by flags, or the bundles of a YAML or JSON file (-f FILE,\n" +
			"- for stdin): one bundle, a list, or {sas: [...]}, in the schema of docs/config-schema.md.\n" +
			"Several bundles behave as NDIS ADD_SA: each succeeds or fails on its own.\n\n" +
			"Keys are hex (0x prefix optional) or @FILE to read them from a file; keys given on the\n" +
			"command line are visible to other local users in the process list.\n\n" +
			"Example:\n" +
			"  secnic sa add --name web-in --dir in --dst 192.0.2.2 --spi 0x1000 \\\n" +
			"      --enc aes-gcm-128 --enc-key @/etc/secnic/web-in.key",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var specs []saspec.BundleSpec
			if file != "" {
				if cmd.Flags().NFlag() > countSet(cmd, "file", "socket", "json", allowInsecureFlag) {
					return usagef("give either -f FILE or bundle flags, not both")
				}
				if file != "-" {
					if err := a.checkKeyFile(file, allowInsecure); err != nil {
						return err
					}
				}
				data, err := a.readInput(file)
				if err != nil {
					return err
				}
				specs, err = saspec.DecodeBundleSpecs(data)
				if err != nil {
					return err
				}
			} else {
				if cmd.Flags().Changed("replay-window") {
					b.ReplayWindow = &replay
				}
				if encapType != "" || encapSport != 0 || encapDport != 0 {
					b.UDPEncap = &saspec.UDPEncapSpec{Type: encapType, SrcPort: encapSport, DstPort: encapDport}
				}
				b.Lifetime = saspec.LifetimeSpec{
					Soft: saspec.LimitSpec{Bytes: softB, Packets: softP, Seconds: softS},
					Hard: saspec.LimitSpec{Bytes: hardB, Packets: hardP, Seconds: hardS},
				}
				if spi != "" || enc != "" {
					s, err := spiArg("spi", spi)
					if err != nil {
						return err
					}
					ek, err := keyArg(a, allowInsecure, "enc-key", encKey)
					if err != nil {
						return err
					}
					ak, err := keyArg(a, allowInsecure, "auth-key", authKey)
					if err != nil {
						return err
					}
					b.ESP = &saspec.SASpec{SPI: s, Enc: enc, Auth: auth, ICVLen: icv, EncKey: ek, AuthKey: ak}
				}
				if ahSPI != "" || ahAuth != "" {
					s, err := spiArg("ah-spi", ahSPI)
					if err != nil {
						return err
					}
					k, err := keyArg(a, allowInsecure, "ah-key", ahKey)
					if err != nil {
						return err
					}
					b.AH = &saspec.SASpec{SPI: s, Auth: ahAuth, AuthKey: k}
				}
				if b.ESP == nil && b.AH == nil {
					return usagef("no SA given: use --spi/--enc for ESP and/or --ah-spi/--ah-auth for AH, or -f FILE")
				}
				specs = []saspec.BundleSpec{b}
			}
			a.warnZeroKeys(specs)
			resp, err := a.client().AddSAs(cmd.Context(), specs)
			for i := range specs {
				specs[i].Wipe()
			}
			var ae *control.APIError
			if err != nil && !(errors.As(err, &ae) && len(ae.Results) > 0) {
				return err
			}
			if err != nil {
				// Nothing was offloaded; the per-entry results say why.
				if a.json {
					_ = a.printJSON(ae.ErrorResponse)
				} else {
					_ = printAddResults(a, ae.Results)
				}
				return err
			}
			if a.json {
				if err := a.printJSON(resp); err != nil {
					return err
				}
			} else {
				tw := a.table()
				fmt.Fprintln(tw, "INDEX\tNAME\tHANDLE\tRESULT")
				for _, r := range resp.Results {
					res := "offloaded"
					if r.Handle == 0 {
						res = r.Error
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Index, dash(r.Name), handleStr(r.Handle), res)
				}
				tw.Flush()
			}
			if resp.Failed > 0 {
				return fmt.Errorf("%d of %d bundles were not offloaded", resp.Failed, len(resp.Results))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "read bundles from a YAML or JSON file (- for stdin)")
	f.BoolVar(&allowInsecure, allowInsecureFlag, false, "accept a key or SA file that group or others may read (a warning instead of a refusal; for labs)")
	f.StringVar(&b.Name, "name", "", "bundle name")
	f.StringVar(&b.Dir, "dir", "", "direction: in or out")
	f.StringVar(&b.Mode, "mode", "", "transport (default) or tunnel")
	f.StringVar(&b.Family, "family", "", "ipv4 or ipv6 (derived from the addresses when empty)")
	f.StringVar(&b.Src, "src", "", "source address (tunnel: local endpoint; empty = wildcard)")
	f.StringVar(&b.Dst, "dst", "", "destination address (tunnel: remote endpoint; empty = wildcard)")
	f.BoolVar(&b.ESN, "esn", false, "use 64-bit extended sequence numbers")
	f.Uint32Var(&b.SeqHigh, "seq-high", 0, "initial ESN high-order bits")
	f.IntVar(&replay, "replay-window", saspec.DefaultReplayWindow, "inbound anti-replay window in packets (0 = off)")
	f.StringVar(&encapType, "udp-encap", "", "UDP encapsulation: transport, tunnel, transport-over-udp-tunnel, udp-transport-over-tunnel")
	f.Uint16Var(&encapSport, "encap-sport", 0, "UDP encapsulation source port (default 4500)")
	f.Uint16Var(&encapDport, "encap-dport", 0, "UDP encapsulation destination port (default 4500)")
	f.Uint8Var(&b.TTL, "ttl", 0, "tunnel outer TTL (default 64)")
	f.StringVar(&b.DF, "df", "", "tunnel outer DF bit: copy, set, clear")
	f.IntVar(&b.TFCPad, "tfc-pad", 0, "pad tunnel inner packets to this many bytes")
	f.StringVar(&b.Offload, "offload", "", "crypto (default) or packet")
	f.BoolVar(&b.AllowLegacy, "allow-legacy", false, "permit DES, 3DES and HMAC-MD5")
	f.StringVar(&spi, "spi", "", "ESP SPI (decimal or 0x hex, 256 or more)")
	f.StringVar(&enc, "enc", "", "ESP encryption algorithm, e.g. aes-gcm-128, aes-cbc-256, null")
	f.StringVar(&auth, "auth", "", "ESP integrity algorithm, e.g. hmac-sha256-128 (none for AEAD)")
	f.IntVar(&icv, "icv-len", 0, "AES-GCM ICV length: 8, 12 or 16")
	f.StringVar(&encKey, "enc-key", "", "ESP encryption key in hex, salt last, or @FILE")
	f.StringVar(&authKey, "auth-key", "", "ESP integrity key in hex, or @FILE")
	f.StringVar(&ahSPI, "ah-spi", "", "AH SPI")
	f.StringVar(&ahAuth, "ah-auth", "", "AH integrity algorithm, e.g. hmac-sha256-128")
	f.StringVar(&ahKey, "ah-key", "", "AH integrity key in hex, or @FILE")
	f.Uint64Var(&softB, "soft-bytes", 0, "soft lifetime in bytes")
	f.Uint64Var(&softP, "soft-packets", 0, "soft lifetime in packets")
	f.Uint64Var(&softS, "soft-seconds", 0, "soft lifetime in seconds")
	f.Uint64Var(&hardB, "hard-bytes", 0, "hard lifetime in bytes")
	f.Uint64Var(&hardP, "hard-packets", 0, "hard lifetime in packets")
	f.Uint64Var(&hardS, "hard-seconds", 0, "hard lifetime in seconds")
	return c
}

func countSet(cmd *cobra.Command, names ...string) int {
	n := 0
	for _, name := range names {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			n++
		}
	}
	return n
}

func spiArg(flag, v string) (saspec.SPI, error) {
	if v == "" {
		return 0, usagef("--%s is required for that SA", flag)
	}
	s, err := saspec.ParseSPI(v)
	if err != nil {
		return 0, usagef("--%s: %v", flag, err)
	}
	return s, nil
}

func printAddResults(a *app, raw []byte) error {
	var res []sadb.AddResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return err
	}
	tw := a.table()
	fmt.Fprintln(tw, "INDEX\tNAME\tHANDLE\tRESULT")
	for _, r := range res {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Index, dash(r.Name), handleStr(r.Handle), r.Error)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func handleStr(h sa.Handle) string {
	if h == 0 {
		return "-"
	}
	return strconv.FormatUint(uint64(h), 10)
}

func saDelCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "del HANDLE|NAME...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete SA bundles (their keys are zeroed)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.client().DeleteSAs(cmd.Context(), args...)
			if err != nil {
				var ae *control.APIError
				if len(args) == 1 || !errors.As(err, &ae) || len(ae.Results) == 0 {
					return err
				}
				// Nothing was deleted; show why for each.
				_ = json.Unmarshal(ae.Results, &resp.Results)
			}
			if a.json {
				if e := a.printJSON(resp); e != nil {
					return e
				}
			} else {
				for _, r := range resp.Results {
					if r.Error != "" {
						fmt.Fprintf(a.out, "%s: %s\n", r.Ref, r.Error)
					} else {
						fmt.Fprintf(a.out, "deleted bundle %d (%s)\n", r.Handle, r.Ref)
					}
				}
			}
			if failed := len(resp.Results) - resp.Deleted; failed > 0 {
				return fmt.Errorf("%d of %d bundles were not deleted", failed, len(resp.Results))
			}
			return nil
		},
	}
}

func saUpdateCommand(a *app) *cobra.Command {
	var (
		u   saspec.UpdateSpec
		spi string
	)
	c := &cobra.Command{
		Use:   "update HANDLE|NAME --seq-high N",
		Short: "Push new ESN high-order bits (NDIS UPDATE_SA)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("seq-high") {
				return usagef("--seq-high is required")
			}
			if spi != "" {
				s, err := saspec.ParseSPI(spi)
				if err != nil {
					return usagef("--spi: %v", err)
				}
				u.SPI = s
			}
			info, err := a.client().UpdateSA(cmd.Context(), args[0], u)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(info)
			}
			fmt.Fprintf(a.out, "updated bundle %d: ESN high-order bits %d\n", info.Handle, u.SeqHigh)
			return printSAState(a, info)
		},
	}
	c.Flags().Uint32Var(&u.SeqHigh, "seq-high", 0, "new high-order 32 bits of the extended sequence number")
	c.Flags().StringVar(&u.Proto, "proto", "", "only the SA of this protocol (esp or ah)")
	c.Flags().StringVar(&spi, "spi", "", "only the SA with this SPI")
	return c
}

func saListCommand(a *app) *cobra.Command {
	var (
		keys   bool
		format string
	)
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the SA bundles",
		Long: "list prints the bundles as a table. --format netdevsim prints them as netdevsim's debugfs\n" +
			"ipsec file (SA count=N tx=M, three lines per SA), for checks written against netdevsim such\n" +
			"as the kernel selftest kci_test_ipsec_offload; netdevsim-hex is the layout of older\n" +
			"kernels, with addresses as four 32-bit words. Both print keys, so they need --keys.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nf, err := netdevsimFormat(format, keys)
			if err != nil {
				return err
			}
			resp, err := a.client().ListSAs(cmd.Context(), keys)
			if err != nil {
				return err
			}
			if format != "" && format != "table" {
				return xfrm.WriteNetdevsim(a.out, resp.Bundles, nf)
			}
			if a.json {
				return a.printJSON(resp)
			}
			fmt.Fprintf(a.out, "%d of %d SA bundles in use (%d inbound SAs, %d outbound SAs)\n",
				resp.Usage.Bundles, resp.Capacity, resp.Usage.InboundSAs, resp.Usage.OutboundSAs)
			if len(resp.Bundles) == 0 {
				return nil
			}
			tw := a.table()
			fmt.Fprintln(tw, "HANDLE\tNAME\tDIR\tMODE\tSRC\tDST\tPROTO\tSPI\tALGORITHMS\tSEQ\tPACKETS\tBYTES\tSTATE")
			for _, b := range resp.Bundles {
				for i, s := range b.SAs {
					h, name, dir, mode, src, dst := handleStr(b.Handle), dash(b.Spec.Name), b.Spec.Dir, b.Spec.Mode, dash(b.Spec.Src), dash(b.Spec.Dst)
					if i > 0 {
						h, name, dir, mode, src, dst = "", "", "", "", "", ""
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
						h, name, dir, mode, src, dst, s.Proto, s.SPI, algs(s), s.Seq, s.Counters.Packets, s.Counters.Bytes, state(s))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if keys {
				fmt.Fprintln(a.out, "(keys are shown only with --json or `sa show --keys`)")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&keys, "keys", false, "include key material (with --json or --format netdevsim)")
	c.Flags().StringVar(&format, "format", "", "output format: table (default), netdevsim or netdevsim-hex")
	return c
}

// netdevsimFormat checks sa list --format.
func netdevsimFormat(format string, keys bool) (xfrm.NetdevsimFormat, error) {
	var f xfrm.NetdevsimFormat
	switch format {
	case "", "table":
		return f, nil
	case "netdevsim":
		f = xfrm.NetdevsimAddr
	case "netdevsim-hex":
		f = xfrm.NetdevsimHex
	default:
		return f, usagef("--format %q: give table, netdevsim or netdevsim-hex", format)
	}
	if !keys {
		return f, usagef("--format %s prints key material, as netdevsim's debugfs file does: add --keys", format)
	}
	return f, nil
}

func algs(s sadb.SAInfo) string {
	if s.Enc == "" {
		return s.Auth
	}
	if s.Auth == "none" {
		return s.Enc
	}
	return s.Enc + "/" + s.Auth
}

func state(s sadb.SAInfo) string {
	switch {
	case s.Expired:
		return "expired"
	case s.SeqExhausted:
		return "seq-exhausted"
	case s.SoftExpired:
		return "delete-requested"
	}
	return "ok"
}

func saShowCommand(a *app) *cobra.Command {
	var keys bool
	c := &cobra.Command{
		Use:   "show HANDLE|NAME",
		Short: "Show one SA bundle: its spec (as YAML, keys only with --keys) and its SAs' state",
		Long: "show prints the bundle's spec as YAML, in the schema `sa add -f` reads, then the state of\n" +
			"its SAs. With --keys the spec includes the key material, so that\n" +
			"`secnic sa show NAME --keys > NAME.yaml` can be added again; protect that file.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := a.client().ShowSA(cmd.Context(), args[0], keys)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(info)
			}
			y, err := yaml.Marshal(info.Spec)
			if err != nil {
				return err
			}
			// The spec is YAML that `sa add -f` reads; the rest is comments.
			fmt.Fprintf(a.out, "# bundle %d (%s), created %s\n%s", info.Handle, info.Origin, info.Created.Format("2006-01-02 15:04:05"), y)
			var state bytes.Buffer
			if err := printSAState(&app{out: &state}, info); err != nil {
				return err
			}
			for _, line := range strings.Split(strings.TrimRight(state.String(), "\n"), "\n") {
				fmt.Fprintf(a.out, "# %s\n", line)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&keys, "keys", false, "include the key material in the spec")
	return c
}

func printSAState(a *app, info sadb.BundleInfo) error {
	tw := a.table()
	fmt.Fprintln(tw, "PROTO\tSPI\tALGORITHMS\tICV\tSEQ\tSEQ_HIGH\tWINDOW\tPACKETS\tBYTES\tDROPS\tAGE\tSTATE")
	for _, s := range info.SAs {
		var drops uint64
		for _, d := range s.Counters.Drops {
			drops += d
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%ds\t%s\n",
			s.Proto, s.SPI, algs(s), s.ICVLen, s.Seq, s.SeqHigh, s.ReplayWindow, s.Counters.Packets, s.Counters.Bytes, drops, s.AgeSeconds, state(s))
	}
	return tw.Flush()
}
