package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/secnic/secnic/sadb"
)

func TestDescribeAcquire(t *testing.T) {
	at := time.Date(2026, 11, 25, 5, 0, 0, 0, time.UTC)
	e := sadb.Event{Seq: 12, Time: at, Type: sadb.EventAcquire, PolicyID: 1, PolicyName: "out-v4", Dir: "out",
		Acquire: &sadb.Acquire{Seq: 1, Reason: sadb.AcquireNoState,
			Flow:      sadb.AcquireFlow{Src: netip.MustParseAddr("10.1.0.1"), Dst: netip.MustParseAddr("10.2.0.1"), Proto: 1, SrcPort: 8},
			Templates: []sadb.AcquireTemplate{{Ref: "a-to-b", Missing: true}}}}
	want := "05:00:00 #12 acquire policy 1 out-v4 out seq=1 reason=no_state flow=icmp 10.1.0.1:8 > 10.2.0.1:0 want=a-to-b(missing) suppressed=0"
	if got := describeEvent(e); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	e.Acquire.Reason, e.Acquire.Suppressed = sadb.AcquireExpired, 7
	e.Acquire.Templates = []sadb.AcquireTemplate{{Ref: "a-to-b", Handle: 3, Protos: []string{"esp", "ah"}, Mode: "tunnel",
		Src: netip.MustParseAddr("192.168.200.1"), Dst: netip.MustParseAddr("192.168.200.2"), Expired: []string{"esp/0x00002000"}}}
	want = "05:00:00 #12 acquire policy 1 out-v4 out seq=1 reason=expired flow=icmp 10.1.0.1:8 > 10.2.0.1:0 want=a-to-b(esp+ah tunnel 192.168.200.1>192.168.200.2 expired esp/0x00002000) suppressed=7"
	if got := describeEvent(e); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
