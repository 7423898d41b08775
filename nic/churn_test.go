package nic

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/secnic/secnic/saspec"
)

// TestTrafficWhileSAsChurn moves traffic both ways for a while (run it
// with -race) while other goroutines add and delete bundles of several
// overheads and policies that link them on both NICs, and read the
// counters: every packet sent is delivered unchanged, nothing is dropped,
// and the churn neither stalls nor disturbs the flows it does not touch.
func TestTrafficWhileSAsChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	tp := topo{alg: algGCM}
	a, b := build(t, tp)
	go forward(a.tap, b.tap)
	go forward(b.tap, a.tap)
	a.run(t)
	b.run(t)
	ha, hb := tp.hosts()
	const dur = 2 * time.Second
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sentAB, sentBA, churned atomic.Uint64
	send := func(s *side, counter *atomic.Uint64, ab bool) {
		defer wg.Done()
		for i := 0; ; i += 16 {
			select {
			case <-stop:
				return
			default:
			}
			var pkts [][]byte
			for j := i; j < i+16; j++ {
				if ab {
					pkts = append(pkts, udp(ha, hb, 1000, 2000, 40+j%900, uint32(j), false))
				} else {
					pkts = append(pkts, udp(hb, ha, 2000, 1000, 40+j%900, uint32(j), false))
				}
			}
			write(t, s.app, pkts...)
			counter.Add(uint64(len(pkts)))
		}
	}
	wg.Add(2)
	go send(a, &sentAB, true)
	go send(b, &sentBA, false)
	algs := []alg{algGCM, algCBC, {name: "chacha20-poly1305", enc: "chacha20-poly1305"}}
	for si, s := range []*side{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("churn%d", i)
				ends := tp
				ends.alg = algs[i%len(algs)]
				if i%2 == 1 {
					ends.mode = "transport"
				}
				x, y := tp.ends()
				spec := ends.bundle(name, "out", x, y, uint32(0x10000+si*0x1000000+i*2), byte(i))
				// Fresh keys for every SA (a key serves one outbound SA,
				// even after its SA is deleted).
				for _, k := range []*saspec.Key{&spec.ESP.EncKey, &spec.ESP.AuthKey} {
					if b := k.Bytes(); len(b) >= 8 {
						nb := append([]byte(nil), b...)
						binary.BigEndian.PutUint32(nb, uint32(si+1))
						binary.BigEndian.PutUint32(nb[4:], uint32(i))
						*k = saspec.KeyOf(nb)
					}
				}
				if _, err := s.table.Add(spec); err != nil {
					t.Errorf("add %s: %v", name, err)
					return
				}
				pol := saspec.PolicySpec{Name: name, Dir: "out", Src: "10.77.0.0/16", Dst: fmt.Sprintf("10.78.%d.0/24", i%250), Action: "protect", Bundles: []saspec.Ref{saspec.Ref(name)}}
				if _, err := s.table.AddPolicy(pol); err != nil {
					t.Errorf("add policy %s: %v", name, err)
					return
				}
				if err := s.table.DeletePolicy(name); err != nil {
					t.Errorf("delete policy %s: %v", name, err)
					return
				}
				h, err := s.table.Resolve(name)
				if err == nil {
					err = s.table.Delete(h)
				}
				if err != nil {
					t.Errorf("delete %s: %v", name, err)
					return
				}
				churned.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = a.nic.Stats(), b.nic.Stats()
			time.Sleep(time.Millisecond)
		}
	}()
	// Read what arrives as it arrives, so that the senders never block for long.
	var gotAB, gotBA atomic.Uint64
	var readers sync.WaitGroup
	readAll := func(s *side, n *atomic.Uint64) {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n.Add(uint64(len(drain(t, s.app))))
			time.Sleep(200 * time.Microsecond)
		}
	}
	readers.Add(2)
	go readAll(b, &gotAB)
	go readAll(a, &gotBA)
	time.Sleep(dur)
	close(stop)
	wg.Wait()
	readers.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gotAB.Add(uint64(len(drain(t, b.app))))
		gotBA.Add(uint64(len(drain(t, a.app))))
		if gotAB.Load() >= sentAB.Load() && gotBA.Load() >= sentBA.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d of %d and %d of %d", gotAB.Load(), sentAB.Load(), gotBA.Load(), sentBA.Load())
		}
		time.Sleep(time.Millisecond)
	}
	stA, stB := a.nic.Stats(), b.nic.Stats()
	if gotAB.Load() != sentAB.Load() || gotBA.Load() != sentBA.Load() || stA.TX.Dropped+stA.RX.Dropped+stB.TX.Dropped+stB.RX.Dropped != 0 {
		t.Errorf("sent %d/%d, delivered %d/%d; drops A %v %v, B %v %v", sentAB.Load(), sentBA.Load(), gotAB.Load(), gotBA.Load(), stA.TX.Drops, stA.RX.Drops, stB.TX.Drops, stB.RX.Drops)
	}
	if churned.Load() < 10 {
		t.Errorf("only %d churn rounds in %v", churned.Load(), dur)
	}
	t.Logf("%v: %d + %d packets delivered while %d bundles and policies were added and deleted", dur, gotAB.Load(), gotBA.Load(), churned.Load())
}
