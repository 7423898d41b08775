//go:build linux

package interop

import (
	"context"
	"log/slog"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
	"github.com/secnic/secnic/wire"
)

// linkNIC is a running secnic NIC in namespace A of a netlab pair: its wire
// port is the link port on A's veth, its host port an in-memory port whose
// other end the test holds.
type linkNIC struct {
	nic *nic.NIC
	app *tun.MemPort // write datagrams "from the host" here; read what the NIC delivers
	got chan []byte  // datagrams the NIC delivered to the host side
}

// startLinkNIC adds the bundles and policies to a table with every
// capability, starts the NIC, and stops it when the test ends.
func startLinkNIC(t *testing.T, pair *netlab.Pair, bundles []saspec.BundleSpec, policies []saspec.PolicySpec) *linkNIC {
	t.Helper()
	prof, err := capabilities.LookupProfile("full")
	if err != nil {
		t.Fatal(err)
	}
	caps, err := capabilities.NewManager(prof.Hardware, prof.Hardware)
	if err != nil {
		t.Fatal(err)
	}
	table, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(table.Close)
	for _, b := range bundles {
		if _, err := table.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range policies {
		if _, err := table.AddPolicy(p); err != nil {
			t.Fatal(err)
		}
	}
	host, app := tun.NewMemPair(64, 1500)
	port, err := wire.OpenLink(wire.LinkConfig{Interface: pair.A.Veth, NetnsPath: pair.A.Path})
	if err != nil {
		t.Fatal(err)
	}
	n, err := nic.New(nic.Config{Name: "interop"}, table, host, port, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		n.Close()
	})
	l := &linkNIC{nic: n, app: app, got: make(chan []byte, 64)}
	go func() {
		rb, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			k, err := app.Read(rb, sizes, 0)
			if err != nil {
				close(l.got)
				return
			}
			if k == 1 {
				l.got <- append([]byte(nil), rb[0][:sizes[0]]...)
			}
		}
	}()
	return l
}
