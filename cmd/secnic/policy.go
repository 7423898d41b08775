package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

func policyCommand(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Add, delete and list policies (selectors linked to bundles, like XFRM policies)",
	}
	c.AddCommand(policyAddCommand(a), policyDelCommand(a), policyListCommand(a))
	return c
}

func policyAddCommand(a *app) *cobra.Command {
	var (
		file    string
		p       saspec.PolicySpec
		proto   string
		bundles []string
	)
	c := &cobra.Command{
		Use:   "add",
		Short: "Add policies, from flags or from a YAML/JSON file",
		Long: "add installs a policy: traffic matching the selector (--src, --dst prefixes, --proto,\n" +
			"--sport, --dport) in one direction is protected by the linked bundles, bypassed or\n" +
			"discarded. Lower --priority wins. Outbound transport over tunnel links two bundles:\n" +
			"--bundle TRANSPORT --bundle TUNNEL.\n\n" +
			"Example:\n" +
			"  secnic policy add --name web --dir out --dst 10.0.0.0/8 --proto tcp --dport 443 --bundle web-out",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var specs []saspec.PolicySpec
			if file != "" {
				if cmd.Flags().NFlag() > countSet(cmd, "file", "socket", "json") {
					return usagef("give either -f FILE or policy flags, not both")
				}
				data, err := a.readInput(file)
				if err != nil {
					return err
				}
				if specs, err = saspec.DecodePolicySpecs(data); err != nil {
					return err
				}
			} else {
				p.Proto = saspec.Ref(proto)
				for _, b := range bundles {
					p.Bundles = append(p.Bundles, saspec.Ref(b))
				}
				specs = []saspec.PolicySpec{p}
			}
			resp, err := a.client().AddPolicies(cmd.Context(), specs)
			var ae *control.APIError
			if err != nil {
				if errors.As(err, &ae) && len(ae.Results) > 0 {
					_ = json.Unmarshal(ae.Results, &resp.Results)
					resp.Failed = len(resp.Results)
				} else {
					return err
				}
			}
			if a.json {
				if e := a.printJSON(resp); e != nil {
					return e
				}
			} else {
				tw := a.table()
				fmt.Fprintln(tw, "INDEX\tNAME\tID\tRESULT")
				for _, r := range resp.Results {
					res := "added"
					if r.ID == 0 {
						res = r.Error
					}
					id := "-"
					if r.ID != 0 {
						id = fmt.Sprint(r.ID)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Index, dash(r.Name), id, res)
				}
				tw.Flush()
			}
			if err != nil {
				return err
			}
			if resp.Failed > 0 {
				return fmt.Errorf("%d of %d policies were not added", resp.Failed, len(resp.Results))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "read policies from a YAML or JSON file (- for stdin)")
	f.Uint32Var(&p.ID, "id", 0, "policy ID (default: chosen by the daemon)")
	f.StringVar(&p.Name, "name", "", "policy name")
	f.StringVar(&p.Dir, "dir", "", "direction: in or out")
	f.IntVar(&p.Priority, "priority", 0, "priority: lower wins")
	f.StringVar(&p.Src, "src", "", "source prefix or address (empty = any)")
	f.StringVar(&p.Dst, "dst", "", "destination prefix or address (empty = any)")
	f.StringVar(&proto, "proto", "", "protocol name or number (empty = any)")
	f.Uint16Var(&p.SrcPort, "sport", 0, "source port (ICMP: type)")
	f.Uint16Var(&p.DstPort, "dport", 0, "destination port (ICMP: code)")
	f.StringVar(&p.Action, "action", "", "protect (default), bypass or discard")
	f.StringArrayVar(&bundles, "bundle", nil, "linked bundle, by name or handle (repeatable; outbound: transport first)")
	return c
}

func policyDelCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "del ID|NAME...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete policies",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var results []control.DeleteResult
			var firstErr error
			for _, ref := range args {
				resp, err := a.client().DeletePolicy(cmd.Context(), ref)
				r := control.DeleteResult{Ref: ref, ID: resp.ID}
				if err != nil {
					r.Error = err.Error()
					if firstErr == nil {
						firstErr = err
					}
				}
				results = append(results, r)
			}
			if a.json {
				if err := a.printJSON(results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if r.Error != "" {
						fmt.Fprintf(a.out, "%s: %s\n", r.Ref, r.Error)
					} else {
						fmt.Fprintf(a.out, "deleted policy %d (%s)\n", r.ID, r.Ref)
					}
				}
			}
			return firstErr
		},
	}
}

func policyListCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the policies in the order they are matched",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.client().ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(resp)
			}
			if len(resp.Policies) == 0 {
				fmt.Fprintln(a.out, "no policies")
				return nil
			}
			tw := a.table()
			fmt.Fprintln(tw, "ID\tNAME\tDIR\tPRIO\tSRC\tDST\tPROTO\tSPORT\tDPORT\tACTION\tBUNDLES\tSTATE")
			for _, p := range resp.Policies {
				s := p.Spec
				refs := make([]string, len(s.Bundles))
				for i, r := range s.Bundles {
					refs[i] = string(r)
				}
				st := "ok"
				if !p.Complete {
					st = "bundle missing"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, dash(s.Name), s.Dir, s.Priority,
					anyStr(s.Src), anyStr(s.Dst), anyStr(string(s.Proto)), port(s.SrcPort), port(s.DstPort), s.Action, dash(strings.Join(refs, ",")), st)
			}
			return tw.Flush()
		},
	}
}

func anyStr(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func port(p uint16) string {
	if p == 0 {
		return "any"
	}
	return fmt.Sprint(p)
}

func statsCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show per-SA counters and the NIC's statistics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.client().Stats(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(resp)
			}
			t := resp.Table
			fmt.Fprintf(a.out, "%d of %d SA bundles, %d inbound SAs, %d outbound SAs, %d policies\n",
				t.Usage.Bundles, t.Capacity, t.Usage.InboundSAs, t.Usage.OutboundSAs, t.Policies)
			if len(t.SAs) > 0 {
				tw := a.table()
				fmt.Fprintln(tw, "HANDLE\tNAME\tDIR\tPROTO\tSPI\tPACKETS\tBYTES\tDROPS")
				for _, s := range t.SAs {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Handle, dash(s.Name), s.Dir, s.Proto, s.SPI,
						s.Counters.Packets, s.Counters.Bytes, dropList(s.Counters.Drops))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if len(resp.NIC) > 0 {
				var buf bytes.Buffer
				if json.Indent(&buf, resp.NIC, "", "  ") == nil {
					fmt.Fprintf(a.out, "\nNIC\n%s\n", buf.String())
				}
			}
			return nil
		},
	}
}

func dropList(d map[string]uint64) string {
	if len(d) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, d[k])
	}
	return strings.Join(parts, ",")
}

func eventsCommand(a *app) *cobra.Command {
	var count int
	c := &cobra.Command{
		Use:   "events",
		Short: "Follow the event stream: indications, SA delete requests, expiries, acquires, changes",
		Long: "events prints the daemon's events as they happen: capabilities status indications\n" +
			"(NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG, ..._HARDWARE_CAPABILITIES), SA delete requests\n" +
			"(soft lifetime, NDIS SaDeleteReq), hard expiries, acquires (an outbound protect policy\n" +
			"without a usable SA, at most one per policy per datapath.acquire_period, like\n" +
			"XFRM_MSG_ACQUIRE), and SA and policy changes.\n" +
			"With --json each event is one JSON line. Stop with Ctrl-C or --count.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			return a.client().Events(cmd.Context(), func(e sadb.Event) error {
				if e.Type == sadb.EventSubscribed {
					fmt.Fprintf(a.errOut, "following events on %s\n", a.socket)
					return nil
				}
				if a.json {
					b, err := json.Marshal(e)
					if err != nil {
						return err
					}
					fmt.Fprintf(a.out, "%s\n", b)
				} else {
					fmt.Fprintln(a.out, describeEvent(e))
				}
				n++
				if count > 0 && n >= count {
					return control.ErrStopEvents
				}
				return nil
			})
		},
	}
	c.Flags().IntVar(&count, "count", 0, "exit after this many events (0 = follow until interrupted)")
	return c
}

func describeEvent(e sadb.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s", e.Time.Format(time.TimeOnly), e.Seq, e.Type)
	switch e.Type {
	case sadb.EventIndication:
		if i := e.Indication; i != nil {
			fmt.Fprintf(&b, " %s (indication %d)", i.Name, i.Seq)
			if i.Status == 0x40020006 {
				fmt.Fprintf(&b, ": ah=%s esp=%s", onOff(i.Record.Ah), onOff(i.Record.Esp))
			}
		}
	case sadb.EventDropped:
		fmt.Fprintf(&b, " %d events lost (reading too slowly)", e.Dropped)
	case sadb.EventReconciled:
		if e.Summary != nil {
			fmt.Fprintf(&b, " %s", e.Summary)
		}
	case sadb.EventPolicyAdded, sadb.EventPolicyDeleted, sadb.EventPolicyReplaced:
		fmt.Fprintf(&b, " policy %d %s %s", e.PolicyID, dash(e.PolicyName), e.Dir)
	case sadb.EventAcquire:
		fmt.Fprintf(&b, " policy %d %s %s", e.PolicyID, dash(e.PolicyName), e.Dir)
		if a := e.Acquire; a != nil {
			f := a.Flow
			fmt.Fprintf(&b, " seq=%d reason=%s flow=%s %s", a.Seq, a.Reason, saspec.ProtoName(f.Proto), netip.AddrPortFrom(f.Src, f.SrcPort))
			fmt.Fprintf(&b, " > %s want=", netip.AddrPortFrom(f.Dst, f.DstPort))
			for i, t := range a.Templates {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString(describeTemplate(t))
			}
			fmt.Fprintf(&b, " suppressed=%d", a.Suppressed)
		}
	default:
		fmt.Fprintf(&b, " bundle %d %s %s", e.Handle, dash(e.Name), e.Dir)
		if e.SPI != 0 {
			fmt.Fprintf(&b, " %s spi=%s", e.Proto, e.SPI)
		}
		if e.Reason != "" {
			fmt.Fprintf(&b, " reason=%s", e.Reason)
		}
	}
	return b.String()
}

// describeTemplate is one wanted bundle of an acquire event: its reference
// and, when it exists, its protocols, mode, tunnel endpoints and expired SAs.
func describeTemplate(t sadb.AcquireTemplate) string {
	if t.Missing {
		return t.Ref + "(missing)"
	}
	s := t.Ref + "(" + strings.Join(t.Protos, "+") + " " + t.Mode
	if t.Src.IsValid() {
		s += " " + t.Src.String() + ">" + t.Dst.String()
	}
	if len(t.Expired) > 0 {
		s += " expired " + strings.Join(t.Expired, " ")
	}
	return s + ")"
}
