//go:build linux

package e2e

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/nic"
)

// TestInjected replays, tampers with and re-addresses a real ESP packet
// captured on the wire and injects the results from the underlay of
// namespace A (a raw socket on the veth, as an attacker on the link
// would); NIC B must drop each one and count it under the right reason,
// and the anti-replay window must not move for packets that fail to verify.
func TestInjected(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   twonic.Scenario
	}{
		{"esp-gcm", twonic.Scenario{}},
		{"esp-cbc-sha1", twonic.Scenario{Enc: "aes-cbc-256", Auth: "hmac-sha1-96"}},
		{"ah-sha256", twonic.Scenario{Proto: twonic.AH}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sc.CaptureDir = t.TempDir()
			l := startLab(t, tc.sc)
			mustPing(t, l, "a", false)

			// The first packet NIC a sent to b, as captured on a's wire
			// side. Captures are written in the background: wait for it.
			var orig []byte
			under := twonic.AddressesFor("tunnel", "a").Under4
			for try := 0; orig == nil && try < 200; try++ {
				pkts, err := tryReadCapture(l.CapturePath("a", "wire"), true)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pkts {
					if p.src == under && (p.proto == "esp" || p.proto == "ah") {
						orig = p.raw
						break
					}
				}
				if orig == nil {
					sleepShort()
				}
			}
			if orig == nil {
				t.Fatal("no protected packet from a in the wire capture")
			}
			ihl := int(orig[0]&0x0f) * 4
			spiOff, seqOff := ihl, ihl+4
			if tc.sc.Proto == twonic.AH {
				spiOff, seqOff = ihl+4, ihl+8
			}
			before := l.B.NIC().Stats()

			replayed := bytes.Clone(orig)
			tampered := bytes.Clone(orig)
			binary.BigEndian.PutUint32(tampered[seqOff:], 5000) // fresh: passes the replay check, fails the ICV
			tampered[len(tampered)-20] ^= 0x01
			unknown := bytes.Clone(orig)
			binary.BigEndian.PutUint32(unknown[spiOff:], 0xdead0001)

			for _, s := range []struct {
				name, reason string
				pkt          []byte
			}{
				{"replayed", "XfrmInStateSeqError", replayed},
				{"tampered", "XfrmInStateProtoError", tampered},
				{"unknown SPI", "XfrmInNoStates", unknown},
			} {
				prev := drops(l.B.NIC().Stats().RX, s.reason)
				if err := twonic.InjectIPv4(l.Pair.A, s.pkt); err != nil {
					t.Fatal(err)
				}
				if !waitFor(func() bool { return drops(l.B.NIC().Stats().RX, s.reason) == prev+1 }) {
					t.Errorf("%s packet: NIC b's %s went from %d to %d, want +1; rx drops %v", s.name, s.reason, prev,
						drops(l.B.NIC().Stats().RX, s.reason), l.B.NIC().Stats().RX.Drops)
				}
			}
			after := l.B.NIC().Stats()
			if got := after.RX.Dropped - before.RX.Dropped; got != 3 {
				t.Errorf("NIC b dropped %d packets, want 3: %v", got, after.RX.Drops)
			}
			if after.RX.Packets != before.RX.Packets {
				t.Errorf("NIC b delivered %d injected packets to its host", after.RX.Packets-before.RX.Packets)
			}
			// The inbound SA counted its own drops.
			proto := twonic.ESP
			if tc.sc.Proto == twonic.AH {
				proto = twonic.AH
			}
			spi := twonic.SPI("a", proto, false)
			var in *nic.SAStats
			for i, s := range after.SAs {
				if s.Dir == "in" && s.SPI == spi.String() {
					in = &after.SAs[i]
				}
			}
			if in == nil {
				t.Fatalf("no inbound SA %v on b", spi)
			}
			if in.Drops["XfrmInStateSeqError"] != 1 || in.Drops["XfrmInStateProtoError"] != 1 {
				t.Errorf("SA %v drops %v, want one replay and one integrity failure", spi, in.Drops)
			}
			if in.Seq >= 5000 {
				t.Errorf("the tampered packet moved the replay window to %d", in.Seq)
			}
			// Traffic still flows: the window did not move to 5000.
			mustPing(t, l, "a", false)
		})
	}
}
