package testenv

import (
	"testing"

	"github.com/secnic/secnic/internal/netlab"
)

// VethPair makes two network namespaces joined by a veth pair as cfg says
// (netlab.NewPair), after RequireNetns, and deletes them when t ends.
func VethPair(t testing.TB, cfg netlab.PairConfig) *netlab.Pair {
	t.Helper()
	RequireNetns(t)
	p, err := netlab.NewPair(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}
