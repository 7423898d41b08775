//go:build linux

package e2e

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/secnic/secnic/internal/netns"
	"github.com/secnic/secnic/internal/twonic"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/saspec"
)

// TestShutdown stops one NIC and checks what it leaves behind: no TUN
// device, no control socket, no SAs.
func TestShutdown(t *testing.T) {
	l := startLab(t, twonic.Scenario{SocketDir: t.TempDir()})
	mustPing(t, l, "a", false)
	name, sock := l.A.HostName(), l.A.ControlSocket()
	h, err := netns.Handle(l.Pair.A.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.LinkByName(name); err != nil {
		t.Fatalf("TUN %s missing while running: %v", name, err)
	}
	if err := l.A.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("TUN %s still there after shutdown (%v)", name, err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket %s still there: %v", sock, err)
	}
	if n := len(l.A.Table().List(false)); n != 0 {
		t.Errorf("%d bundles left", n)
	}
	if st := l.A.Table().Stats(); st.Usage.Bundles != 0 {
		t.Errorf("usage after shutdown: %+v", st.Usage)
	}
}

// TestMTUFollowsSAs: with host MTU auto, adding an outbound SA with more
// overhead through the API lowers the TUN MTU, and deleting it does not
// raise it again (no flapping; a reload recomputes it).
func TestMTUFollowsSAs(t *testing.T) {
	l := startLab(t, twonic.Scenario{})
	before := l.A.HostMTU()
	spec := saspec.BundleSpec{
		Name: "fat", Dir: "out", Mode: "tunnel", Src: "192.168.200.1", Dst: "192.168.200.9",
		ESP: &saspec.SASpec{SPI: 0x7001, Enc: "aes-cbc-256", Auth: "hmac-sha512-256",
			EncKey: saspec.KeyOf(make32()), AuthKey: saspec.KeyOf(append(make32(), make32()...))},
		UDPEncap: &saspec.UDPEncapSpec{},
	}
	h, err := l.A.Table().Add(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := nic.HostMTUFor(l.A.NIC().WireMTU(), l.A.Table().Snapshot())
	if want >= before {
		t.Fatalf("the fat SA should cost more than GCM: %d vs %d", want, before)
	}
	if !waitFor(func() bool { return l.A.HostMTU() == want }) {
		t.Errorf("TUN MTU %d after adding the SA, want %d", l.A.HostMTU(), want)
	}
	// The kernel uses the new MTU at once: a DF ping of the old size fails.
	r := ping(t, l, "a", false, twonic.PingOptions{Count: 1, Size: before - 28, DF: true, Wait: 300e6})
	if r.Received != 0 {
		t.Errorf("a DF ping larger than the new MTU went through:\n%s", r.Output)
	}
	mustPing(t, l, "a", false)
	if err := l.A.Table().Delete(h); err != nil {
		t.Fatal(err)
	}
	// The MTU does not flap back up: the largest overhead seen keeps it
	// down until a reload (daemon.TestAutoMTUDoesNotFlap).
	time.Sleep(300 * time.Millisecond)
	if got := l.A.HostMTU(); got != want {
		t.Errorf("TUN MTU %d after deleting the SA, want it kept at %d", got, want)
	}
	mustPing(t, l, "a", false)
}

func make32() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}
