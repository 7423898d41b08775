package daemon

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestWireFaults(t *testing.T) {
	dir := t.TempDir()
	cable := uniqueCable()
	y := strings.Replace(sideYAML("a", cable, dir), "wire: {type: memory, cable: "+cable+"}",
		"wire: {type: memory, cable: "+cable+", faults: {seed: 3, duplicate: 1}}", 1)
	cfg, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLog()
	a, err := Start(context.Background(), cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := startSide(t, "b", cable, dir)
	if !strings.Contains(logs.String(), "wire fault injection is on") {
		t.Errorf("no warning that faults are injected:\n%s", logs.String())
	}
	// Every packet A sends arrives twice: B delivers it once and drops the
	// copy as a replay.
	pkt := udp4("10.1.0.1", "10.2.0.1", []byte("dup"))
	if got := sendAndReceive(t, a.HostPeer(), b.HostPeer(), pkt); !bytes.Equal(got, pkt) {
		t.Fatalf("received %x", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.NIC().Stats().RX.Drops["XfrmInStateSeqError"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("B drops %v, want the duplicate as XfrmInStateSeqError", b.NIC().Stats().RX.Drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, on := a.WireFaults(); !on || st.Written != 1 || st.Duplicated != 1 || st.Sent != 2 {
		t.Errorf("fault stats %v, %v", st, on)
	}
	if _, on := b.WireFaults(); on {
		t.Error("faults reported on a daemon without wire.faults")
	}
}

func TestWireFaultsValidated(t *testing.T) {
	for _, c := range []struct{ faults, want string }{
		{"{drop: 2}", "wire.faults.drop: 2 is not a probability"},
		{"{corrupt: -0.1}", "wire.faults.corrupt"},
		{"{delay_probability: 0.5}", "wire.faults.delay: is missing"},
		{"{delay: 1m, delay_probability: 0.1}", "wire.faults.delay: 1m0s is out of range"},
		{"{reorder: 0.1, reorder_depth: -1}", "wire.faults.reorder_depth"},
		{"{bogus: 1}", "unknown field"},
	} {
		_, err := ParseConfig([]byte("wire: {type: memory, cable: x, faults: " + c.faults + "}\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("faults %s: %v, want %q", c.faults, err, c.want)
		}
	}
}
