package daemon

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRekeyMakeBeforeBreak rekeys a tunnel with traffic flowing, the way
// an IKE daemon does it (RFC 7296 2.8): the receiver adds the new inbound
// SA, the sender adds the new outbound SA and switches its policy to it in
// one reload, and the old pair is deleted once drained. Every packet sent
// arrives, exactly once; the new SAs carry the traffic afterwards.
func TestRekeyMakeBeforeBreak(t *testing.T) {
	dir := t.TempDir()
	cable := uniqueCable()
	pathA, pathB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	cfgA, cfgB := sideYAML("a", cable, dir), sideYAML("b", cable, dir)
	write := func(p, c string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(pathA, cfgA)
	write(pathB, cfgB)
	start := func(p string) *Daemon {
		cfg, err := LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		log, _ := newLog()
		d, err := Start(context.Background(), cfg, Options{Logger: log, ConfigPath: p})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	a, b := start(pathA), start(pathB)
	reload := func(d *Daemon, p, c string) {
		t.Helper()
		write(p, c)
		if sum, err := d.ReloadFile(); err != nil || len(sum.Failed) > 0 {
			t.Fatalf("reload %s: %+v %v", p, sum, err)
		}
	}

	// Traffic: numbered UDP packets from a's host to b's host, paced.
	var sent atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64+28+8)
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var n [8]byte
			binary.BigEndian.PutUint64(n[:], i)
			copy(buf[64:], udp4("10.1.0.1", "10.2.0.1", n[:]))
			if k, err := a.HostPeer().Write([][]byte{buf}, 64); err != nil || k != 1 {
				t.Errorf("write %d: %v", i, err)
				return
			}
			sent.Store(i)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	seen := map[uint64]int{}
	var seenMu sync.Mutex
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		peer := b.HostPeer()
		bufs := make([][]byte, peer.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, peer.MTU())
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := peer.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			seenMu.Lock()
			for i := range n {
				if sizes[i] == 36 {
					seen[binary.BigEndian.Uint64(bufs[i][28:36])]++
				}
			}
			seenMu.Unlock()
		}
	}()
	time.Sleep(100 * time.Millisecond)

	const newKey = "0x" + "5a5b5c5d5e5f606162636465666768696a6b6c6d"
	newOut := `  - name: out2
    dir: out
    mode: tunnel
    src: 192.0.2.1
    dst: 192.0.2.2
    esp: {spi: 0x1101, enc: aes-gcm-128, enc_key: "` + newKey + `"}
`
	newIn := `  - name: in2
    dir: in
    mode: tunnel
    src: 192.0.2.1
    dst: 192.0.2.2
    esp: {spi: 0x1101, enc: aes-gcm-128, enc_key: "` + newKey + `"}
`
	// 1. b: the new inbound SA, allowed beside the old one.
	cfgB = strings.Replace(cfgB, "policies:", newIn+"policies:", 1)
	cfgB = strings.Replace(cfgB, "bundles: [in1]", "bundles: [in1, in2]", 1)
	reload(b, pathB, cfgB)
	time.Sleep(50 * time.Millisecond)
	// 2. a: the new outbound SA and the policy switched to it, atomically.
	cfgA = strings.Replace(cfgA, "policies:", newOut+"policies:", 1)
	cfgA = strings.Replace(cfgA, "bundles: [out1]", "bundles: [out2]", 1)
	reload(a, pathA, cfgA)
	time.Sleep(50 * time.Millisecond)
	// 3. The old pair goes, once drained.
	i := strings.Index(cfgA, "  - name: out1")
	j := strings.Index(cfgA, "  - name: in1")
	reload(a, pathA, cfgA[:i]+cfgA[j:])
	cfgB = strings.Replace(cfgB, "bundles: [in1, in2]", "bundles: [in2]", 1)
	i = strings.Index(cfgB, "  - name: in1")
	j = strings.Index(cfgB, "  - name: in2")
	reload(b, pathB, cfgB[:i]+cfgB[j:])
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	total := sent.Load()
	if !waitUntil(func() bool { seenMu.Lock(); defer seenMu.Unlock(); return uint64(len(seen)) >= total }, 5*time.Second) {
		seenMu.Lock()
		var lost []uint64
		for i := uint64(1); i <= total && len(lost) < 20; i++ {
			if seen[i] == 0 {
				lost = append(lost, i)
			}
		}
		seenMu.Unlock()
		t.Fatalf("%d of %d packets arrived; first lost: %v; a %+v; b %+v", len(seen), total, lost, a.NIC().Stats().TX.Drops, b.NIC().Stats().RX.Drops)
	}
	seenMu.Lock()
	defer seenMu.Unlock()
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("packet %d arrived %d times", n, c)
		}
	}
	bi, err := b.Table().Get("in2", false)
	if err != nil || bi.SAs[0].Counters.Packets == 0 {
		t.Fatalf("the new inbound SA carried nothing: %+v %v", bi, err)
	}
	t.Logf("%d packets through the rekey, none lost; %d on the new SA", total, bi.SAs[0].Counters.Packets)
}

func waitUntil(cond func() bool, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
