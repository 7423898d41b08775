package wire

import (
	"testing"
	"time"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/tun"
)

// waitReady polls p.Ready for up to a second.
func waitReady(p tun.Poller) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if p.Ready() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// checkReady: nothing waiting → not ready; a packet sent → ready; read →
// not ready again; closed → ready (a Read returns at once).
func checkReady(t *testing.T, tx, rx tun.Port, pkt []byte) {
	t.Helper()
	p := rx.(tun.Poller)
	if p.Ready() {
		t.Fatal("Ready with nothing sent")
	}
	if n, err := tx.Write([][]byte{pkt}, 0); n != 1 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if !waitReady(p) {
		t.Fatal("not Ready after a packet was sent")
	}
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	if n, err := rx.Read(bufs, sizes, 0); n != 1 || err != nil || sizes[0] != len(pkt) {
		t.Fatalf("Read: %d, %v, size %d", n, err, sizes[0])
	}
	if p.Ready() {
		t.Fatal("still Ready after the only packet was read")
	}
	rx.Close()
	if !p.Ready() {
		t.Fatal("a closed port is not Ready (its Read returns at once)")
	}
}

func TestUDPReady(t *testing.T) {
	a, b := loopbackPair(t, 1500)
	checkReady(t, a, b, udp(out4A, out4B, 1, 2, 100, 1, false))
}

func TestLinkRingReady(t *testing.T) { testLinkReady(t, LinkRing) }

func TestLinkXDPReady(t *testing.T) { testLinkReady(t, LinkXDP) }

func testLinkReady(t *testing.T, method string) {
	e := newVethEnv(t)
	pA, pB := openLinkPair(t, e, method)
	pkt := make([]byte, 120)
	packet.WriteIPv4(pkt, packet.IPv4Fields{TotalLen: len(pkt), ID: 7, TTL: 64, Protocol: packet.ProtoESP, Src: out4A, Dst: out4B})
	// The first packets to a new neighbour go through the raw socket
	// while the ring's next hop resolves; either way B's port gets them.
	checkReady(t, pA, pB, pkt)
}
