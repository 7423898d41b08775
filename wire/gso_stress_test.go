package wire

import (
	"encoding/binary"
	"testing"
)

// TestUDPGSOPingPong alternates single datagrams (ping-like) with
// segmented bursts in both directions and checks that each single one
// arrives by itself, in order: nothing is held back in the reader's
// leftovers or lost between bursts.
func TestUDPGSOPingPong(t *testing.T) {
	a, b := udpPairCfg(t, func(c *UDPConfig) { c.Batch = 64 })
	requireGSO(t, a)
	burst := tsoBatch()
	one := [][]byte{make([]byte, gsoOff+84)}
	for i := range 500 {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		if i%5 == 0 {
			roundTripBufs(t, from, to, burst)
		}
		binary.BigEndian.PutUint32(one[0][gsoOff:], uint32(i))
		if n, err := from.Write(one, gsoOff); n != 1 || err != nil {
			t.Fatalf("single %d: Write = %d, %v", i, n, err)
		}
		got := receiveN(t, to, 1)
		if len(got[0]) != 84 || binary.BigEndian.Uint32(got[0]) != uint32(i) {
			t.Fatalf("single %d: got %d bytes, index %d", i, len(got[0]), binary.BigEndian.Uint32(got[0]))
		}
	}
}

func roundTripBufs(t *testing.T, a, b *UDPPort, bufs [][]byte) {
	t.Helper()
	want := make([][]byte, len(bufs))
	for i, x := range bufs {
		want[i] = x[gsoOff:]
	}
	roundTrip(t, a, b, want)
}
