package daemon

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/saspec"
)

func TestNextAutoMTU(t *testing.T) {
	for _, c := range []struct {
		cur, need int
		reload    bool
		want      int
	}{
		{1438, 1390, false, 1390}, // a costlier SA: down at once
		{1390, 1438, false, 1390}, // it went away: stay down
		{1390, 1438, true, 1438},  // a reload recomputes
		{1438, 1438, false, 1438},
	} {
		if got := nextAutoMTU(c.cur, c.need, c.reload); got != c.want {
			t.Errorf("nextAutoMTU(%d, %d, %v) = %d, want %d", c.cur, c.need, c.reload, got, c.want)
		}
	}
}

// TestAutoMTUDoesNotFlap adds and deletes an SA of larger overhead many
// times: the TUN MTU goes down once and stays there until a reload.
func TestAutoMTUDoesNotFlap(t *testing.T) {
	testenv.RequireRoot(t)
	ns := fmt.Sprintf("secnic-mtu-%06x", rand.Uint32()&0xffffff)
	nsPath, err := netlab.NewNamespace(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlab.DeleteNamespace(ns) })
	dir := t.TempDir()
	cfgText := strings.Replace(sideYAML("a", uniqueCable(), dir), "host: {type: memory}", "host: {type: tun, name: smtu0}\nnetns: "+nsPath, 1)
	path := filepath.Join(dir, "a.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := newLog()
	d, err := Start(context.Background(), cfg, Options{Logger: log, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	linkMTU := func() int {
		h, err := netns.Handle(nsPath)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err := h.LinkByName("smtu0")
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().MTU
	}
	settle := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for linkMTU() != want {
			if time.Now().After(deadline) {
				t.Fatalf("TUN MTU %d, want %d\n%s", linkMTU(), want, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	m0 := linkMTU()
	big := func(i int) saspec.BundleSpec {
		// Fresh keys for every SA: a key serves one outbound SA.
		enc, auth := make([]byte, 32), make([]byte, 64)
		for j := range enc {
			enc[j] = byte(i*31 + j + 1)
		}
		for j := range auth {
			auth[j] = byte(i*17 + j + 2)
		}
		binary.BigEndian.PutUint32(enc, uint32(i))
		return saspec.BundleSpec{Name: fmt.Sprintf("big%d", i), Dir: "out", Mode: "tunnel", Src: "2001:db8::1", Dst: "2001:db8::2",
			ESP: &saspec.SASpec{SPI: saspec.SPI(0x5000 + i), Enc: "aes-cbc-256", Auth: "hmac-sha512-256",
				EncKey: saspec.KeyOf(enc), AuthKey: saspec.KeyOf(auth)}}
	}
	h, err := d.Table().Add(big(0))
	if err != nil {
		t.Fatal(err)
	}
	var m1 int
	deadline := time.Now().Add(5 * time.Second)
	for m1 = linkMTU(); m1 == m0; m1 = linkMTU() {
		if time.Now().After(deadline) {
			t.Fatalf("the TUN MTU stayed %d after a costlier SA was added", m0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m1 >= m0 {
		t.Fatalf("MTU went from %d to %d for a costlier SA", m0, m1)
	}
	if err := d.Table().Delete(h); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		h, err := d.Table().Add(big(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Table().Delete(h); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // let the follower see every event
	if got := linkMTU(); got != m1 {
		t.Fatalf("after 51 adds and deletes the MTU is %d, want it kept at %d", got, m1)
	}
	if n := strings.Count(logs.String(), "host MTU adjusted"); n != 1 {
		t.Errorf("the MTU was adjusted %d times during the churn, want 1:\n%s", n, logs.String())
	}
	// A reload recomputes it from the SAs in the table.
	if _, err := d.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	settle(m0)
	// The device's own MTU log goes through the daemon's structured logger.
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `msg="TUN device MTU changed" nic=nic-a dev=smtu0`) {
		if time.Now().After(deadline) {
			t.Fatalf("no structured TUN MTU log line:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("MTU %d -> %d for the costlier SA, kept through 50 more adds and deletes, %d after the reload", m0, m1, linkMTU())
}
