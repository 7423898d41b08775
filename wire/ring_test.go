package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/packet"
)

// v3Block lays pkts out in a TPACKET_V3 block of size bytes as the kernel
// does, the last one cut to snap bytes if snap > 0.
func v3Block(size int, snap int, pkts ...[]byte) []byte {
	b := make([]byte, size)
	binary.NativeEndian.PutUint32(b[bdStatus:], unix.TP_STATUS_USER)
	binary.NativeEndian.PutUint32(b[bdNumPkts:], uint32(len(pkts)))
	binary.NativeEndian.PutUint32(b[bdFirst:], bdHdrLen)
	off := bdHdrLen
	for i, p := range pkts {
		h := b[off:]
		const net = tp3HdrLen + 32 // the kernel leaves room for the sockaddr_ll
		plen, slen := len(p), len(p)
		if i == len(pkts)-1 && snap > 0 {
			slen = snap
		}
		binary.NativeEndian.PutUint32(h[tp3Snaplen:], uint32(slen))
		binary.NativeEndian.PutUint32(h[tp3Len:], uint32(plen))
		binary.NativeEndian.PutUint16(h[tp3Mac:], net)
		binary.NativeEndian.PutUint16(h[tp3Net:], net)
		copy(h[net:], p[:slen])
		next := (net + slen + 15) &^ 15
		if i < len(pkts)-1 {
			binary.NativeEndian.PutUint32(h[tp3NextOffset:], uint32(next))
		}
		off += next
	}
	return b
}

// v2Frames lays pkts out in TPACKET_V2 frames of size bytes.
func v2Frames(size int, pkts ...[]byte) []byte {
	b := make([]byte, size*len(pkts))
	for i, p := range pkts {
		h := b[i*size:]
		const net = 80
		slen := min(len(p), size-net)
		binary.NativeEndian.PutUint32(h[tp2Status:], unix.TP_STATUS_USER)
		binary.NativeEndian.PutUint32(h[tp2Len:], uint32(len(p)))
		binary.NativeEndian.PutUint32(h[tp2Snaplen:], uint32(slen))
		binary.NativeEndian.PutUint16(h[tp2Mac:], net)
		binary.NativeEndian.PutUint16(h[tp2Net:], net)
		copy(h[net:], p[:slen])
	}
	return b
}

func testPackets() [][]byte {
	return [][]byte{
		udpWith(out4A, out4B, 4500, 4500, bytes.Repeat([]byte{1}, 100), false),
		udpWith(out6A, out6B, 4500, 4500, bytes.Repeat([]byte{2}, 300), false),
		udpWith(out4A, out4B, 1, 2, bytes.Repeat([]byte{3}, 1000), false),
	}
}

func readAll(t *testing.T, r *rxRing, per int) [][]byte {
	t.Helper()
	var got [][]byte
	bufs := make([][]byte, per)
	for i := range bufs {
		bufs[i] = make([]byte, 1600)
	}
	sizes := make([]int, per)
	for {
		var n int
		if r.version == unix.TPACKET_V3 {
			n = r.fillV3(bufs, sizes, 10)
		} else {
			n = r.fillV2(bufs, sizes, 10)
		}
		if n == 0 {
			return got
		}
		for i := range n {
			got = append(got, bytes.Clone(bufs[i][10:][:sizes[i]]))
		}
	}
}

// TestRingParse reads known rings: every packet comes out whole and in
// order, one cut short comes out with size 0, whatever the batch size, and
// every block or frame goes back to the kernel.
func TestRingParse(t *testing.T) {
	pkts := testPackets()
	for _, per := range []int{1, 2, 64} {
		r := &rxRing{version: unix.TPACKET_V3, blockSize: 4096, blocks: 2}
		r.mem = append(v3Block(4096, 0, pkts...), v3Block(4096, 500, pkts...)...)
		got := readAll(t, r, per)
		want := append(append([][]byte{}, pkts...), pkts[0], pkts[1], nil)
		mustEqualPackets(t, got, want)
		for b := range 2 {
			if s := binary.NativeEndian.Uint32(r.mem[b*4096+bdStatus:]); s != unix.TP_STATUS_KERNEL {
				t.Fatalf("V3 block %d left with status %#x", b, s)
			}
		}
		if r.blk != 0 || r.bad != 0 {
			t.Fatalf("V3: at block %d after reading both, %d bad frames", r.blk, r.bad)
		}

		r = &rxRing{version: unix.TPACKET_V2, frameSize: 1024, frames: 3}
		r.mem = v2Frames(1024, pkts...)
		got = readAll(t, r, per)
		mustEqualPackets(t, got, [][]byte{pkts[0], pkts[1], nil}) // the 1000-byte one does not fit a 1 KiB frame
		for i := range 3 {
			if s := binary.NativeEndian.Uint32(r.mem[i*1024:]); s != unix.TP_STATUS_KERNEL {
				t.Fatalf("V2 frame %d left with status %#x", i, s)
			}
		}
	}
}

// FuzzRingFrames feeds arbitrary ring contents to the frame parsers: they
// must never read outside the ring, never report more than fits, and
// always give the memory back to the kernel.
func FuzzRingFrames(f *testing.F) {
	pkts := testPackets()
	f.Add(v3Block(4096, 0, pkts...), true)
	f.Add(v3Block(4096, 200, pkts...), true)
	f.Add(v2Frames(1024, pkts...), false)
	f.Fuzz(func(t *testing.T, data []byte, v3 bool) {
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 700)
		}
		sizes := make([]int, len(bufs))
		var r *rxRing
		if v3 {
			r = &rxRing{version: unix.TPACKET_V3, blockSize: 4096, blocks: 1}
			r.mem = make([]byte, 4096)
			copy(r.mem, data)
			binary.NativeEndian.PutUint32(r.mem[bdStatus:], unix.TP_STATUS_USER)
		} else {
			r = &rxRing{version: unix.TPACKET_V2, frameSize: 512, frames: 4}
			r.mem = make([]byte, 2048)
			copy(r.mem, data)
			for i := range 4 {
				binary.NativeEndian.PutUint32(r.mem[i*512:], unix.TP_STATUS_USER)
			}
		}
		total := 0
		for range 1000 {
			var n int
			if v3 {
				n = r.fillV3(bufs, sizes, 0)
			} else {
				n = r.fillV2(bufs, sizes, 0)
			}
			if n == 0 {
				break
			}
			total += n
			for i := range n {
				if sizes[i] < 0 || sizes[i] > len(bufs[i]) {
					t.Fatalf("size %d for a %d-byte buffer", sizes[i], len(bufs[i]))
				}
			}
		}
		if v3 && binary.NativeEndian.Uint32(r.mem[bdStatus:]) != unix.TP_STATUS_KERNEL {
			t.Fatal("the block was not given back")
		}
		if !v3 && total+int(r.bad) != 4 {
			t.Fatalf("%d of 4 V2 frames read and %d found bad", total, r.bad)
		}
	})
}

// fakeKernel plays the kernel's side of a TX ring: from its head it takes
// every frame marked SEND_REQUEST, except that the driver refuses the
// frames whose first data byte is in refuse (the frame stays marked and
// the kick returns ENOBUFS), as tpacket_snd does.
type fakeKernel struct {
	t      *txRing
	head   int
	refuse map[byte]bool
	out    [][]byte
}

func (k *fakeKernel) kick() error {
	for {
		f := k.t.frame(k.head)
		if binary.NativeEndian.Uint32(f[tp2Status:]) != unix.TP_STATUS_SEND_REQUEST {
			return nil
		}
		n := binary.NativeEndian.Uint32(f[tp2Len:])
		data := f[tp2HdrLen : tp2HdrLen+n]
		if k.refuse[data[0]] {
			return unix.ENOBUFS
		}
		k.out = append(k.out, bytes.Clone(data))
		binary.NativeEndian.PutUint32(f[tp2Status:], unix.TP_STATUS_AVAILABLE)
		k.head = (k.head + 1) % k.t.frames
	}
}

// TestTXRingFlush checks Write's contract on the ring: a frame the driver
// keeps refusing is dropped and not counted, the frames behind it still go
// out in order, none goes out twice, and the ring stays in step with the
// kernel across batches.
func TestTXRingFlush(t *testing.T) {
	tr := &txRing{frameSize: 128, frames: 8}
	tr.mem = make([]byte, 128*8)
	k := &fakeKernel{t: tr, refuse: map[byte]bool{3: true}}
	tr.kick = k.kick
	var want [][]byte
	send := func(first, cnt int) (int, error) {
		for i := range cnt {
			s := tr.slot(i)
			if s == nil {
				t.Fatalf("frame %d of the batch is not free", i)
			}
			p := bytes.Repeat([]byte{byte(first + i)}, 10+i)
			copy(s, p)
			tr.fill(i, len(p))
			if !k.refuse[p[0]] {
				want = append(want, p)
			}
		}
		return tr.flush(cnt)
	}
	n, err := send(0, 6) // frames 0..5; 3 is refused
	if n != 5 || !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("flush: %d sent, %v; want 5, ENOBUFS", n, err)
	}
	n, err = send(6, 7) // wraps around the ring
	if n != 7 || err != nil {
		t.Fatalf("second flush: %d sent, %v; want 7, nil", n, err)
	}
	mustEqualPackets(t, k.out, want)
	if tr.head != k.head {
		t.Fatalf("ring head %d, kernel head %d", tr.head, k.head)
	}
	for i := range tr.frames {
		if s := binary.NativeEndian.Uint32(tr.frame(i)[tp2Status:]); s != unix.TP_STATUS_AVAILABLE {
			t.Fatalf("frame %d left with status %d", i, s)
		}
	}
}

// TestDstOf checks the destination the ring's next-hop lookup uses.
func TestDstOf(t *testing.T) {
	if d, ok := dstOf(udpWith(out4A, out4B, 1, 2, nil, false)); !ok || d != out4B {
		t.Fatalf("IPv4: %v %v", d, ok)
	}
	if d, ok := dstOf(udpWith(out6A, out6B, 1, 2, nil, false)); !ok || d != out6B {
		t.Fatalf("IPv6: %v %v", d, ok)
	}
	for _, b := range [][]byte{nil, {0x45, 0}, make([]byte, packet.IPv6Len-1), {0x75}} {
		if len(b) > 0 && b[0]>>4 == 0 {
			b[0] = 0x60
		}
		if _, ok := dstOf(b); ok {
			t.Fatalf("dstOf(% x) accepted a short or unknown packet", b)
		}
	}
}
