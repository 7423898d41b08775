//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/saspec"
)

// SA scale (--tunnels N): besides the base tunnel (which protects all
// traffic between the inner networks), N-1 more tunnels per direction are
// added through each daemon's control API, each selected by a UDP port
// pair of its own (a more specific policy than the base one). UDP traffic
// is then spread round-robin over a sample of them (spreadFlows, evenly
// over the range), so that the datapath looks up SAs among N.

const (
	maxTunnels  = 1000000
	spreadFlows = 16
	// batch tunnels per request: each request carries 2*batch bundles
	// (the outbound and the inbound of each), the API's MaxEntries.
	batch    = control.MaxEntries / 2
	portBase = 10001
	portSpan = 50000
)

// tunnelPorts returns the UDP source and destination port of extra
// tunnel i (1-based).
func tunnelPorts(i int) (src, dst uint16) {
	return uint16(portBase + (i-1)/portSpan), uint16(portBase + (i-1)%portSpan)
}

// flowsFor returns the UDP flows of a traffic trial: one flow over the
// base tunnel, or a sample spread over the extra tunnels.
func flowsFor(inst instance, tunnels int) []udpFlow {
	if tunnels <= 1 {
		return []udpFlow{{}}
	}
	extra := tunnels - 1
	n := min(spreadFlows, extra)
	flows := make([]udpFlow, 0, n)
	for k := range n {
		i := 1 + k*extra/n
		s, d := tunnelPorts(i)
		flows = append(flows, udpFlow{src: s, dst: d})
	}
	return flows
}

// addStats is what adding the tunnels measured.
type addStats struct {
	rate     float64 // SAs per second over both daemons, policies not counted
	rssPerSA float64 // growth of the larger daemon's RSS per SA it holds
	rssMB    float64 // that daemon's RSS afterwards
}

// rssBytes returns the resident memory of process pid (VmRSS), 0 if it
// cannot be read.
func rssBytes(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// addTunnels adds tunnels-1 tunnels to both daemons of a secnic instance
// through their control APIs, with fresh random keys, and returns the SA
// add rate and the daemons' resident memory.
func addTunnels(ctx context.Context, inst instance, tunnels int, e *env) (addStats, error) {
	si, ok := inst.(*secnicInstance)
	if !ok {
		return addStats{}, errors.New("--tunnels applies to secnic only")
	}
	enc, err := suite.LookupEnc(suite.Enc(e.opts.Alg))
	if err != nil {
		return addStats{}, err
	}
	pids := si.pids()
	rss0 := make([]uint64, len(pids))
	for i, p := range pids {
		rss0[i] = rssBytes(p)
	}
	ca := control.NewClient(filepath.Join(si.dir, "a.sock"))
	cb := control.NewClient(filepath.Join(si.dir, "b.sock"))
	a, b := twonic.AddressesFor("tunnel", "a"), twonic.AddressesFor("tunnel", "b")
	var addTime time.Duration
	added := 0
	for lo := 1; lo < tunnels; lo += batch {
		hi := min(lo+batch, tunnels)
		var outA, inB, outB, inA []saspec.BundleSpec
		var polA, polB []saspec.PolicySpec
		for i := lo; i < hi; i++ {
			sp, dp := tunnelPorts(i)
			ab, ba := fmt.Sprintf("t%d-a-to-b", i), fmt.Sprintf("t%d-b-to-a", i)
			mk := func(name string, spi uint32, src, dst string) (saspec.BundleSpec, saspec.BundleSpec) {
				k := randomBytes(enc.KeyLen)
				s := saspec.BundleSpec{Name: name, Mode: "tunnel", Src: src, Dst: dst,
					ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: e.opts.Alg, EncKey: saspec.KeyOf(k)}}
				clear(k)
				out, in := s.Clone(), s
				out.Dir, in.Dir = "out", "in"
				return out, in
			}
			o, in := mk(ab, 0x100000+uint32(i), a.Under4.String(), b.Under4.String())
			outA, inB = append(outA, o), append(inB, in)
			o, in = mk(ba, 0x400000+uint32(i), b.Under4.String(), a.Under4.String())
			outB, inA = append(outB, o), append(inA, in)
			hA, hB := a.Host4.Addr().String(), b.Host4.Addr().String()
			polA = append(polA,
				saspec.PolicySpec{Name: "t" + fmt.Sprint(i) + "-out", Dir: "out", Priority: -10, Src: hA, Dst: hB, Proto: "udp", SrcPort: sp, DstPort: dp, Action: "protect", Bundles: []saspec.Ref{saspec.Ref(ab)}},
				saspec.PolicySpec{Name: "t" + fmt.Sprint(i) + "-in", Dir: "in", Priority: -10, Src: hB, Dst: hA, Proto: "udp", SrcPort: dp, DstPort: sp, Action: "protect", Bundles: []saspec.Ref{saspec.Ref(ba)}})
			polB = append(polB,
				saspec.PolicySpec{Name: "t" + fmt.Sprint(i) + "-out", Dir: "out", Priority: -10, Src: hB, Dst: hA, Proto: "udp", SrcPort: dp, DstPort: sp, Action: "protect", Bundles: []saspec.Ref{saspec.Ref(ba)}},
				saspec.PolicySpec{Name: "t" + fmt.Sprint(i) + "-in", Dir: "in", Priority: -10, Src: hA, Dst: hB, Proto: "udp", SrcPort: sp, DstPort: dp, Action: "protect", Bundles: []saspec.Ref{saspec.Ref(ab)}})
		}
		for _, step := range []struct {
			c     *control.Client
			specs []saspec.BundleSpec
		}{{ca, append(outA, inA...)}, {cb, append(outB, inB...)}} {
			t0 := time.Now()
			r, err := step.c.AddSAs(ctx, step.specs)
			addTime += time.Since(t0)
			for i := range step.specs {
				step.specs[i].Wipe()
			}
			if err != nil {
				return addStats{}, fmt.Errorf("add SAs through the control API: %w", err)
			}
			if r.Failed > 0 {
				return addStats{}, fmt.Errorf("add SAs: %d of %d refused (first: %s)", r.Failed, len(step.specs), firstFailure(r))
			}
			added += len(step.specs)
		}
		for _, step := range []struct {
			c   *control.Client
			pol []saspec.PolicySpec
		}{{ca, polA}, {cb, polB}} {
			r, err := step.c.AddPolicies(ctx, step.pol)
			if err != nil {
				return addStats{}, fmt.Errorf("add policies through the control API: %w", err)
			}
			if r.Failed > 0 {
				return addStats{}, fmt.Errorf("add policies: %d of %d refused", r.Failed, len(step.pol))
			}
		}
	}
	var st addStats
	if addTime > 0 {
		st.rate = float64(added) / addTime.Seconds()
	}
	perDaemon := float64(2 * (tunnels - 1))
	for i, p := range pids {
		rss := rssBytes(p)
		if grew := float64(rss) - float64(rss0[i]); rss0[i] != 0 && grew/perDaemon > st.rssPerSA {
			st.rssPerSA, st.rssMB = grew/perDaemon, float64(rss)/1e6
		}
	}
	return st, nil
}

func firstFailure(r control.AddSAsResponse) string {
	for _, x := range r.Results {
		if x.Error != "" {
			return x.Name + ": " + x.Error
		}
	}
	return ""
}

// verifySpread checks, through side B's control API, that every sampled
// extra tunnel carried traffic: the inbound SA of each sampled flow has
// counted packets.
func verifySpread(ctx context.Context, inst instance, tunnels int) error {
	si, ok := inst.(*secnicInstance)
	if !ok || tunnels <= 1 {
		return nil
	}
	list, err := control.NewClient(filepath.Join(si.dir, "b.sock")).ListSAs(ctx, false)
	if err != nil {
		return fmt.Errorf("list SAs to check the spread: %w", err)
	}
	packets := map[string]uint64{}
	for _, b := range list.Bundles {
		if b.Spec.Dir != "in" {
			continue
		}
		for _, s := range b.SAs {
			packets[b.Spec.Name] += s.Counters.Packets
		}
	}
	extra := tunnels - 1
	n := min(spreadFlows, extra)
	var idle []string
	for k := range n {
		name := fmt.Sprintf("t%d-a-to-b", 1+k*extra/n)
		if packets[name] == 0 {
			idle = append(idle, name)
		}
	}
	if len(idle) > 0 {
		return fmt.Errorf("traffic did not spread over the tunnels: %d of %d sampled tunnels carried nothing (%s ...)", len(idle), n, idle[0])
	}
	return nil
}
