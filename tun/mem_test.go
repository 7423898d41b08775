package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// fillPacket writes a recognisable packet of n bytes: the stream id and
// sequence number, then a pattern derived from them.
func fillPacket(b []byte, stream, seq uint32) {
	binary.BigEndian.PutUint32(b[0:], stream)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(uint32(i) + stream*7 + seq*13)
	}
}

func packetID(b []byte) (stream, seq uint32) {
	return binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:])
}

// makeBufs returns n buffers of offset+size bytes with sentinel headroom.
func makeBufs(n, offset, size int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+size)
		for j := range offset {
			bufs[i][j] = 0xAA
		}
	}
	return bufs
}

func TestMemPairRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		batch, mtu  int
		writeOffset int
		readOffset  int
		sizes       []int // packet sizes written in one batch
		readBufs    int   // buffers offered per Read
		reverse     bool  // write on b, read on a
	}{
		{name: "single", batch: 1, mtu: 1500, sizes: []int{64}, readBufs: 1},
		{name: "batch of equal packets", batch: 8, mtu: 1500, writeOffset: 10, readOffset: 16, sizes: []int{1500, 1500, 1500, 1500, 1500, 1500, 1500, 1500}, readBufs: 8},
		{name: "mixed sizes and offsets", batch: 4, mtu: 9000, writeOffset: 3, readOffset: 192, sizes: []int{8, 9000, 100, 1, 4000}, readBufs: 4},
		{name: "read fewer than written", batch: 16, mtu: 256, writeOffset: 0, readOffset: 0, sizes: []int{10, 20, 30, 40, 50, 60, 70}, readBufs: 3},
		{name: "reverse direction", batch: 2, mtu: 1280, writeOffset: 40, readOffset: 0, sizes: []int{1280, 9}, readBufs: 2, reverse: true},
		{name: "empty packet", batch: 2, mtu: 100, sizes: []int{0, 8}, readBufs: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewMemPair(tt.batch, tt.mtu)
			defer a.Close()
			w, r := a, b
			if tt.reverse {
				w, r = b, a
			}
			out := make([][]byte, len(tt.sizes))
			for i, sz := range tt.sizes {
				out[i] = make([]byte, tt.writeOffset+sz)
				if sz >= 8 {
					fillPacket(out[i][tt.writeOffset:], 1, uint32(i))
				}
			}
			n, err := w.Write(out, tt.writeOffset)
			if err != nil || n != len(out) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(out))
			}
			if got := r.Queued(); got != len(out) {
				t.Errorf("Queued = %d, want %d", got, len(out))
			}
			in := makeBufs(tt.readBufs, tt.readOffset, tt.mtu)
			sizes := make([]int, tt.readBufs)
			next := 0
			for next < len(out) {
				n, err := r.Read(in, sizes, tt.readOffset)
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				if want := min(tt.readBufs, len(out)-next); n != want {
					t.Fatalf("Read returned %d packets, want %d", n, want)
				}
				for i := range n {
					want := out[next][tt.writeOffset:]
					got := in[i][tt.readOffset : tt.readOffset+sizes[i]]
					if !bytes.Equal(got, want) {
						t.Fatalf("packet %d: got %d bytes %x..., want %d bytes", next, len(got), got[:min(len(got), 8)], len(want))
					}
					for j := range tt.readOffset {
						if in[i][j] != 0xAA {
							t.Fatalf("packet %d: Read wrote into the headroom at byte %d", next, j)
						}
					}
					next++
				}
			}
			if got := r.Queued(); got != 0 {
				t.Errorf("Queued after reading everything = %d, want 0", got)
			}
			if r.Dropped()+w.Dropped() != 0 {
				t.Errorf("Dropped = %d/%d in blocking mode, want 0", w.Dropped(), r.Dropped())
			}
		})
	}
}

func TestMemPortArgErrors(t *testing.T) {
	const mtu = 100
	tests := []struct {
		name    string
		op      func(a, b *MemPort) error
		wantErr error
	}{
		{
			name: "write negative offset",
			op: func(a, _ *MemPort) error {
				_, err := a.Write([][]byte{make([]byte, 10)}, -1)
				return err
			},
			wantErr: ErrOffset,
		},
		{
			name: "write offset past end",
			op: func(a, _ *MemPort) error {
				_, err := a.Write([][]byte{make([]byte, 10)}, 11)
				return err
			},
			wantErr: ErrOffset,
		},
		{
			name: "write packet above MTU skips it and queues the others",
			op: func(a, b *MemPort) error {
				n, err := a.Write([][]byte{make([]byte, 10), make([]byte, mtu+1), make([]byte, 20)}, 0)
				if n != 2 || b.Queued() != 2 {
					return fmt.Errorf("Write = %d with %d packets queued, want 2 and 2 (the packet above the MTU skipped)", n, b.Queued())
				}
				got := makeBufs(4, 0, mtu)
				sizes := make([]int, len(got))
				if k, rerr := b.Read(got, sizes, 0); rerr != nil || k != 2 || sizes[0] != 10 || sizes[1] != 20 {
					return fmt.Errorf("Read = %d %v, sizes %v, want the 10- and 20-byte packets", k, rerr, sizes[:2])
				}
				return err
			},
			wantErr: ErrPacketTooBig,
		},
		{
			name: "read buffer smaller than MTU",
			op: func(_, b *MemPort) error {
				_, err := b.Read([][]byte{make([]byte, mtu+4)}, []int{0}, 5)
				return err
			},
			wantErr: ErrShortBuffer,
		},
		{
			name: "read sizes shorter than bufs",
			op: func(_, b *MemPort) error {
				_, err := b.Read(makeBufs(2, 0, mtu), []int{0}, 0)
				return err
			},
			wantErr: ErrShortBuffer,
		},
		{
			name: "read with no buffers",
			op: func(_, b *MemPort) error {
				_, err := b.Read(nil, nil, 0)
				return err
			},
			wantErr: ErrShortBuffer,
		},
		{
			name: "read negative offset",
			op: func(_, b *MemPort) error {
				_, err := b.Read(makeBufs(1, 0, mtu), []int{0}, -3)
				return err
			},
			wantErr: ErrOffset,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewMemPair(4, mtu)
			defer a.Close()
			if err := tt.op(a, b); !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMemPairClose(t *testing.T) {
	tests := []struct {
		name    string
		closeB  bool // close the b end instead of a
		blocked string
	}{
		{name: "close a unblocks reader on b", blocked: "read b"},
		{name: "close b unblocks reader on b", closeB: true, blocked: "read b"},
		{name: "close a unblocks writer on a", blocked: "write a"},
		{name: "close b unblocks writer on a", closeB: true, blocked: "write a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewMemPairConfig(MemConfig{Batch: 2, MTU: 64, Depth: 2})
			done := make(chan error, 1)
			switch tt.blocked {
			case "read b":
				go func() {
					_, err := b.Read(makeBufs(2, 0, 64), make([]int, 2), 0)
					done <- err
				}()
			case "write a":
				// Four packets into a queue of two: blocks until closed.
				go func() {
					n, err := a.Write(makeBufs(4, 0, 64), 0)
					if err != nil && n > 2 {
						err = fmt.Errorf("wrote %d packets into a queue of 2: %w", n, err)
					}
					done <- err
				}()
			}
			c := a
			if tt.closeB {
				c = b
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := <-done; !errors.Is(err, os.ErrClosed) {
				t.Fatalf("blocked %s returned %v, want os.ErrClosed", tt.blocked, err)
			}
			// Every later call on either end fails the same way, and Close
			// is idempotent.
			for _, p := range []*MemPort{a, b} {
				if _, err := p.Write(makeBufs(1, 0, 8), 0); !errors.Is(err, os.ErrClosed) {
					t.Errorf("%s: Write after Close = %v, want os.ErrClosed", p.Name(), err)
				}
				if _, err := p.Read(makeBufs(1, 0, 64), []int{0}, 0); !errors.Is(err, os.ErrClosed) {
					t.Errorf("%s: Read after Close = %v, want os.ErrClosed", p.Name(), err)
				}
				if err := p.Close(); err != nil {
					t.Errorf("%s: second Close = %v, want nil", p.Name(), err)
				}
			}
		})
	}
}

func TestMemPairDropWhenFull(t *testing.T) {
	tests := []struct {
		name        string
		depth       int
		batches     []int // packets per Write
		wantWritten []int
		wantDropped uint64
	}{
		{name: "fits", depth: 8, batches: []int{3, 5}, wantWritten: []int{3, 5}},
		{name: "overflow in one batch", depth: 4, batches: []int{10}, wantWritten: []int{4}, wantDropped: 6},
		{name: "overflow across batches", depth: 4, batches: []int{3, 3, 1}, wantWritten: []int{3, 1, 0}, wantDropped: 3},
		{name: "depth rounds up to a power of two", depth: 5, batches: []int{9}, wantWritten: []int{8}, wantDropped: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := NewMemPairConfig(MemConfig{Batch: 16, MTU: 32, Depth: tt.depth, DropWhenFull: true})
			defer a.Close()
			seq := uint32(0)
			total := 0
			for i, n := range tt.batches {
				bufs := makeBufs(n, 0, 32)
				for _, p := range bufs {
					fillPacket(p, 0, seq)
					seq++
				}
				got, err := a.Write(bufs, 0)
				if err != nil || got != tt.wantWritten[i] {
					t.Fatalf("Write #%d = %d, %v; want %d, nil", i, got, err, tt.wantWritten[i])
				}
				total += got
			}
			if got := a.Dropped(); got != tt.wantDropped {
				t.Errorf("Dropped = %d, want %d", got, tt.wantDropped)
			}
			if got := b.Queued(); got != total {
				t.Fatalf("Queued = %d, want %d", got, total)
			}
			// The queued packets are the first ones of each batch, in order.
			in := makeBufs(total, 0, 32)
			n, err := b.Read(in, make([]int, total), 0)
			if err != nil || n != total {
				t.Fatalf("Read = %d, %v; want %d, nil", n, err, total)
			}
			var want []uint32
			seq = 0
			for i, n := range tt.batches {
				for j := range n {
					if j < tt.wantWritten[i] {
						want = append(want, seq)
					}
					seq++
				}
			}
			for i := range n {
				if _, s := packetID(in[i]); s != want[i] {
					t.Errorf("packet %d has seq %d, want %d", i, s, want[i])
				}
			}
		})
	}
}

// TestMemPairConcurrent runs several writers and readers on one direction
// with a small queue, so that both sides block, and checks that every packet
// arrives exactly once and each writer's packets stay in order.
func TestMemPairConcurrent(t *testing.T) {
	tests := []struct {
		name             string
		writers, readers int
		depth, batch     int
		packetsPerWriter int
	}{
		{name: "one writer one reader", writers: 1, readers: 1, depth: 4, batch: 3, packetsPerWriter: 2000},
		{name: "many writers one reader", writers: 4, readers: 1, depth: 8, batch: 5, packetsPerWriter: 1000},
		{name: "many writers many readers", writers: 3, readers: 3, depth: 2, batch: 4, packetsPerWriter: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const mtu = 64
			a, b := NewMemPairConfig(MemConfig{Batch: tt.batch, MTU: mtu, Depth: tt.depth})
			defer a.Close()

			var wg sync.WaitGroup
			errs := make(chan error, tt.writers+tt.readers)
			for w := range tt.writers {
				wg.Go(func() {
					bufs := makeBufs(tt.batch, 4, mtu)
					for seq := 0; seq < tt.packetsPerWriter; {
						n := min(tt.batch, tt.packetsPerWriter-seq)
						for i := range n {
							fillPacket(bufs[i][4:4+8+(seq+i)%50], uint32(w), uint32(seq+i))
						}
						// Vary the sizes: buffers are resliced per packet.
						batch := make([][]byte, n)
						for i := range n {
							batch[i] = bufs[i][:4+8+(seq+i)%50]
						}
						if got, err := a.Write(batch, 4); err != nil || got != n {
							errs <- fmt.Errorf("writer %d: Write = %d, %v", w, got, err)
							return
						}
						seq += n
					}
				})
			}

			// Readers report what they saw; the test goroutine checks it.
			type rec struct{ stream, seq uint32 }
			total := tt.writers * tt.packetsPerWriter
			got := make(chan []rec, tt.readers)
			var remaining sync.WaitGroup
			remaining.Add(total)
			var rg sync.WaitGroup
			for range tt.readers {
				rg.Go(func() {
					var seen []rec
					defer func() { got <- seen }()
					bufs := makeBufs(tt.batch, 0, mtu)
					sizes := make([]int, tt.batch)
					for {
						n, err := b.Read(bufs, sizes, 0)
						if errors.Is(err, os.ErrClosed) {
							return
						}
						if err != nil {
							errs <- fmt.Errorf("Read: %v", err)
							return
						}
						for i := range n {
							s, q := packetID(bufs[i])
							if want := 8 + int(q)%50; sizes[i] != want {
								errs <- fmt.Errorf("packet %d/%d has %d bytes, want %d", s, q, sizes[i], want)
							}
							seen = append(seen, rec{s, q})
						}
						remaining.Add(-n)
					}
				})
			}
			wg.Wait()
			remaining.Wait() // every packet has been read
			a.Close()
			rg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			close(got)
			count := make(map[rec]int)
			for seen := range got {
				last := make(map[uint32]int64)
				for _, r := range seen {
					count[r]++
					// One reader sees each writer's packets in order.
					if l, ok := last[r.stream]; ok && int64(r.seq) <= l {
						t.Fatalf("stream %d: seq %d read after %d", r.stream, r.seq, l)
					}
					last[r.stream] = int64(r.seq)
				}
			}
			if len(count) != total {
				t.Fatalf("read %d distinct packets, want %d", len(count), total)
			}
			for r, c := range count {
				if c != 1 {
					t.Fatalf("packet %v read %d times", r, c)
				}
			}
		})
	}
}

func TestMemPairNoAllocs(t *testing.T) {
	const batch, mtu, size, offset = 64, 1500, 1400, MaxMinOffset
	a, b := NewMemPair(batch, mtu)
	defer a.Close()
	out := makeBufs(batch, offset, size)
	in := makeBufs(batch, offset, mtu)
	sizes := make([]int, batch)
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := a.Write(out, offset); err != nil || n != batch {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if n, err := b.Read(in, sizes, offset); err != nil || n != batch {
			t.Fatalf("Read = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("batch Write+Read allocates %.1f times, want 0", allocs)
	}
}

// BenchmarkMemPairBatch measures one batch Write on a and one batch Read on b
// in the same goroutine.
func BenchmarkMemPairBatch(b *testing.B) {
	for _, bc := range []struct{ batch, size int }{{1, 1400}, {64, 64}, {64, 1400}, {128, 1400}} {
		b.Run(fmt.Sprintf("batch=%d/size=%d", bc.batch, bc.size), func(b *testing.B) {
			const offset = MaxMinOffset
			pa, pb := NewMemPair(bc.batch, 1500)
			defer pa.Close()
			out := makeBufs(bc.batch, offset, bc.size)
			in := makeBufs(bc.batch, offset, 1500)
			sizes := make([]int, bc.batch)
			b.SetBytes(int64(bc.batch * bc.size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pa.Write(out, offset); err != nil {
					b.Fatal(err)
				}
				if _, err := pb.Read(in, sizes, offset); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.batch), "ns/pkt")
		})
	}
}

// BenchmarkMemPairStream has a writer goroutine and a reader goroutine
// streaming through a blocking pair, so the queue applies backpressure.
func BenchmarkMemPairStream(b *testing.B) {
	const batch, size, offset = 64, 1400, MaxMinOffset
	pa, pb := NewMemPair(batch, 1500)
	defer pa.Close()
	out := makeBufs(batch, offset, size)
	in := makeBufs(batch, offset, 1500)
	sizes := make([]int, batch)
	b.SetBytes(batch * size)
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() {
		total := 0
		for total < b.N*batch {
			n, err := pb.Read(in, sizes, offset)
			if err != nil {
				done <- err
				return
			}
			total += n
		}
		done <- nil
	}()
	for range b.N {
		if _, err := pa.Write(out, offset); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
