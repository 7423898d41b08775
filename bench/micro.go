package bench

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The micro-benchmark ratios of `make bench`: the in-memory datapath
// (nic.BenchmarkDatapath: policy lookup, ESP encapsulation on one NIC,
// SPI lookup, anti-replay, decryption and selector check on the other)
// against the bare crypto primitive (esp.BenchmarkRaw: one AEAD seal, or
// cipher plus HMAC) and against esp.BenchmarkEncap followed by
// esp.BenchmarkDecap, for each algorithm and size both measured.

// benchLine matches a line of `go test -bench` output with a throughput:
// "BenchmarkRaw/aes-gcm-128/1400-2  123  456 ns/op  3070.11 MB/s ...".
var benchLine = regexp.MustCompile(`^(Benchmark[^\s]+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) MB/s`)

// ParseGoBench reads `go test -bench` output and returns the MB/s of
// every benchmark that reported one, by name without the GOMAXPROCS
// suffix.
func ParseGoBench(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		out[m[1]] = v
	}
	return out, sc.Err()
}

// MicroRatio is the datapath against the crypto for one algorithm and
// packet size.
type MicroRatio struct {
	Case string // "aes-gcm-128/1400"
	// Datapath, Raw, Encap and Decap are MB/s.
	Datapath, Raw, Encap, Decap float64
}

// MicroRatios pairs BenchmarkDatapath/CASE with BenchmarkRaw/CASE (and
// BenchmarkEncap/CASE, BenchmarkDecap/CASE) where both exist.
func MicroRatios(mbps map[string]float64) []MicroRatio {
	var out []MicroRatio
	for name, dp := range mbps {
		c, ok := strings.CutPrefix(name, "BenchmarkDatapath/")
		if !ok {
			continue
		}
		raw, ok := mbps["BenchmarkRaw/"+c]
		if !ok {
			continue
		}
		out = append(out, MicroRatio{Case: c, Datapath: dp, Raw: raw, Encap: mbps["BenchmarkEncap/"+c], Decap: mbps["BenchmarkDecap/"+c]})
	}
	slices.SortFunc(out, func(a, b MicroRatio) int { return strings.Compare(a.Case, b.Case) })
	return out
}

// WriteMicroRatios prints the ratios as a table.
func WriteMicroRatios(w io.Writer, rs []MicroRatio) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no BenchmarkDatapath/ALG/SIZE with a matching BenchmarkRaw/ALG/SIZE in the input: run the esp and nic benchmarks (make bench)")
		return err
	}
	fmt.Fprintln(w, "datapath (both NICs, memory ports) against the crypto alone; one datapath op encrypts and decrypts:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "CASE\tDATAPATH MB/s\tRAW SEAL MB/s\tDATAPATH ÷ RAW\tENCAP+DECAP MB/s\tDATAPATH ÷ (ENCAP+DECAP)\t")
	for _, r := range rs {
		ed, edr := "-", "-"
		if r.Encap > 0 && r.Decap > 0 {
			both := 1 / (1/r.Encap + 1/r.Decap)
			ed, edr = fmt.Sprintf("%.0f", both), fmt.Sprintf("%.2f", r.Datapath/both)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%s\t%s\t\n", r.Case, r.Datapath, r.Raw, r.Datapath/r.Raw, ed, edr)
	}
	return tw.Flush()
}
