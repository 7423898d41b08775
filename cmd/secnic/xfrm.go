package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/xfrm"
)

// clientBackend runs xfrm commands through the control API.
type clientBackend struct{ c *control.Client }

// resultError turns a refused add into the entry's own message.
func resultError(err error) error {
	var ae *control.APIError
	if errors.As(err, &ae) && len(ae.Results) > 0 {
		var res []struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(ae.Results, &res) == nil && len(res) > 0 && res[0].Error != "" {
			return errors.New(res[0].Error)
		}
	}
	return err
}

func (b clientBackend) AddBundle(ctx context.Context, s saspec.BundleSpec) error {
	resp, err := b.c.AddSAs(ctx, []saspec.BundleSpec{s})
	if err != nil {
		return resultError(err)
	}
	if resp.Failed > 0 && len(resp.Results) > 0 {
		return errors.New(resp.Results[0].Error)
	}
	return nil
}

func (b clientBackend) ListBundles(ctx context.Context, keys bool) ([]sadb.BundleInfo, error) {
	resp, err := b.c.ListSAs(ctx, keys)
	return resp.Bundles, err
}

func (b clientBackend) DeleteBundle(ctx context.Context, h sa.Handle) error {
	_, err := b.c.DeleteSAs(ctx, strconv.FormatUint(uint64(h), 10))
	return err
}

func (b clientBackend) AddPolicy(ctx context.Context, s saspec.PolicySpec) error {
	resp, err := b.c.AddPolicies(ctx, []saspec.PolicySpec{s})
	if err != nil {
		return resultError(err)
	}
	if resp.Failed > 0 && len(resp.Results) > 0 {
		return errors.New(resp.Results[0].Error)
	}
	return nil
}

func (b clientBackend) ListPolicies(ctx context.Context) ([]sadb.PolicyInfo, error) {
	resp, err := b.c.ListPolicies(ctx)
	return resp.Policies, err
}

func (b clientBackend) DeletePolicy(ctx context.Context, id uint32) error {
	_, err := b.c.DeletePolicy(ctx, strconv.FormatUint(uint64(id), 10))
	return err
}

// xfrmFlags are the options of secnic xfrm.
type xfrmFlags struct {
	stats, keys, allowLegacy bool
	dev, batch               string
	local                    []string
}

// localFunc returns whether an address is local: the --local addresses,
// or else the addresses of this host's interfaces.
func (f *xfrmFlags) localFunc() (func(netip.Addr) bool, error) {
	set := map[netip.Addr]bool{}
	for _, l := range f.local {
		a, err := netip.ParseAddr(l)
		if err != nil {
			return nil, usagef("--local %q is not an address", l)
		}
		set[a.Unmap()] = true
	}
	if len(f.local) == 0 {
		addrs, err := net.InterfaceAddrs()
		if err == nil {
			for _, ad := range addrs {
				if p, err := netip.ParsePrefix(ad.String()); err == nil {
					set[p.Addr().Unmap()] = true
				}
			}
		}
	}
	return func(a netip.Addr) bool { return set[a.Unmap()] }, nil
}

func (f *xfrmFlags) runner(a *app) (*xfrm.Runner, error) {
	if a.json {
		return nil, usagef("secnic xfrm prints ip xfrm's format, not JSON: use secnic sa list --json or policy list --json")
	}
	local, err := f.localFunc()
	if err != nil {
		return nil, err
	}
	return &xfrm.Runner{
		Backend: clientBackend{a.client()},
		Parse:   xfrm.Options{Local: local, AllowLegacy: f.allowLegacy},
		Print:   xfrm.PrintOptions{Stats: f.stats, Keys: f.keys, Dev: f.dev},
		Out:     a.out,
	}, nil
}

func xfrmCommand(a *app) *cobra.Command {
	f := &xfrmFlags{}
	c := &cobra.Command{
		Use:   "xfrm [-s] [--keys] {state|policy|monitor} ...",
		Short: "Speak Linux: ip xfrm state and policy commands, and ip xfrm's output",
		Long: "xfrm takes iproute2's `ip xfrm` grammar (ip-xfrm(8)) and prints what `ip xfrm` prints, so\n" +
			"scripts written for Linux drive secnic: paste the words after `ip xfrm`.\n" +
			"docs/xfrm.md maps XFRM's states and reqid-linked templates onto secnic's bundles\n" +
			"and policies; words secnic does not support are refused, naming the word.\n\n" +
			"Keys are printed only with --keys. Use -b FILE to run a script of ip xfrm lines\n" +
			"(\"ip xfrm\" prefixes optional); in a script a policy may come before its states.\n\n" +
			"Examples:\n" +
			"  secnic xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x1000 reqid 1 \\\n" +
			"      mode tunnel aead 'rfc4106(gcm(aes))' 0x<40 hex digits> 128 dir out\n" +
			"  secnic xfrm policy add src 10.1.0.0/16 dst 10.2.0.0/16 dir out \\\n" +
			"      tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel\n" +
			"  secnic xfrm -s state list\n" +
			"  secnic xfrm -b tunnel.sh",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.batch == "" {
				return usagef("give state, policy or monitor (or -b FILE); see secnic xfrm --help")
			}
			data, err := a.readInput(f.batch)
			if err != nil {
				return err
			}
			r, err := f.runner(a)
			if err != nil {
				return err
			}
			return r.RunScript(cmd.Context(), string(data))
		},
	}
	pf := c.PersistentFlags()
	pf.BoolVarP(&f.stats, "stats", "s", false, "more detail, as ip -s: decimal SPIs, lifetimes, counters")
	pf.BoolVar(&f.keys, "keys", false, "print key material (ip xfrm prints keys by default; secnic only when asked)")
	dev := os.Getenv("SECNIC_DEV")
	if dev == "" {
		dev = "secnic0"
	}
	pf.StringVar(&f.dev, "dev", dev, "device named in \"crypto offload parameters\" (env SECNIC_DEV)")
	pf.StringArrayVar(&f.local, "local", nil, "a local address, to tell inbound from outbound states without dir (repeatable; default: this host's addresses)")
	pf.BoolVar(&f.allowLegacy, "allow-legacy", false, "permit DES, 3DES and HMAC-MD5")
	c.Flags().StringVarP(&f.batch, "batch", "b", "", "run a script of ip xfrm lines (- for stdin)")
	c.AddCommand(xfrmObjectCommand(a, f, "state", []string{"sa", "s", "st"}),
		xfrmObjectCommand(a, f, "policy", []string{"p", "pol"}),
		xfrmMonitorCommand(a, f))
	return c
}

func xfrmObjectCommand(a *app, f *xfrmFlags, object string, aliases []string) *cobra.Command {
	verbs := "add|update|delete|get|list|deleteall|flush|count"
	return &cobra.Command{
		Use:     object + " [" + verbs + "] [WORDS...]",
		Aliases: aliases,
		Short:   "ip xfrm " + object + ": " + verbs,
		Long: "The words after `ip xfrm " + object + "`, in ip-xfrm(8)'s grammar. Without a command, list.\n" +
			"docs/xfrm.md lists the supported words.",
		DisableFlagsInUseLine: true,
		Args:                  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			word := ""
			if len(args) > 0 {
				word, args = args[0], args[1:]
			}
			verb, err := xfrm.Verb(object, word)
			if err != nil {
				return usageError{err}
			}
			r, err := f.runner(a)
			if err != nil {
				return err
			}
			return r.Run(cmd.Context(), object, verb, args)
		},
	}
}

func xfrmMonitorCommand(a *app, f *xfrmFlags) *cobra.Command {
	var count int
	c := &cobra.Command{
		Use:   "monitor [all | SA | policy | expire | acquire ...]",
		Short: "Print state and policy events as ip xfrm monitor does",
		Long: "monitor follows the daemon's events and prints them as `ip xfrm monitor`: new states and\n" +
			"policies, \"Deleted \", \"Updated \" and \"Expired \" (hard 0 for a soft limit, hard 1 for a\n" +
			"hard one), and \"acquire\" when an outbound policy's state is missing or expired (at most\n" +
			"one per policy per datapath.acquire_period, like XFRM_MSG_ACQUIRE). Stop with Ctrl-C or --count.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := xfrm.ParseMonitor(args)
			if err != nil {
				return usageError{err}
			}
			if a.json {
				return usagef("secnic xfrm monitor prints ip xfrm monitor's format, not JSON: use secnic events --json")
			}
			client := a.client()
			m := &xfrm.Monitor{Backend: clientBackend{client}, Out: a.out, Objects: objs,
				Print: xfrm.PrintOptions{Stats: f.stats, Keys: f.keys, Dev: f.dev}}
			n := 0
			return client.Events(cmd.Context(), func(e sadb.Event) error {
				if e.Type == sadb.EventSubscribed {
					if err := m.Start(cmd.Context()); err != nil {
						return err
					}
					fmt.Fprintf(a.errOut, "following events on %s\n", a.socket)
					return nil
				}
				if e.Type == sadb.EventDropped {
					fmt.Fprintf(a.errOut, "secnic: %d events lost (reading too slowly)\n", e.Dropped)
					return nil
				}
				if err := m.Handle(cmd.Context(), e); err != nil {
					return err
				}
				if strings.HasPrefix(string(e.Type), "sa_") || strings.HasPrefix(string(e.Type), "policy_") {
					n++
				}
				if count > 0 && n >= count {
					return control.ErrStopEvents
				}
				return nil
			})
		},
	}
	c.Flags().IntVar(&count, "count", 0, "exit after this many SA and policy events (0 = follow until interrupted)")
	return c
}
