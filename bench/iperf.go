//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TrafficIperf3 is the iperf3 cross-check: one TCP stream from iperf3's
// client in side A to its server in side B. iperf3 does not check the
// payload (TCP's checksum is all), so its lines are never "intact": they
// are there to compare the built-in generator with a familiar tool.
const TrafficIperf3 = "tcp-iperf3"

const iperfPort = 5201

// iperf3TCP runs one iperf3 TCP trial of about d through p.
func iperf3TCP(ctx context.Context, p Path, d time.Duration) (Sample, error) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		return Sample{}, errors.New("not installed: apt-get install iperf3")
	}
	secs := max(1, int(math.Round(d.Seconds())))
	srv := exec.Command("ip", "netns", "exec", filepath.Base(p.Server), bin, "-s", "-B", p.Dst.String(), "-p", strconv.Itoa(iperfPort))
	var srvOut strings.Builder
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := spawn(srv); err != nil {
		return Sample{}, fmt.Errorf("start iperf3 -s: %w", err)
	}
	defer stopProcess(srv)
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes   float64 `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+15)*time.Second)
		cli := exec.CommandContext(cctx, "ip", "netns", "exec", filepath.Base(p.Client), bin, "-c", p.Dst.String(), "-p", strconv.Itoa(iperfPort),
			"-t", strconv.Itoa(secs), "-J")
		out, err := cli.Output()
		cancel()
		r.Error = ""
		if jerr := json.Unmarshal(out, &r); jerr != nil {
			return Sample{}, fmt.Errorf("iperf3: %v (output %q)", errors.Join(err, jerr), lastLines(out, 2))
		}
		// The server may not listen yet: iperf3 reports the refused
		// connection in its JSON (with exit status 0 or 1).
		if strings.Contains(r.Error, "Connection refused") && attempt < 50 && ctx.Err() == nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if r.Error == "" && err != nil {
			return Sample{}, fmt.Errorf("iperf3: %w", err)
		}
		break
	}
	if r.Error != "" {
		return Sample{}, fmt.Errorf("iperf3: %s (server: %s)", r.Error, strings.TrimSpace(srvOut.String()))
	}
	return Sample{Bytes: int64(r.End.SumReceived.Bytes), Elapsed: time.Duration(r.End.SumReceived.Seconds * float64(time.Second))}, nil
}
