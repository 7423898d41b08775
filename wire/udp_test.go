package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/testenv"
)

// loopbackPair opens two UDP wire ports on random loopback addresses
// (127.x.y.z, all local on Linux) pointing at each other.
func loopbackPair(t testing.TB, mtu int) (a, b *UDPPort) {
	t.Helper()
	return testenv.LoopbackPair(t, 4789, func(local, peer netip.AddrPort) (*UDPPort, error) {
		return OpenUDP(UDPConfig{Local: local, Peer: peer, MTU: mtu, Batch: 32})
	})
}

func TestUDPPort(t *testing.T) {
	a, b := loopbackPair(t, 1500)
	var pkts [][]byte
	for i := range 100 {
		pkts = append(pkts, udp(out4A, out4B, 1, 2, i*13, uint32(i), false))
	}
	const off = 16
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		bufs[i] = append(make([]byte, off), p...)
	}
	n, err := a.Write(bufs, off)
	if err != nil || n != len(pkts) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	var got [][]byte
	rb := make([][]byte, b.BatchSize())
	for i := range rb {
		rb[i] = make([]byte, off+b.MTU())
	}
	sizes := make([]int, len(rb))
	for len(got) < len(pkts) {
		k, err := b.Read(rb, sizes, off)
		if err != nil {
			t.Fatal(err)
		}
		if k > b.BatchSize() {
			t.Fatalf("read %d > batch", k)
		}
		for i := range k {
			got = append(got, bytes.Clone(rb[i][off:off+sizes[i]]))
		}
	}
	mustEqualPackets(t, got, pkts)

	// A datagram larger than the reader's buffer is reported with size 0.
	big := [][]byte{make([]byte, 3000)}
	if _, err := a.Write(big, 0); err != nil {
		t.Fatal(err)
	}
	k, err := b.Read(rb[:1], sizes, len(rb[0])-100)
	if err != nil || k != 1 || sizes[0] != 0 {
		t.Fatalf("oversized datagram: k=%d size=%d err=%v", k, sizes[0], err)
	}

	// Close unblocks Read with os.ErrClosed.
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(rb, sizes, 0)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Read block (the test holds either way)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not unblock Read (watchdog)")
	}
	if _, err := b.Write(bufs[:1], off); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}
