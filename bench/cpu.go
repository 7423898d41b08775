//go:build linux

package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on every Linux
// architecture Go supports).
const clockTicks = 100

// CPUSnapshot is the CPU time used so far by a contender's processes and
// by the whole machine.
type CPUSnapshot struct {
	// Procs is the user+system CPU seconds of the contender's process
	// trees (including reaped children).
	Procs float64
	// System is the busy CPU seconds of the whole machine (everything in
	// /proc/stat but idle and iowait), which includes softirq work such
	// as kernel IPsec, the traffic generator, and anyone else's load.
	System float64
}

// Sub returns s - o.
func (s CPUSnapshot) Sub(o CPUSnapshot) CPUSnapshot {
	return CPUSnapshot{Procs: s.Procs - o.Procs, System: s.System - o.System}
}

// TakeCPU reads the CPU time of the process trees rooted at roots and of
// the whole machine.
func TakeCPU(roots []int) CPUSnapshot {
	return CPUSnapshot{Procs: treeCPU(roots), System: systemCPU()}
}

type procStat struct {
	ppid int
	cpu  float64 // utime+stime+cutime+cstime, seconds
}

func readProcStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, false
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is the state (field 3); ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	var t float64
	for _, k := range f[11:15] {
		v, _ := strconv.ParseFloat(k, 64)
		t += v
	}
	return procStat{ppid: ppid, cpu: t / clockTicks}, true
}

// treeCPU sums the CPU time of the processes rooted at roots and all
// their descendants.
func treeCPU(roots []int) float64 {
	if len(roots) == 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	stats := map[int]procStat{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			stats[pid] = st
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var total float64
	seen := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		total += stats[pid].cpu
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return total
}

// systemCPU is the busy time of all CPUs from /proc/stat, in seconds.
func systemCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, k := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // steal, guest, guest_nice: not this machine's work
			break
		}
		v, _ := strconv.ParseFloat(k, 64)
		busy += v
	}
	return busy / clockTicks
}

// cpuModel is the "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// kernelRelease is uname -r.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func perGB(sec float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return sec / (float64(bytes) / 1e9)
}
