//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// label is "secnic/link", "strongswan-libipsec", ...
func (r Result) label() string {
	if r.Wire != "" {
		return r.Contender + "/" + r.Wire
	}
	return r.Contender
}

// WriteTable prints the report as aligned tables: the machine, every
// result, and the ratios.
func (rep *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", rep.Machine.CPU, rep.Machine.Cores, rep.Machine.Kernel, rep.Machine.Go)
	if rep.DaemonCPUs > 0 {
		fmt.Fprintf(w, "secnic daemons: datapath.cpus %d each (both daemons of a contender share the machine)\n", rep.DaemonCPUs)
	}
	if len(rep.Results) > 0 {
		r := rep.Results[0]
		fmt.Fprintf(w, "algorithm %s, %d run(s) per figure (median; spread = (max-min)/median)\n\n", r.Alg, maxRuns(rep.Results))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CONTENDER\tTUNNELS\tTRAFFIC\tGBIT/S\tPPS\tLOSS\tCPU S/GB\tSYS CPU S/GB\tP50 µs\tP99 µs\tSPREAD\tINTACT\t")
	var notes []string
	done := map[string]bool{}
	for _, r := range rep.Results {
		if r.Status != StatusOK {
			k := r.label() + r.Status + r.Reason
			if !done[k] {
				done[k] = true
				notes = append(notes, fmt.Sprintf("%-22s %s: %s", r.label(), r.Status, r.Reason))
			}
			if r.Status != StatusFailed {
				continue
			}
			intact := "-" // nothing delivered, or not measured
			if strings.Contains(r.Reason, "corrupt") || strings.Contains(r.Reason, "intact") {
				intact = "NO"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", r.label(), r.Tunnels, r.Traffic, intact)
			continue
		}
		pps, loss, p50, p99 := "-", "-", "-", "-"
		if r.PPS > 0 {
			pps = fmt.Sprintf("%.0f", r.PPS)
		}
		if strings.HasPrefix(r.Traffic, "udp") {
			loss = fmt.Sprintf("%.3f%%", r.Loss*100)
		}
		if r.P50us > 0 {
			p50, p99 = fmt.Sprintf("%.0f", r.P50us), fmt.Sprintf("%.0f", r.P99us)
		}
		cpu := "-"
		if r.CPUSPerGB > 0 {
			cpu = fmt.Sprintf("%.2f", r.CPUSPerGB)
		}
		intact := yesNo(r.Intact)
		if r.Traffic == TrafficIperf3 {
			intact = "unchecked"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t%s\t%s\t%s\t%.2f\t%s\t%s\t%.0f%%\t%s\t\n", r.label(), r.Tunnels, r.Traffic, r.Gbps, pps, loss,
			cpu, r.SystemCPUSPerGB, p50, p99, r.Spread*100, intact)
		if r.Reason != "" && !done[r.label()+r.Reason] {
			done[r.label()+r.Reason] = true
			notes = append(notes, fmt.Sprintf("%-22s %s: %s", r.label(), r.Traffic, r.Reason))
		}
		if r.SAAddPerSec > 0 && !done["add"+fmt.Sprint(r.Tunnels)] {
			done["add"+fmt.Sprint(r.Tunnels)] = true
			notes = append(notes, fmt.Sprintf("%-22s %d tunnels: SAs added through the control API at %.0f per second; daemon RSS %.0f MB, %.0f bytes per SA (policies included)", r.label(), r.Tunnels, r.SAAddPerSec, r.RSSMB, r.RSSBytesPerSA))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	notes = append(notes, rep.Notes...)
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, "\nratios, secnic ÷ contender (same invocation; >1 means secnic is faster, except p50_us where <1 is faster):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SECNIC\tVERSUS\tTRAFFIC\tMETRIC\tRATIO")
		for _, r := range rep.Ratios {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\n", r.Secnic, r.Versus, r.Traffic, r.Metric, r.Ratio)
		}
		return tw.Flush()
	}
	return nil
}

func maxRuns(rs []Result) int {
	n := 0
	for _, r := range rs {
		n = max(n, r.Runs)
	}
	return n
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// WriteJSON writes the report to path (the schema in docs/performance.md).
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0x17, 0xbe, 0xcf, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff},
	color.RGBA{0xff, 0x7f, 0x0e, 0xff}, color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
}

// WriteSVG draws the one-tunnel results as two grouped bar charts, one
// above the other: throughput (Gbit/s) by traffic kind and contender, and
// CPU seconds per GB (the whole machine's).
func (rep *Report) WriteSVG(path string) error {
	const wd, ht = 10 * vg.Inch, 9 * vg.Inch
	c := vgsvg.New(wd, ht)
	if err := rep.drawChart(draw.New(c)); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawChart draws the two charts on dc.
func (rep *Report) drawChart(dc draw.Canvas) error {
	var traffic, labels []string
	val := map[[2]string]Result{}
	for _, r := range rep.Results {
		if r.Tunnels != 1 || r.Status != StatusOK || r.Traffic == TrafficRR {
			continue
		}
		if !slices.Contains(traffic, r.Traffic) {
			traffic = append(traffic, r.Traffic)
		}
		if !slices.Contains(labels, r.label()) {
			labels = append(labels, r.label())
		}
		val[[2]string{r.label(), r.Traffic}] = r
	}
	if len(traffic) == 0 {
		return fmt.Errorf("no successful results to chart")
	}
	mk := func(title, ylabel string, f func(Result) float64) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = title
		p.Y.Label.Text = ylabel
		p.Legend.Top = true
		w := vg.Points(float64(min(14, 90/len(labels))))
		for i, l := range labels {
			vs := make(plotter.Values, len(traffic))
			for j, t := range traffic {
				vs[j] = f(val[[2]string{l, t}])
			}
			b, err := plotter.NewBarChart(vs, w)
			if err != nil {
				return nil, err
			}
			b.LineStyle.Width = 0
			b.Color = palette[i%len(palette)]
			b.Offset = w * vg.Length(float64(i)-float64(len(labels)-1)/2)
			p.Add(b)
			p.Legend.Add(l, b)
		}
		p.NominalX(traffic...)
		return p, nil
	}
	tp, err := mk(fmt.Sprintf("Throughput through each contender (%s, %s)", rep.Results[0].Alg, rep.Machine.CPU), "Gbit/s (median)", func(r Result) float64 { return r.Gbps })
	if err != nil {
		return err
	}
	cp, err := mk("Whole-machine CPU per GB delivered", "CPU s/GB (median)", func(r Result) float64 { return r.SystemCPUSPerGB })
	if err != nil {
		return err
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{tp}, {cp}}
	canvases := plot.Align(plots, tiles, dc)
	tp.Draw(canvases[0][0])
	cp.Draw(canvases[1][0])
	return nil
}
