package nic

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/tun"
)

// run starts s's NIC and stops it at the end of the test.
func (s *side) run(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.nic.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// forward copies packets from one tap to another until either closes.
func forward(from *tun.MemPort, to tun.Port) { forwardSeeing(from, to, nil) }

// forwardSeeing is forward that hands each batch to see (if not nil)
// before writing it on.
func forwardSeeing(from *tun.MemPort, to tun.Port, see func(pkts [][]byte)) {
	bufs := make([][]byte, from.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, from.MTU())
	}
	sizes := make([]int, len(bufs))
	out := make([][]byte, len(bufs))
	for {
		n, err := from.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := range n {
			out[i] = bufs[i][:sizes[i]]
		}
		if see != nil {
			see(out[:n])
		}
		if _, err := to.Write(out[:n], 0); err != nil {
			return
		}
	}
}

// TestRunPair runs two NICs on their own goroutines, connected through
// forwarding taps, and moves traffic both ways at once while Stats and
// the metrics endpoint are read concurrently (run it with -race).
func TestRunPair(t *testing.T) {
	for _, tp := range []topo{{alg: algGCM}, {v6: true, alg: algCBC, encap: false, mode: "transport"}, {alg: algGCM, wireMTU: 1280}} {
		t.Run(tp.String(), func(t *testing.T) {
			a, b := build(t, tp)
			go forward(a.tap, b.tap)
			go forward(b.tap, a.tap)
			a.run(t)
			b.run(t)
			ha, hb := tp.hosts()
			const n = 500
			var wantAB, wantBA [][]byte
			for i := range n {
				size := 10 + (i*37)%1300
				wantAB = append(wantAB, udp(ha, hb, 1000, 2000, size, uint32(i), false))
				wantBA = append(wantBA, udp(hb, ha, 2000, 1000, size, uint32(i), false))
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // concurrent readers of the counters
				defer wg.Done()
				srv := httptest.NewServer(a.nic.MetricsHandler())
				defer srv.Close()
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = a.nic.Stats()
					resp, err := srv.Client().Get(srv.URL)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}()
			go func() {
				for i := 0; i < n; i += 50 {
					write(t, a.app, wantAB[i:i+50]...)
				}
			}()
			go func() {
				for i := 0; i < n; i += 50 {
					write(t, b.app, wantBA[i:i+50]...)
				}
			}()
			gotAB := readN(t, b.app, n)
			gotBA := readN(t, a.app, n)
			close(stop)
			wg.Wait()
			mustEqualPackets(t, gotAB, wantAB)
			mustEqualPackets(t, gotBA, wantBA)
			st := a.nic.Stats()
			if st.TX.Protected != n || st.RX.Protected != n || st.TX.Dropped+st.RX.Dropped != 0 {
				t.Fatalf("A stats %+v", st)
			}
		})
	}
}

// TestCloseStopsRun checks that Close ends Run and that a closed NIC
// refuses to run again.
func TestCloseStopsRun(t *testing.T) {
	a, _ := build(t, topo{alg: algGCM})
	done := make(chan error, 1)
	go func() { done <- a.nic.Run(context.Background()) }()
	write(t, a.app, udp(in4A, in4B, 1, 2, 10, 0, false))
	readN(t, a.tap, 1)
	if err := a.nic.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after Close", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after Close (watchdog)")
	}
	if err := a.nic.Run(context.Background()); err == nil {
		t.Fatal("Run on a closed NIC succeeded")
	}
}

func TestCaptures(t *testing.T) {
	dir := t.TempDir()
	tp := topo{alg: algGCM, cfg: Config{HostCapture: filepath.Join(dir, "host.pcap"), WireCapture: filepath.Join(dir, "wire.pcap")}}
	a, _ := build(t, tp)
	pkts := [][]byte{udp(in4A, in4B, 1, 2, 100, 0, false), udp(in4A, in4B, 1, 2, 1200, 1, false)}
	wire, _ := a.stepTX(t, pkts...)
	if err := a.nic.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		want [][]byte
	}{{"host.pcap", pkts}, {"wire.pcap", wire}} {
		f, err := os.Open(filepath.Join(dir, c.path))
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if r.LinkType() != layers.LinkTypeRaw {
			t.Fatalf("%s: link type %v, want raw (101)", c.path, r.LinkType())
		}
		var got [][]byte
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ci.Length != len(data) || ci.Timestamp.IsZero() {
				t.Fatalf("%s: capture info %+v", c.path, ci)
			}
			got = append(got, data)
		}
		f.Close()
		mustEqualPackets(t, got, c.want)
	}
}

func TestCaptureQueueFull(t *testing.T) {
	c, err := openCapture(filepath.Join(t.TempDir(), "x.pcap"), "wire", 100, 2, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	// Fill the queue faster than anyone writes: some packets must be
	// counted as not captured, none may block.
	for range 10000 {
		c.add(make([]byte, 60))
	}
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	st := c.stats()
	if st.Packets+st.Dropped != 10000 || st.Packets == 0 {
		t.Fatalf("captured %d + dropped %d, want 10000", st.Packets, st.Dropped)
	}
}

func TestStatsAndMetrics(t *testing.T) {
	a, b := build(t, topo{alg: algGCM})
	wire, _ := a.stepTX(t, udp(in4A, in4B, 1, 2, 100, 0, false))
	b.stepRX(t, wire[0], wire[0])

	js, err := json.Marshal(b.nic.Stats())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"rx":{"packets":1,`, `"XfrmInStateSeqError":1`, `"spi":"0x00001000"`, `"dir":"in"`} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("stats JSON lacks %s: %s", want, js)
		}
	}

	if problems, err := testutil.CollectAndLint(b.nic.Collector()); err != nil || len(problems) != 0 {
		t.Fatalf("metric lint: %v %v", err, problems)
	}
	srv := httptest.NewServer(b.nic.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`secnic_packets_total{direction="rx",nic="secnic0"} 1`,
		`secnic_drops_total{direction="rx",nic="secnic0",reason="XfrmInStateSeqError"} 1`,
		`secnic_sa_packets_total{dir="in",nic="secnic0",proto="esp",spi="0x00001000"} 1`,
		`secnic_sa_drops_total{dir="in",nic="secnic0",proto="esp",reason="XfrmInStateSeqError",spi="0x00001000"} 1`,
		`secnic_mtu_bytes{nic="secnic0",side="wire"} 1500`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	names := map[string]bool{}
	for _, r := range DropReasons() {
		if names[r[0]] || r[1] == "" {
			t.Errorf("drop reason %q duplicated or undocumented", r[0])
		}
		names[r[0]] = true
	}
}

func TestWiresharkKeys(t *testing.T) {
	a, _ := build(t, topo{alg: algGCM})
	var buf bytes.Buffer
	if err := WriteWiresharkESPSA(&buf, a.table.List(true)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		`"IPv4","192.0.2.1","192.0.2.2","0x00001000","AES-GCM with 16 octet ICV [RFC4106]","0x`,
		`"IPv4","192.0.2.2","192.0.2.1","0x00002000","AES-GCM with 16 octet ICV [RFC4106]","0x`,
		`","NULL",""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("wireshark table lacks %s:\n%s", want, out)
		}
	}
	if err := WriteWiresharkESPSA(io.Discard, a.table.List(false)); err == nil {
		t.Error("a listing without keys was accepted")
	}

	names := []struct {
		enc, auth      string
		icv            int
		wantEnc, wantA string
		ok             bool
	}{
		{"aes-cbc-256", "hmac-sha512-256", 0, "AES-CBC [RFC3602]", "HMAC-SHA-512-256 [RFC4868]", true},
		{"aes-gcm-256", "", 8, "AES-GCM with 8 octet ICV [RFC4106]", "NULL", true},
		{"aes-ctr-128", "hmac-sha1-96", 0, "AES-CTR [RFC3686]", "HMAC-SHA-1-96 [RFC2404]", true},
		{"3des-cbc", "hmac-md5-96", 0, "TripleDES-CBC [RFC2451]", "HMAC-MD5-96 [RFC2403]", true},
		{"chacha20-poly1305", "", 0, "", "NULL", false},
	}
	for _, n := range names {
		e, ok := WiresharkEncName(n.enc, n.icv)
		aName, aok := WiresharkAuthName(n.auth)
		if ok != n.ok || (ok && e != n.wantEnc) || !aok || aName != n.wantA {
			t.Errorf("%s/%s: %q %v / %q %v", n.enc, n.auth, e, ok, aName, aok)
		}
	}
}

// TestWiresharkDecrypts has tshark decrypt a wire capture with the key
// table: the algorithm names and key layout are what Wireshark expects.
func TestWiresharkDecrypts(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark", "Debian: tshark")
	for _, al := range []alg{algGCM, algCBC} {
		t.Run(al.name, func(t *testing.T) {
			dir := t.TempDir()
			a, _ := build(t, topo{alg: al, cfg: Config{WireCapture: filepath.Join(dir, "wire.pcap")}})
			var pkts [][]byte
			for i := range 5 {
				pkts = append(pkts, udp(in4A, in4B, 1234, 5678, 100+i, uint32(i), false))
			}
			a.stepTX(t, pkts...)
			var keys bytes.Buffer
			if err := WriteWiresharkESPSA(&keys, a.table.List(true)); err != nil {
				t.Fatal(err)
			}
			args := []string{"-n", "-r", filepath.Join(dir, "wire.pcap"),
				"-o", "esp.enable_encryption_decode:TRUE", "-o", "esp.enable_authentication_check:TRUE"}
			a.nic.Close()
			for _, line := range strings.Split(keys.String(), "\n") {
				if line != "" && !strings.HasPrefix(line, "#") {
					args = append(args, "-o", "uat:esp_sa:"+line)
				}
			}
			args = append(args, "-Y", "udp.dstport == 5678", "-T", "fields", "-e", "udp.srcport")
			cmd := exec.Command(tshark, args...)
			cmd.Env = append(os.Environ(), "HOME="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, out)
			}
			if got := strings.Count(string(out), "1234\n"); got != len(pkts) {
				t.Fatalf("tshark decrypted %d of %d packets:\n%s", got, len(pkts), out)
			}
		})
	}
}
