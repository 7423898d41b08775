package mmsg

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// pair is a connected SOCK_SEQPACKET socket pair, each end as a Conn.
func pair(t *testing.T, batch int) (a, b *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		t.Cleanup(func() { f.Close() })
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		return New(rc, batch)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestRoundTrip(t *testing.T) {
	a, b := pair(t, 4)
	// 10 messages of different sizes: three SendAll batches of at most 4.
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, bytes.Repeat([]byte{byte(i)}, 1+i*37))
	}
	const off = 3
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = append(make([]byte, off), m...)
	}
	if n, err := a.SendAll(out, off); n != len(msgs) || err != nil {
		t.Fatalf("SendAll: %d, %v", n, err)
	}
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, off+512)
	}
	sizes := make([]int, len(bufs))
	var got [][]byte
	for len(got) < len(msgs) {
		n, err := b.Recv(bufs, sizes, off)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || n > b.Batch() {
			t.Fatalf("Recv returned %d messages", n)
		}
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][off:off+sizes[i]]))
		}
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got[i]), len(msgs[i]))
		}
	}
}

// TestTruncatedAndEmpty: a message larger than its buffer is reported with
// size 0; with Empty set, a zero-length message ends Recv with that error
// after the messages before it.
func TestTruncatedAndEmpty(t *testing.T) {
	a, b := pair(t, 4)
	eof := errors.New("eof")
	b.Empty = eof
	a.Prep(0, make([]byte, 100))
	a.Prep(1, []byte("ok"))
	if n, err := a.Send(2); n != 2 || err != nil {
		t.Fatalf("Send: %d, %v", n, err)
	}
	bufs := [][]byte{make([]byte, 10), make([]byte, 10), make([]byte, 10)}
	sizes := make([]int, 3)
	n, err := b.Recv(bufs, sizes, 0)
	if err != nil || n != 2 || sizes[0] != 0 || sizes[1] != 2 {
		t.Fatalf("Recv: n=%d sizes=%v err=%v, want 2 messages, the first truncated (size 0)", n, sizes[:2], err)
	}
	a.Prep(0, []byte("x"))
	if _, err := a.Send(1); err != nil {
		t.Fatal(err)
	}
	// A zero-length message: Prep needs a byte to point at, so it goes
	// with a plain write.
	if err := a.rc.Write(func(fd uintptr) bool {
		_, err := unix.Write(int(fd), nil)
		return err != unix.EAGAIN
	}); err != nil {
		t.Fatal(err)
	}
	n, err = b.Recv(bufs, sizes, 0)
	if n != 1 || !errors.Is(err, eof) || sizes[0] != 1 {
		t.Fatalf("Recv: n=%d err=%v, want 1 message then the Empty error", n, err)
	}
}

// TestSendAfterPeerGone: a send to a peer that has closed stops with an
// error that ends the socket and counts nothing.
func TestSendAfterPeerGone(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "seqpacket")
	defer f.Close()
	rc, _ := f.SyscallConn()
	a := New(rc, 4)
	n, err := a.SendAll([][]byte{[]byte("a"), []byte("b")}, 0)
	if n != 0 || !fatal(err) {
		t.Fatalf("SendAll to a closed peer: %d, %v; want 0 and EPIPE", n, err)
	}
}

func TestNoAllocs(t *testing.T) {
	a, b := pair(t, 8)
	out := [][]byte{make([]byte, 64), make([]byte, 64)}
	bufs := [][]byte{make([]byte, 128), make([]byte, 128)}
	sizes := make([]int, 2)
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := a.SendAll(out, 0); n != 2 || err != nil {
			t.Fatal(n, err)
		}
		got := 0
		for got < 2 {
			n, err := b.Recv(bufs, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}
