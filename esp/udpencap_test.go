package esp

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// udpESP returns a UDP-encapsulated ESP packet from an SA with udp_encap.
func udpESP(t *testing.T) []byte {
	t.Helper()
	out, _ := newPair(t, allAlgs()[0], pairOpts{mode: sa.Transport, encap: true})
	p := bufOf(transportDatagram(false, 40))
	if err := Encap(out, p); err != sa.ReasonNone {
		t.Fatal(err)
	}
	return append([]byte(nil), p.Bytes()...)
}

func TestUDPEncapLengthChecked(t *testing.T) {
	good := udpESP(t)
	real := len(good) - packet.IPv4MinLen
	for _, n := range []int{0, 8, 9, 100, real - 1, real + 1, 65535} {
		_, in := newPair(t, allAlgs()[0], pairOpts{mode: sa.Transport, encap: true})
		b := append([]byte(nil), good...)
		packet.UDP(b[packet.IPv4MinLen:]).SetLength(n)
		if _, err := packet.Locate(b, 4500); err != packet.ErrUDPLength {
			t.Errorf("UDP length %d (datagram %d): Locate = %v, want ErrUDPLength", n, real, err)
		}
		if err := LocateAndDecap(in, bufOf(b)); err != sa.InHdrError {
			t.Errorf("UDP length %d: Decap = %v, want XfrmInHdrError", n, err)
		}
	}
	if _, err := packet.Locate(good, 4500); err != nil {
		t.Errorf("the true UDP length: %v", err)
	}
}

func TestUDPEncapForSAWithoutEncapIsStateMismatch(t *testing.T) {
	b := udpESP(t)
	// Same SPI and keys do not matter: the mismatch is found first.
	_, in := newPair(t, allAlgs()[0], pairOpts{mode: sa.Transport})
	if err := LocateAndDecap(in, bufOf(b)); err != sa.InStateMismatch {
		t.Errorf("UDP-encapsulated ESP for an SA without udp_encap: %v, want XfrmInStateMismatch", err)
	}
	if got := in.Stats.Snapshot().Drops[sa.InStateMismatch.String()]; got != 1 {
		t.Errorf("SA counted %d XfrmInStateMismatch, want 1", got)
	}
}
