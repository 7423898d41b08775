package nic

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/secnic/secnic/tun"
)

// pipe is a running pair of NICs joined by a memory wire, with the hosts'
// ends of their host ports: packets written to in come out of out after
// NIC A protected them and NIC B verified and decrypted them.
type pipe struct {
	in, out *tun.MemPort
	batch   [][]byte
	rbufs   [][]byte
	sizes   []int
}

func newPipe(t testing.TB, al alg, size int) *pipe { return newPipeWorkers(t, al, size, 0) }

// newPipeWorkers is newPipe with workers workers per direction in each NIC
// (0: the build default).
func newPipeWorkers(t testing.TB, al alg, size, workers int) *pipe {
	a, b := build(t, topo{alg: al, direct: true, cfg: Config{Workers: workers}})
	a.run(t)
	b.run(t)
	p := &pipe{in: a.app, out: b.app}
	for i := range 64 {
		p.batch = append(p.batch, udp(in4A, in4B, uint16(1000+i), 2000, size-28, uint32(i), false))
	}
	p.rbufs = make([][]byte, 64)
	for i := range p.rbufs {
		p.rbufs[i] = make([]byte, p.out.MTU())
	}
	p.sizes = make([]int, 64)
	return p
}

// send writes n packets in batches.
func (p *pipe) send(t testing.TB, n int) {
	for n > 0 {
		k := min(n, len(p.batch))
		if _, err := p.in.Write(p.batch[:k], 0); err != nil {
			t.Error(err)
			return
		}
		n -= k
	}
}

// recv reads n packets.
func (p *pipe) recv(t testing.TB, n int) {
	for n > 0 {
		k, err := p.out.Read(p.rbufs[:min(n, len(p.rbufs))], p.sizes, 0)
		if err != nil {
			t.Error(err)
			return
		}
		n -= k
	}
}

// BenchmarkDatapath pushes batches host→wire through NIC A (policy lookup,
// ESP encapsulation) and wire→host through NIC B (SPI lookup, anti-replay,
// decryption, selector check) over memory ports. One op is one packet of
// the given IP size; allocs/op must be 0.
func BenchmarkDatapath(b *testing.B) {
	for _, al := range []alg{algGCM, algCBC, algChaCha} {
		for _, size := range []int{64, 512, 1400} {
			b.Run(al.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				p := newPipe(b, al, size)
				p.send(b, 256) // warm up pools and caches
				p.recv(b, 256)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				go p.send(b, b.N)
				p.recv(b, b.N)
			})
		}
	}
}

// BenchmarkDatapathWorkers is BenchmarkDatapath (AES-GCM-128) with
// several workers per direction in each NIC: the memory ports have one
// queue, so each NIC's dispatchers spread the packets (64 flows).
func BenchmarkDatapathWorkers(b *testing.B) {
	for _, w := range []int{1, 2, 4} {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("workers=%d/%d", w, size), func(b *testing.B) {
				p := newPipeWorkers(b, algGCM, size, w)
				p.send(b, 256)
				p.recv(b, 256)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				go p.send(b, b.N)
				p.recv(b, b.N)
			})
		}
	}
}

// TestDatapathNoAllocs enforces what the benchmark shows: a batch through
// both NICs allocates nothing (counted across all goroutines).
func TestDatapathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	for _, c := range []struct {
		al      alg
		workers int
	}{{algGCM, 1}, {algCBC, 1}, {algGCM, 3}} {
		t.Run(fmt.Sprintf("%s/workers=%d", c.al.name, c.workers), func(t *testing.T) {
			p := newPipeWorkers(t, c.al, 1000, c.workers)
			p.send(t, 256)
			p.recv(t, 256)
			allocs := testing.AllocsPerRun(200, func() {
				p.send(t, 64)
				p.recv(t, 64)
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per batch of 64 packets, want 0", allocs)
			}
		})
	}
}
