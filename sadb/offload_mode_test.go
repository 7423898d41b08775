package sadb

import (
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/saspec"
)

// A bundle asking for the offload mode the NIC does not run is refused
// with a field error, and nothing changes in the table.
func TestOffloadModeRefusedWithoutStateChange(t *testing.T) {
	for _, tc := range []struct {
		nic, bundle capabilities.OffloadMode
	}{{capabilities.OffloadPacket, capabilities.OffloadCrypto}, {capabilities.OffloadCrypto, capabilities.OffloadPacket}} {
		m := newManager(t, "full")
		if err := m.SetOffloadMode(tc.nic); err != nil {
			t.Fatal(err)
		}
		tb, err := NewTable(TableConfig{Caps: m, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		h := mustAdd(t, tb, gcmSpec("ok", 0x1000, "192.0.2.2"))
		if b := tb.Snapshot().Bundle(h); b == nil || b.PacketOffload != (tc.nic == capabilities.OffloadPacket) {
			t.Fatalf("%s NIC: bundle without offload got PacketOffload=%v", tc.nic, b != nil && b.PacketOffload)
		}
		gen := tb.Snapshot().Gen()
		bad := gcmSpec("bad", 0x1001, "192.0.2.2")
		bad.Offload = string(tc.bundle)
		_, err = tb.Add(bad)
		if saspec.ErrorCode(err) != "invalid" {
			t.Fatalf("%s bundle on %s NIC: %v, want invalid", tc.bundle, tc.nic, err)
		}
		if e, ok := err.(*saspec.Error); !ok || e.Field != "offload" {
			t.Fatalf("error %v has no offload field", err)
		}
		if tb.Snapshot().Gen() != gen || tb.Snapshot().Len() != 1 {
			t.Fatalf("the refused add changed the table")
		}
		tb.Close()
	}
}
