package nic

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/secnic/secnic/tun"
)

// failingHost is a host port whose next Write of a batch of at least three
// packets fails in the middle: it delivers every packet but bufs[failAt] and
// reports the failure, as tun.Port says a port does. With stop set it
// instead stops at bufs[failAt], delivering only bufs[:failAt] (a port that
// gives up on the rest of the batch). Later writes pass through.
type failingHost struct {
	tun.Port
	failAt int
	stop   bool
	failed bool
}

var errHostWrite = errors.New("injected host write error")

func (f *failingHost) Write(bufs [][]byte, offset int) (int, error) {
	if f.failed || len(bufs) <= f.failAt+1 {
		return f.Port.Write(bufs, offset)
	}
	f.failed = true
	rest := bufs[f.failAt+1:]
	if f.stop {
		rest = nil
	}
	n, err := f.Port.Write(bufs[:f.failAt], offset)
	if err != nil {
		return n, err
	}
	m, err := f.Port.Write(rest, offset)
	if err != nil {
		return n + m, err
	}
	return n + m, fmt.Errorf("bufs[%d]: %w", f.failAt, errHostWrite)
}

// TestFlushRXWriteErrorNoDuplicates writes a received batch to a host port
// that fails in the middle of it: no packet reaches the host twice (each
// was accepted once by anti-replay), and every packet is either delivered
// or counted as a host write drop.
func TestFlushRXWriteErrorNoDuplicates(t *testing.T) {
	const num, failAt = 16, 5
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop=%v", stop), func(t *testing.T) {
			tp := topo{alg: algGCM}
			a, b := build(t, tp)
			host := &failingHost{Port: b.nic.host, failAt: failAt, stop: stop}
			b.nic.host, b.nic.rxs.host = host, host
			src, dst := tp.hosts()
			var pkts [][]byte
			for i := range num {
				pkts = append(pkts, udp(src, dst, 1000, 2000, 100+i, uint32(i), false))
			}
			wire, _ := a.stepTX(t, pkts...)
			if len(wire) != num {
				t.Fatalf("%d packets on the wire, want %d", len(wire), num)
			}
			got := b.stepRX(t, wire...)
			if !host.failed {
				t.Fatal("the host port was not given the whole batch in one Write")
			}
			want := append(append([][]byte{}, pkts[:failAt]...), pkts[failAt+1:]...)
			if stop {
				want = pkts[:failAt]
			}
			seen := map[string]int{}
			for _, g := range got {
				seen[string(g)]++
				if seen[string(g)] > 1 {
					t.Fatalf("a packet reached the host twice: % x", g[:min(len(g), 32)])
				}
			}
			mustEqualPackets(t, got, want)
			for _, g := range got {
				if bytes.Equal(g, pkts[failAt]) {
					t.Fatal("the packet the port failed reached the host")
				}
			}
			st := b.nic.Stats().RX
			if st.Packets != uint64(len(want)) {
				t.Errorf("rx packets = %d, want %d", st.Packets, len(want))
			}
			if d := b.drops("rx", "SecnicHostWriteError"); d != uint64(num-len(want)) {
				t.Errorf("host write drops = %d, want %d", d, num-len(want))
			}
			// The port works again: the next batch is delivered whole.
			more := [][]byte{udp(src, dst, 1000, 2000, 50, num, false)}
			wire, _ = a.stepTX(t, more...)
			mustEqualPackets(t, b.stepRX(t, wire...), more)
		})
	}
}
