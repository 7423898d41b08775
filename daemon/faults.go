package daemon

import (
	"fmt"
	"time"

	"github.com/secnic/secnic/tun"
)

// FaultsConfig is wire.faults: seeded faults injected into the packets the
// NIC sends to the wire (tun.FaultyPort), to see how the peer copes with a
// lossy, corrupting, duplicating and reordering link. Probabilities are
// per packet, from 0 to 1. For tests and labs only: the daemon warns when
// it is on.
type FaultsConfig struct {
	// Seed seeds the choices: the same seed gives the same faults.
	Seed uint64 `json:"seed,omitempty"`
	// Drop loses a packet.
	Drop float64 `json:"drop,omitempty"`
	// Corrupt flips one bit of a packet.
	Corrupt float64 `json:"corrupt,omitempty"`
	// Duplicate sends a packet twice.
	Duplicate float64 `json:"duplicate,omitempty"`
	// Reorder holds a packet back until ReorderDepth later ones went out.
	Reorder float64 `json:"reorder,omitempty"`
	// ReorderDepth is how many packets overtake a reordered one (default 8).
	ReorderDepth int `json:"reorder_depth,omitempty"`
	// DelayProbability holds a packet back for Delay.
	DelayProbability float64 `json:"delay_probability,omitempty"`
	// Delay is how long a delayed packet is held, e.g. "5ms".
	Delay Duration `json:"delay,omitempty"`
}

// problems checks the section; nil is valid (no faults).
func (f *FaultsConfig) problems(field string) []string {
	if f == nil {
		return nil
	}
	var p []string
	for _, x := range []struct {
		name string
		v    float64
	}{{"drop", f.Drop}, {"corrupt", f.Corrupt}, {"duplicate", f.Duplicate}, {"reorder", f.Reorder}, {"delay_probability", f.DelayProbability}} {
		if !(x.v >= 0 && x.v <= 1) {
			p = append(p, fmt.Sprintf("%s.%s: %v is not a probability: give 0 to 1 (0.01 is one packet in a hundred)", field, x.name, x.v))
		}
	}
	if f.ReorderDepth < 0 || f.ReorderDepth > 4096 {
		p = append(p, fmt.Sprintf("%s.reorder_depth: %d is out of range: give 1 to 4096 packets (0 for 8)", field, f.ReorderDepth))
	}
	if d := time.Duration(f.Delay); d < 0 || d > 10*time.Second {
		p = append(p, fmt.Sprintf("%s.delay: %v is out of range: give 0 to 10s", field, d))
	}
	if f.DelayProbability > 0 && f.Delay == 0 {
		p = append(p, fmt.Sprintf("%s.delay: is missing: give how long a delayed packet is held, e.g. 5ms", field))
	}
	return p
}

// injectFaults wraps the wire port when wire.faults is set.
func (d *Daemon) injectFaults(f *FaultsConfig, wire tun.Port) tun.Port {
	if f == nil {
		return wire
	}
	d.log.Warn("wire fault injection is on: packets sent to the wire are dropped, corrupted, duplicated, reordered or delayed on purpose (wire.faults)",
		"seed", f.Seed, "drop", f.Drop, "corrupt", f.Corrupt, "duplicate", f.Duplicate, "reorder", f.Reorder, "delay_probability", f.DelayProbability, "delay", time.Duration(f.Delay).String())
	fp := tun.NewFaulty(wire, tun.FaultConfig{
		Seed: f.Seed, Drop: f.Drop, Corrupt: f.Corrupt, Duplicate: f.Duplicate,
		Reorder: f.Reorder, ReorderDepth: f.ReorderDepth,
		DelayProb: f.DelayProbability, Delay: time.Duration(f.Delay),
	})
	d.faults = fp
	return fp
}

// WireFaults returns what wire.faults did so far, and false if it is off.
func (d *Daemon) WireFaults() (tun.FaultStats, bool) {
	if d.faults == nil {
		return tun.FaultStats{}, false
	}
	return d.faults.Stats(), true
}
