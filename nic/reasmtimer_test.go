package nic

import (
	"testing"
	"time"
)

// TestReassemblyTimesOutWithoutTraffic: an incomplete datagram expires,
// and is counted, on a timer, though no other packet arrives.
func TestReassemblyTimesOutWithoutTraffic(t *testing.T) {
	const timeout = 60 * time.Millisecond
	_, b := build(t, topo{alg: algGCM, cfg: Config{ReassemblyTimeout: timeout}})
	b.run(t)
	data := pattern(1600)
	write(t, b.tap, frag4(7, 0, data[:800], true), frag6(9, 0, data[:800], true))
	start := time.Now()
	for b.drops("rx", "SecnicReasmTimeout") < 2 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("after %v: SecnicReasmTimeout = %d, want 2 (rx drops %v)", time.Since(start), b.drops("rx", "SecnicReasmTimeout"), b.nic.Stats().RX.Drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	if took < timeout {
		t.Errorf("expired after %v, before the %v timeout", took, timeout)
	}
	t.Logf("two incomplete datagrams expired %v after they arrived (timeout %v)", took, timeout)
	// The freed slots work: the rest of a new datagram completes.
	write(t, b.tap, frag4(8, 0, data[:800], true), frag4(8, 800, data[800:], false))
	start = time.Now()
	for b.nic.Stats().Reassembled < 1 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("a datagram after the timeouts was not reassembled: %+v", b.nic.Stats().RX)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
