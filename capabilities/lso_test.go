package capabilities

import (
	"strings"
	"testing"
)

func TestSetSegmentOffload(t *testing.T) {
	for _, prof := range ProfileNames() {
		t.Run(prof, func(t *testing.T) {
			m := mustManager(t, Config{Profile: prof})
			if m.Hardware().LsoSupported || m.Current().LsoSupported {
				t.Fatal("a profile claims LSO by itself")
			}
			sub := m.Subscribe(8)
			defer sub.Unsubscribe()
			changed, err := m.SetSegmentOffload(true, nil)
			checkErr(t, err, nil)
			if !changed || !m.Hardware().LsoSupported || !m.Current().LsoSupported {
				t.Fatalf("changed %v, hw %v, cur %v; want all true", changed, m.Hardware().LsoSupported, m.Current().LsoSupported)
			}
			for _, want := range []StatusCode{StatusTaskOffloadHardwareCapabilities, StatusTaskOffloadCurrentConfig} {
				ind := <-sub.C
				if ind.Status != want || !ind.Record.LsoSupported {
					t.Fatalf("indication %v (lso %v), want %v with LSO", ind.Status, ind.Record.LsoSupported, want)
				}
			}
			// ethtool: tx-esp-segmentation follows.
			if f := findLinux(m.LinuxView(), EthtoolTxESPSegmentation); f.On != m.Current().Esp || f.Fixed != !m.Hardware().Esp {
				t.Fatalf("tx-esp-segmentation %+v with esp %v", f, m.Current().Esp)
			}
			if v := ndisField(m.Current().NDISView(), "LsoSupported"); v != "TRUE" {
				t.Fatalf("NDIS LsoSupported = %q", v)
			}
			// Again: nothing changes, nothing is sent.
			if changed, _ := m.SetSegmentOffload(true, nil); changed {
				t.Fatal("second call reported a change")
			}
			// The port lost it: off in both records.
			if changed, _ := m.SetSegmentOffload(false, nil); !changed || m.Hardware().LsoSupported || m.Current().LsoSupported {
				t.Fatal("LSO stays after the port lost segmentation")
			}
		})
	}
}

func TestSetSegmentOffloadOverrides(t *testing.T) {
	no, yes := false, true
	// The configuration switched LSO off in the current record: it stays
	// off there, the hardware has it.
	m := mustManager(t, Config{})
	if _, err := m.SetSegmentOffload(true, &no); err != nil {
		t.Fatal(err)
	}
	if !m.Hardware().LsoSupported || m.Current().LsoSupported {
		t.Fatalf("hw %v cur %v, want true false", m.Hardware().LsoSupported, m.Current().LsoSupported)
	}
	// A hardware override that claims LSO without a segmenting port loses it.
	m = mustManager(t, Config{Hardware: Overrides{LsoSupported: &yes}})
	if !m.Hardware().LsoSupported {
		t.Fatal("hardware override lso_supported: true not applied")
	}
	if _, err := m.SetSegmentOffload(false, &yes); err != nil {
		t.Fatal(err)
	}
	if m.Hardware().LsoSupported || m.Current().LsoSupported {
		t.Fatal("LSO claimed without a segmenting wire port")
	}
	// The checksum-coexistence bits are not touched.
	if !m.Current().OffloadFlags.Has(FlagTCPChecksumCoexistence | FlagUDPChecksumCoexistence) {
		t.Fatal("checksum-coexistence flags lost")
	}
}

func findLinux(fs []LinuxFeature, name string) LinuxFeature {
	for _, f := range fs {
		if f.Name == name {
			return f
		}
	}
	return LinuxFeature{}
}

func ndisField(v []Field, name string) string {
	for _, f := range v {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}
