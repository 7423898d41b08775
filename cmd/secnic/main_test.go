package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/sadb"
)

type nicStats struct{}

func (nicStats) Stats() any { return map[string]uint64{"rx_packets": 1} }

// daemon serves the control API for a fresh table on a temporary socket.
func daemon(t *testing.T, profile string) (string, *sadb.Table) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: profile})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: m, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Start(ctx)
	srv, err := control.NewServer(control.Backend{Table: tb, Stats: nicStats{}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "secnic")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "secnic.sock")
	l, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		cancel()
		tb.Close()
		os.RemoveAll(dir)
	})
	return sock, tb
}

// notifyBuffer is a goroutine-safe buffer that signals each write.
type notifyBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{wrote: make(chan struct{}, 1)} }

func (n *notifyBuffer) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case n.wrote <- struct{}{}:
	default:
	}
	return n.b.Write(p)
}

func (n *notifyBuffer) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.b.String()
}

// waitFor waits until the buffer contains s.
func (n *notifyBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(n.String(), s) {
		select {
		case <-n.wrote:
		case <-deadline:
			t.Fatalf("output never contained %q; got %q", s, n.String())
		}
	}
}

type cli struct {
	t    *testing.T
	sock string
}

func (c cli) run(stdin string, args ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := execute(context.Background(), append([]string{"--socket", c.sock}, args...), strings.NewReader(stdin), &out, &errOut, commands)
	return out.String(), errOut.String(), code
}

// ok runs a command that must succeed and returns its standard output.
func (c cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("secnic %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fail runs a command that must fail with the given exit status and
// returns its standard error.
func (c cli) fail(code int, args ...string) string {
	c.t.Helper()
	out, errOut, got := c.run("", args...)
	if got != code {
		c.t.Fatalf("secnic %s: exit %d, want %d\n%s%s", strings.Join(args, " "), got, code, out, errOut)
	}
	return errOut
}

func gcmKey(i int) string { return fmt.Sprintf("0x%040x", i+1) }

func TestCLIEndToEnd(t *testing.T) {
	sock, tb := daemon(t, capabilities.ProfileNetdevsim)
	c := cli{t, sock}

	// caps: both records, both views.
	out := c.ok("caps")
	for _, want := range []string{"profile: netdevsim", "NDIS_IPSEC_OFFLOAD_V2", "SaOffloadCapacity", "33", "esp-hw-offload: on", "HARDWARE", "CURRENT"} {
		if !strings.Contains(out, want) {
			t.Errorf("caps output lacks %q:\n%s", want, out)
		}
	}
	var caps control.CapabilitiesResponse
	if err := json.Unmarshal([]byte(c.ok("caps", "--json")), &caps); err != nil || caps.Capacity != 33 {
		t.Fatalf("caps --json: %v %+v", err, caps)
	}
	if out := c.ok("caps", "--view", "linux"); strings.Contains(out, "NDIS_IPSEC") || !strings.Contains(out, "tx-esp-segmentation") {
		t.Errorf("caps --view linux:\n%s", out)
	}

	// offload set, and the indication on the event stream.
	evOut, evErr := newNotifyBuffer(), newNotifyBuffer()
	evDone := make(chan int, 1)
	go func() {
		evDone <- execute(context.Background(), []string{"--socket", sock, "events", "--count", "1", "--json"}, nil, evOut, evErr, commands)
	}()
	evErr.waitFor(t, "following events")
	if out := c.ok("offload", "set", "--ipsec-v2", "disabled"); !strings.Contains(out, "changed (IPsecV2 = DISABLED)") {
		t.Errorf("offload set output:\n%s", out)
	}
	select {
	case code := <-evDone:
		if code != 0 {
			t.Fatalf("events exited %d: %s", code, evErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("events did not see the indication")
	}
	var ev sadb.Event
	if err := json.Unmarshal([]byte(strings.TrimSpace(evOut.String())), &ev); err != nil || ev.Type != sadb.EventIndication ||
		ev.Indication.Name != "NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG" || ev.Indication.Record.Esp {
		t.Fatalf("event = %q (%v)", evOut.String(), err)
	}
	if msg := c.fail(1, "sa", "add", "--dir", "in", "--spi", "0x100", "--enc", "aes-gcm-128", "--enc-key", gcmKey(0)); !strings.Contains(msg, "disabled") {
		t.Errorf("add while ESP is disabled: %s", msg)
	}
	c.ok("offload", "set", "--ipsec-v2", "esp-enabled")
	if msg := c.fail(1, "offload", "set", "--ipsec-v2", "ah-enabled"); !strings.Contains(msg, "hardware") {
		t.Errorf("enabling AH on netdevsim: %s", msg)
	}
	c.fail(2, "offload", "set")
	c.fail(2, "offload", "set", "--feature", "tunnel")

	// Fill the table, see the refusal, recover.
	for i := range 33 {
		c.ok("sa", "add", "--name", fmt.Sprintf("b%d", i), "--dir", "in", "--src", "192.0.2.1", "--dst", "192.0.2.2",
			"--spi", fmt.Sprint(0x1000+i), "--enc", "aes-gcm-128", "--enc-key", gcmKey(i))
	}
	msg := c.fail(1, "sa", "add", "--name", "extra", "--dir", "in", "--dst", "192.0.2.2", "--spi", "0x9999", "--enc", "aes-gcm-128", "--enc-key", gcmKey(99))
	for _, want := range []string{"capacity", "33", "delete"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not mention %q", msg, want)
		}
	}
	if out := c.ok("sa", "del", "b5"); !strings.Contains(out, "deleted bundle 6") {
		t.Errorf("sa del output: %s", out)
	}
	c.ok("sa", "add", "--name", "extra", "--dir", "in", "--dst", "192.0.2.2", "--spi", "0x9999", "--enc", "aes-gcm-128", "--enc-key", gcmKey(99))
	c.fail(1, "sa", "del", "b5")

	// list and show; keys only on request.
	list := c.ok("sa", "list")
	if !strings.Contains(list, "33 of 33 SA bundles") || !strings.Contains(list, "extra") || !strings.Contains(list, "aes-gcm-128") {
		t.Errorf("sa list:\n%s", list)
	}
	show := c.ok("sa", "show", "extra")
	if strings.Contains(show, fmt.Sprintf("%040x", 100)) || !strings.Contains(show, "keys_redacted: true") || !strings.Contains(show, "spi: \"0x00009999\"") {
		t.Errorf("sa show without keys:\n%s", show)
	}
	if show := c.ok("sa", "show", "extra", "--keys"); !strings.Contains(show, fmt.Sprintf("%040x", 100)) {
		t.Errorf("sa show --keys lacks the key:\n%s", show)
	}
	var listJSON control.ListSAsResponse
	if err := json.Unmarshal([]byte(c.ok("sa", "list", "--json")), &listJSON); err != nil || len(listJSON.Bundles) != 33 {
		t.Fatalf("sa list --json: %v", err)
	}

	// update: netdevsim has no ESN.
	if msg := c.fail(1, "sa", "update", "extra", "--seq-high", "2"); !strings.Contains(msg, "extended sequence numbers") {
		t.Errorf("update: %s", msg)
	}
	c.fail(2, "sa", "update", "extra")

	// Policies.
	if out := c.ok("policy", "add", "--name", "web", "--dir", "in", "--src", "10.0.0.0/8", "--proto", "tcp", "--dport", "443", "--bundle", "extra"); !strings.Contains(out, "added") {
		t.Errorf("policy add: %s", out)
	}
	pl := c.ok("policy", "list")
	if !strings.Contains(pl, "web") || !strings.Contains(pl, "10.0.0.0/8") || !strings.Contains(pl, "443") {
		t.Errorf("policy list:\n%s", pl)
	}
	c.fail(1, "policy", "add", "--dir", "in", "--bundle", "ghost")
	c.ok("policy", "del", "web")
	if out := c.ok("policy", "list"); !strings.Contains(out, "no policies") {
		t.Errorf("policy list after delete:\n%s", out)
	}

	// Stats.
	b := tb.Snapshot().Bundle(34)
	b.ESP.Account(1000)
	st := c.ok("stats")
	if !strings.Contains(st, "33 of 33 SA bundles") || !strings.Contains(st, "1000") || !strings.Contains(st, "rx_packets") {
		t.Errorf("stats:\n%s", st)
	}

	// Usage errors exit 2.
	c.fail(2, "sa", "show")
	c.fail(2, "nosuchcommand")
	c.fail(2, "sa", "add", "--dir", "in")
}

func TestCLIUpdateFilesAndTunnels(t *testing.T) {
	sock, _ := daemon(t, capabilities.ProfileFull)
	c := cli{t, sock}
	dir := t.TempDir()
	file := filepath.Join(dir, "sas.yaml")
	yml := `sas:
  - name: tr
    dir: out
    esn: true
    esp: {spi: 0x2000, enc: aes-gcm-256, enc_key: "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"}
  - name: tun
    dir: out
    mode: tunnel
    src: 198.51.100.1
    dst: 198.51.100.2
    esp: {spi: 0x2001, enc: aes-cbc-128, auth: hmac-sha256-128, enc_key: "00112233445566778899aabbccddeeff", auth_key: "@notakey"}
`
	if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	// One good bundle, one bad key: NDIS semantics, exit 1 with per-entry results.
	out, errOut, code := c.run("", "sa", "add", "-f", file)
	if code != 1 || !strings.Contains(out, "offloaded") || !strings.Contains(out, "auth_key") || !strings.Contains(errOut, "1 of 2") {
		t.Fatalf("partial add: exit %d\n%s%s", code, out, errOut)
	}
	tun := "name: tun\ndir: out\nmode: tunnel\nsrc: 198.51.100.1\ndst: 198.51.100.2\n" +
		"esp: {spi: 0x2001, enc: aes-cbc-128, auth: hmac-sha256-128, enc_key: \"00112233445566778899aabbccddeeff\", auth_key: \"" + strings.Repeat("ab", 32) + "\"}\n"
	if out, errOut, code := c.run(tun, "sa", "add", "-f", "-"); code != 0 {
		t.Fatalf("add from stdin: exit %d\n%s%s", code, out, errOut)
	}

	// UPDATE_SA on an ESN bundle.
	if out := c.ok("sa", "update", "tr", "--seq-high", "3"); !strings.Contains(out, "ESN high-order bits 3") {
		t.Errorf("update output:\n%s", out)
	}
	var info sadb.BundleInfo
	if err := json.Unmarshal([]byte(c.ok("sa", "show", "tr", "--json")), &info); err != nil || info.SAs[0].SeqHigh != 3 || info.SAs[0].Seq != 3<<32 {
		t.Fatalf("after update: %+v, %v", info.SAs, err)
	}
	c.fail(1, "sa", "update", "tr", "--seq-high", "2") // backwards

	// Transport over tunnel: two bundles, transport first.
	c.ok("policy", "add", "--name", "tot", "--dir", "out", "--dst", "10.0.0.0/8", "--bundle", "tr", "--bundle", "tun")
	c.fail(1, "policy", "add", "--dir", "out", "--bundle", "tun", "--bundle", "tr")

	// show --keys output is a spec that sa add -f reads back.
	exported := c.ok("sa", "show", "tr", "--keys")
	c.ok("sa", "del", "tr")
	if pl := c.ok("policy", "list"); !strings.Contains(pl, "bundle missing") {
		t.Errorf("policy with a deleted bundle:\n%s", pl)
	}
	if out, errOut, code := c.run(exported, "sa", "add", "-f", "-"); code != 0 {
		t.Fatalf("re-adding the exported bundle: exit %d\n%s%s\n--- exported:\n%s", code, out, errOut, exported)
	}
	if pl := c.ok("policy", "list"); strings.Contains(pl, "bundle missing") {
		t.Errorf("policy did not relink the re-added bundle:\n%s", pl)
	}
	// Without --keys the export cannot be added, and says why.
	redacted := c.ok("sa", "show", "tun")
	c.ok("sa", "del", "tun")
	if _, errOut, code := c.run(redacted, "sa", "add", "-f", "-"); code != 1 || !strings.Contains(errOut, "redacted") {
		t.Errorf("adding a redacted export: exit %d %s", code, errOut)
	}
}
