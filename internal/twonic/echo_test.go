//go:build linux

package twonic

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/testenv"
)

// TestEchoLoopback: the built-in echo is answered on the loopback of a
// namespace of its own, over IPv4 and IPv6, and counts what it sent.
func TestEchoLoopback(t *testing.T) {
	testenv.RequireNetns(t)
	name := fmt.Sprintf("secnic-echotest-%d", os.Getpid())
	path, err := netlab.NewNamespace(name)
	if err != nil {
		t.Fatal(err)
	}
	defer netlab.DeleteNamespace(name)
	ns := netlab.Side{Name: name, Path: path}
	for _, dst := range []string{"127.0.0.1", "::1"} {
		r, err := Echo(context.Background(), ns, netip.MustParseAddr(dst), PingOptions{Count: 3, Interval: 10 * time.Millisecond, Size: 100})
		if err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		if r.Sent != 3 || r.Received != 3 {
			t.Errorf("%s: %d sent, %d answered, want 3 and 3:\n%s", dst, r.Sent, r.Received, r.Output)
		}
		if !strings.Contains(r.Output, "3 packets transmitted, 3 received") {
			t.Errorf("%s: output %q", dst, r.Output)
		}
	}
	// No route inside the namespace: sent, not answered, not an error.
	r, err := Echo(context.Background(), ns, netip.MustParseAddr("10.99.0.1"), PingOptions{Count: 2, Interval: 10 * time.Millisecond, Wait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 2 || r.Received != 0 {
		t.Errorf("unroutable: %d sent, %d answered, want 2 and 0", r.Sent, r.Received)
	}
}
