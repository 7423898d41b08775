package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/tun"
	"github.com/secnic/secnic/wire"
)

// TestLSOFollowsTheWire: LsoSupported (NDIS) and tx-esp-segmentation
// (ethtool) are on with the udp wire, whose port segments with UDP_SEGMENT,
// and off with the memory wire.
func TestLSOFollowsTheWire(t *testing.T) {
	x, y := rand.IntN(250)+1, rand.IntN(250)+1
	udpWire := fmt.Sprintf("state_dir: none\ncontrol: {disabled: true}\nwire: {type: udp, local: '127.%d.%d.1:4789', peer: '127.%d.%d.2:4789'}\n", x, y, x, y)
	for _, tc := range []struct {
		name, yaml string
		want       bool
	}{
		{"memory", minimal + "control: {disabled: true}\n", false},
		{"udp", udpWire, true},
		{"udp, current override off", udpWire + "capabilities: {current: {lso_supported: false}}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Wire.Type == WireMemory {
				cfg.Wire.Cable = uniqueCable()
			}
			cfg.Host.Type = HostMemory
			log, _ := newLog()
			d, err := Start(context.Background(), cfg, Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			hw, cur := d.Caps().Snapshot()
			if cur.LsoSupported != tc.want {
				t.Errorf("current LsoSupported = %v, want %v", cur.LsoSupported, tc.want)
			}
			if tc.name != "memory" && !hw.LsoSupported {
				t.Error("hardware LsoSupported false with a segmenting udp wire")
			}
			for _, f := range d.Caps().LinuxView() {
				if f.Name == capabilities.EthtoolTxESPSegmentation && f.On != tc.want {
					t.Errorf("tx-esp-segmentation on = %v, want %v", f.On, tc.want)
				}
			}
		})
	}
}

func TestSegmentOffloadOfPorts(t *testing.T) {
	a, b := tun.NewMemPair(8, 1500)
	defer a.Close()
	defer b.Close()
	if segmentOffload(a) {
		t.Fatal("the memory wire claims segmentation offload")
	}
	// The link wire sends raw IP, one datagram per system call's message.
	if _, ok := any((*wire.LinkPort)(nil)).(interface{ SegmentOffload() bool }); ok {
		t.Fatal("the link wire claims segmentation offload")
	}
}
