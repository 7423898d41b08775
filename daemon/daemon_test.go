package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/tun"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuf) {
	b := &logBuf{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

const keyAB = "0x000102030405060708090a0b0c0d0e0f10111213"
const keyBA = "0x101112131415161718191a1b1c1d1e1f20212223"

// sideYAML is one side of a tunnel between 192.0.2.1 (side a, inner
// 10.1/16) and 192.0.2.2 (side b, inner 10.2/16) over a memory cable.
func sideYAML(side, cable, dir string) string {
	me, peer, out, in := "1", "2", keyAB, keyBA
	outSPI, inSPI := "0x1001", "0x2001"
	if side == "b" {
		me, peer, out, in = "2", "1", keyBA, keyAB
		outSPI, inSPI = "0x2001", "0x1001"
	}
	return fmt.Sprintf(`
name: nic-%[1]s
log_level: debug
host: {type: memory}
wire: {type: memory, cable: %[2]s}
control: {socket: %[3]s/%[1]s/ctl.sock}
state_dir: %[3]s/%[1]s/state
sas:
  - name: out1
    dir: out
    mode: tunnel
    src: 192.0.2.%[4]s
    dst: 192.0.2.%[5]s
    esp: {spi: %[8]s, enc: aes-gcm-128, enc_key: "%[6]s"}
  - name: in1
    dir: in
    mode: tunnel
    src: 192.0.2.%[5]s
    dst: 192.0.2.%[4]s
    esp: {spi: %[9]s, enc: aes-gcm-128, enc_key: "%[7]s"}
policies:
  - {name: p-out, dir: out, src: 10.%[4]s.0.0/16, dst: 10.%[5]s.0.0/16, bundles: [out1]}
  - {name: p-in, dir: in, src: 10.%[5]s.0.0/16, dst: 10.%[4]s.0.0/16, bundles: [in1]}
`, side, cable, dir, me, peer, out, in, outSPI, inSPI)
}

func uniqueCable() string { return fmt.Sprintf("cable-%08x", rand.Uint32()) }

func startSide(t *testing.T, side, cable, dir string) (*Daemon, *logBuf) {
	t.Helper()
	cfg, err := ParseConfig([]byte(sideYAML(side, cable, dir)))
	if err != nil {
		t.Fatal(err)
	}
	log, buf := newLog()
	d, err := Start(context.Background(), cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, buf
}

// udp4 builds an IPv4/UDP datagram.
func udp4(src, dst string, payload []byte) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	b := make([]byte, 28+len(payload))
	packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: 7, DF: true, TTL: 64, Protocol: packet.ProtoUDP, Src: s, Dst: d})
	u := packet.UDP(b[20:])
	u.SetSrcPort(1000)
	u.SetDstPort(2000)
	u.SetLength(8 + len(payload))
	copy(b[28:], payload)
	u.SetChecksum(packet.TransportChecksum(s, d, packet.ProtoUDP, b[20:]))
	return b
}

// sendAndReceive writes pkt into from's host side and returns what comes
// out of to's host side.
func sendAndReceive(t *testing.T, from, to *tun.MemPort, pkt []byte) []byte {
	t.Helper()
	buf := make([]byte, 64+len(pkt))
	copy(buf[64:], pkt)
	if n, err := from.Write([][]byte{buf}, 64); err != nil || n != 1 {
		t.Fatalf("write: %d, %v", n, err)
	}
	got := make(chan []byte, 1)
	go func() {
		bufs := make([][]byte, to.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, to.MTU())
		}
		sizes := make([]int, len(bufs))
		n, err := to.Read(bufs, sizes, 0)
		if err != nil || n == 0 {
			got <- nil
			return
		}
		got <- bytes.Clone(bufs[0][:sizes[0]])
	}()
	select {
	case b := <-got:
		return b
	case <-time.After(10 * time.Second): // watchdog
		t.Fatal("nothing arrived")
	}
	return nil
}

func TestTwoDaemonsMemory(t *testing.T) {
	dir := t.TempDir()
	cable := uniqueCable()
	a, _ := startSide(t, "a", cable, dir)
	b, _ := startSide(t, "b", cable, dir)

	pkt := udp4("10.1.0.1", "10.2.0.1", []byte("hello through the tunnel"))
	if got := sendAndReceive(t, a.HostPeer(), b.HostPeer(), pkt); !bytes.Equal(got, pkt) {
		t.Fatalf("b's host got\n%x\nwant\n%x", got, pkt)
	}
	back := udp4("10.2.0.1", "10.1.0.1", []byte("and back"))
	if got := sendAndReceive(t, b.HostPeer(), a.HostPeer(), back); !bytes.Equal(got, back) {
		t.Fatalf("a's host got %x", got)
	}
	sa, sb := a.NIC().Stats(), b.NIC().Stats()
	if sa.TX.Protected != 1 || sb.RX.Protected != 1 || sb.TX.Protected != 1 || sa.RX.Protected != 1 {
		t.Errorf("protected counts: a %+v %+v, b %+v %+v", sa.TX, sa.RX, sb.TX, sb.RX)
	}
	// Auto MTU on a memory host: the wire MTU less the tunnel's overhead.
	if a.NIC().HostMTU() >= 1500 {
		t.Errorf("host MTU %d leaves no room for ESP", a.NIC().HostMTU())
	}

	// The control socket: owner-only, in an owner-only directory, and it
	// serves the API for this daemon.
	sock := a.ControlSocket()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v (%v), want 0700", di.Mode(), err)
	}
	cl := control.NewClient(sock)
	list, err := cl.ListSAs(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Bundles) != 2 || list.Bundles[0].Spec.ESP == nil || !list.Bundles[0].Spec.ESP.KeysRedacted {
		t.Errorf("SA list over the API: %+v", list.Bundles)
	}
	st, err := cl.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ns nic.Stats
	if err := json.Unmarshal(st.NIC, &ns); err != nil || ns.Name != "nic-a" || ns.TX.Protected != 1 {
		t.Errorf("NIC stats over the API: %+v, %v", ns, err)
	}

	// Close: the socket goes, the SAs are deleted.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if n := len(a.Table().List(false)); n != 0 {
		t.Errorf("%d bundles left after Close", n)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimal + "metrics: {listen: '127.0.0.1:0'}\ncontrol: {disabled: true}\nname: metr\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Wire.Cable = uniqueCable()
	cfg.Host.Type = HostMemory
	log, _ := newLog()
	d, err := Start(context.Background(), cfg, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.ControlSocket() != "" {
		t.Errorf("control API on %s although disabled", d.ControlSocket())
	}
	resp, err := http.Get("http://" + d.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`secnic_packets_total{direction="tx",nic="metr"}`, "secnic_mtu_bytes", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	addr := d.MetricsAddr().String()
	d.Close()
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("metrics still served after Close")
	}
}

func TestStartFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml, want string
	}{
		{"metrics-port-taken", minimal + "host: {type: memory}\ncontrol: {disabled: true}\nmetrics: {listen: '256.0.0.1:1'}\n", "metrics"},
		{"socket-not-a-socket", minimal + "host: {type: memory}\ncontrol: {socket: " + dir + "/file}\n", "not a socket"},
		{"capture-dir-missing", minimal + "host: {type: memory}\ncontrol: {disabled: true}\ncapture: {wire: " + dir + "/no/such/dir/w.pcap}\n", "capture"},
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Wire.Cable = uniqueCable()
			log, _ := newLog()
			d, err := Start(context.Background(), cfg, Options{Logger: log})
			if err == nil {
				d.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			// The cable was released: a new daemon can take the same end.
			cfg2, _ := ParseConfig([]byte(minimal + "host: {type: memory}\ncontrol: {disabled: true}\n"))
			cfg2.Wire.Cable = cfg.Wire.Cable
			d2, err := Start(context.Background(), cfg2, Options{Logger: log})
			if err != nil {
				t.Fatalf("restart on the same cable: %v", err)
			}
			d2.Close()
		})
	}
}
