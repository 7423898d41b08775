package daemon

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/driver/hoststack"
)

func cryptoYAML(side, cable, dir string) string {
	y := sideYAML(side, cable, dir)
	y = strings.Replace(y, "host: {type: memory}\n", "offload: crypto\ndriver: {socket: "+dir+"/"+side+"/driver.sock}\n", 1)
	return y
}

// TestTwoDaemonsCrypto runs two daemons in crypto-offload mode on a
// memory cable, with a host stack on each driver socket.
func TestTwoDaemonsCrypto(t *testing.T) {
	dir := t.TempDir()
	cable := uniqueCable()
	var stacks [2]*hoststack.Stack
	var conns [2]*driver.Conn
	var ds [2]*Daemon
	for i, side := range []string{"a", "b"} {
		cfg, err := ParseConfig([]byte(cryptoYAML(side, cable, dir)))
		if err != nil {
			t.Fatal(err)
		}
		log, _ := newLog()
		d, err := Start(t.Context(), cfg, Options{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ds[i] = d
		c, err := driver.Dial(dir+"/"+side+"/driver.sock", driver.EncodingNDIS, 8)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i], stacks[i] = c, hoststack.New(c)
		me, peer := "192.0.2.1", "192.0.2.2"
		if side == "b" {
			me, peer = peer, me
		}
		for _, b := range d.Table().List(false) {
			if b.Spec.Offload != "crypto" { // named none: listed with the NIC's mode
				t.Fatalf("bundle %s offload %q, want crypto", b.Spec.Name, b.Spec.Offload)
			}
			if x := d.Table().Snapshot().Bundle(b.Handle); x == nil || x.PacketOffload {
				t.Fatalf("bundle %s is not a crypto-offload bundle", b.Spec.Name)
			}
			in := b.Spec.Dir == "in"
			src, dst := me, peer
			if in {
				src, dst = peer, me
			}
			_, err := stacks[i].AddBundle(hoststack.BundleConfig{Handle: uint64(b.Handle), In: in, Tunnel: true,
				Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
				ESP: &hoststack.SAConfig{SPI: uint32(b.Spec.ESP.SPI), Enc: b.Spec.ESP.Enc}})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	stacks[0].AddPolicy(hoststack.Policy{Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16"), Action: hoststack.Protect, Bundles: stacks[0].Bundles(false)})
	stacks[1].AddPolicy(hoststack.Policy{In: true, Src: netip.MustParsePrefix("10.1.0.0/16"), Dst: netip.MustParsePrefix("10.2.0.0/16"), Action: hoststack.Protect, Bundles: stacks[1].Bundles(true)})
	pkt := udp4("10.1.0.1", "10.2.0.1", []byte("hello over the driver interface"))
	if err := stacks[0].Send(pkt); err != nil {
		t.Fatal(err)
	}
	conns[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := stacks[1].Recv(1)
	if err != nil {
		// Say where the packet went: A's transmit and B's receive counters.
		a, b := ds[0].NIC().Stats(), ds[1].NIC().Stats()
		t.Fatalf("%v\nA tx %+v crypto %+v\nB rx %+v crypto %+v", err, a.TX, a.Crypto, b.RX, b.Crypto)
	}
	if d := got[0]; d.Drop != "" || !d.Info.CryptoDone || !bytes.Equal(d.Packet, pkt) {
		t.Fatalf("delivery %+v drop %q", d.Info, d.Drop)
	}
}

// TestCryptoConfigErrors: a bundle asking for the other mode is refused
// at load, with the offload field named; and the sections that belong to
// the other mode are refused.
func TestCryptoConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"packet bundle on crypto NIC", strings.Replace(cryptoYAML("a", "c", dir), "  - name: in1\n", "  - name: in1\n    offload: packet\n", 1), "offload"},
		{"crypto bundle on packet NIC", strings.Replace(sideYAML("a", "c", dir), "  - name: in1\n", "  - name: in1\n    offload: crypto\n", 1), "offload"},
		{"bad mode", minimal + "offload: hybrid\n", "offload"},
		{"driver without crypto", minimal + "driver: {socket: /run/x.sock}\n", "driver"},
		{"host with crypto", minimal + "offload: crypto\nhost: {addresses: [10.0.0.1/24]}\n", "host"},
		{"relative socket", minimal + "offload: crypto\ndriver: {socket: x.sock}\n", "driver.socket"},
	} {
		cfg, err := ParseConfig([]byte(tc.yaml))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %s", tc.name, err, tc.want)
		}
	}
}

// TestCryptoReload: a reload of a crypto-offload daemon dry-runs and
// reconciles in crypto mode: a new bundle without offload is added, one
// asking for packet offload is refused and nothing changes.
func TestCryptoReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	cur := cryptoYAML("a", uniqueCable(), dir)
	if err := os.WriteFile(path, []byte(cur), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLog()
	d, err := Start(t.Context(), cfg, Options{Logger: log, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	withSA := strings.Replace(cur, "policies:", strings.TrimPrefix(extraSA, "\n")+"policies:", 1)
	if err := os.WriteFile(path, []byte(strings.Replace(withSA, "  - name: out2\n", "  - name: out2\n    offload: packet\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReloadFile(); err == nil || !strings.Contains(err.Error(), "offload") {
		t.Fatalf("reload with a packet-offload bundle: %v, want an offload error", err)
	}
	if n := len(d.Table().List(false)); n != 2 {
		t.Fatalf("%d bundles after a refused reload, want 2", n)
	}
	if err := os.WriteFile(path, []byte(withSA), 0o600); err != nil {
		t.Fatal(err)
	}
	sum, err := d.ReloadFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.SAs.Added, []string{"out2"}) {
		t.Fatalf("added %v", sum.SAs.Added)
	}
}
