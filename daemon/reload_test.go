package daemon

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/secnic/secnic/control"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// tableState is what must not change across a refused reload: every
// bundle's handle, name, SPIs and sequence numbers, and the policies.
func tableState(d *Daemon) string {
	var b strings.Builder
	for _, bi := range d.Table().List(false) {
		b.WriteString(bi.Spec.String())
		for _, s := range bi.SAs {
			b.WriteString(" seq=" + strings.Repeat("|", int(s.Seq)))
		}
		b.WriteString("\n")
	}
	for _, p := range d.Table().Policies() {
		b.WriteString(p.Spec.String() + "\n")
	}
	return b.String()
}

func names(bs []sadb.BundleInfo) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Spec.Name)
	}
	slices.Sort(out)
	return out
}

const extraSA = `
  - name: out2
    dir: out
    mode: tunnel
    src: 192.0.2.1
    dst: 192.0.2.3
    esp: {spi: 0x1002, enc: aes-cbc-128, auth: hmac-sha256-128, enc_key: "0x202122232425262728292a2b2c2d2e2f", auth_key: "0x303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f"}
`

func TestReload(t *testing.T) {
	base := func(side, cable, dir string) string { return sideYAML(side, cable, dir) }
	withSA := func(y, sas string) string {
		return strings.Replace(y, "policies:", strings.TrimPrefix(sas, "\n")+"policies:", 1)
	}
	tests := []struct {
		name string
		// next returns the new configuration from the current one.
		next      func(cur string) string
		apiFirst  bool // add an API bundle with SPI 0x3001 before reloading
		wantErr   string
		added     []string
		replaced  []string
		deleted   []string
		unchanged []string
		log       string // a line the log must contain
	}{
		{name: "same-file", next: func(c string) string { return c }, unchanged: []string{"in1", "out1"}},
		{name: "add-bundle", next: func(c string) string { return withSA(c, extraSA) },
			added: []string{"out2"}, unchanged: []string{"in1", "out1"}},
		{name: "delete-bundle-and-policy", next: func(c string) string {
			c = strings.Replace(c, "  - {name: p-in, dir: in, src: 10.2.0.0/16, dst: 10.1.0.0/16, bundles: [in1]}\n", "", 1)
			i := strings.Index(c, "  - name: in1")
			j := strings.Index(c, "policies:")
			return c[:i] + c[j:]
		}, deleted: []string{"in1"}, unchanged: []string{"out1"}},
		{name: "replace-with-new-keys", next: func(c string) string {
			c = strings.Replace(c, "spi: 0x1001, enc: aes-gcm-128, enc_key: \""+keyAB+"\"", "spi: 0x1101, enc: aes-gcm-256, enc_key: \"0x"+strings.Repeat("ab", 36)+"\"", 1)
			return c
		}, replaced: []string{"out1"}, unchanged: []string{"in1"}},
		{name: "log-level", next: func(c string) string { return strings.Replace(c, "log_level: debug", "log_level: warn", 1) },
			unchanged: []string{"in1", "out1"}, log: "log level changed"},
		{name: "restart-only-section", next: func(c string) string { return c + "encap_port: 4501\n" },
			unchanged: []string{"in1", "out1"}, log: "encap_port"},
		{name: "invalid-file", next: func(c string) string { return c + "bogus: 1\n" }, wantErr: "unknown field"},
		{name: "bad-key", next: func(c string) string { return withSA(c, strings.Replace(extraSA, "0x2021", "0x21", 1)) }, wantErr: "sas[2]"},
		{name: "spi-clash-with-api", apiFirst: true, next: func(c string) string {
			return withSA(c, strings.Replace(extraSA, "spi: 0x1002", "spi: 0x3001", 1))
		}, wantErr: `sas[2] ("out2"): esp.spi: esp SPI 0x00003001 for destination 192.0.2.3 (out) is already used by bundle 3 ("api1", added through the API)`},
		{name: "name-clash-with-api", apiFirst: true, next: func(c string) string {
			return withSA(c, strings.Replace(extraSA, "name: out2", "name: api1", 1))
		}, wantErr: "api1"},
		// Renaming an outbound bundle re-adds the same SA (same SPI,
		// algorithm and endpoints): its sequence numbers go on.
		{name: "rename-continues", next: func(c string) string {
			c = strings.Replace(c, "name: out1", "name: out1b", 1)
			return strings.Replace(c, "bundles: [out1]", "bundles: [out1b]", 1)
		}, added: []string{"out1b"}, deleted: []string{"out1"}, unchanged: []string{"in1"}},
		// Keeping the keys of an outbound SA under another SPI would repeat
		// nonces: refused, with the key_reuse error of the table.
		{name: "key-reuse-new-spi", next: func(c string) string { return strings.Replace(c, "spi: 0x1001,", "spi: 0x1009,", 1) },
			wantErr: "already used by outbound esp SPI 0x00001001"},
		// A second outbound SA with the keys of one in use: refused.
		{name: "key-reuse-second-sa", next: func(c string) string {
			return withSA(c, strings.Replace(strings.Replace(extraSA, "enc: aes-cbc-128, auth: hmac-sha256-128, enc_key: \"0x202122232425262728292a2b2c2d2e2f\", auth_key: \"0x303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f\"", "enc: aes-gcm-128, enc_key: \""+keyAB+"\"", 1), "dst: 192.0.2.3", "dst: 192.0.2.2", 1))
		}, wantErr: "already used by outbound"},
		// Changing an outbound bundle but keeping its keys and SPI (here its
		// lifetime) replaces it and continues its sequence numbers.
		{name: "keys-kept-on-change", next: func(c string) string {
			return strings.Replace(c, "    esp: {spi: 0x1001,", "    ttl: 32\n    esp: {spi: 0x1001,", 1)
		}, replaced: []string{"out1"}, unchanged: []string{"in1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cable := uniqueCable()
			path := filepath.Join(dir, "a.yaml")
			cur := base("a", cable, dir)
			if err := os.WriteFile(path, []byte(cur), 0o600); err != nil {
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
			b, _ := startSide(t, "b", cable, dir)
			// Traffic, so that sequence numbers and counters have moved.
			pkt := udp4("10.1.0.1", "10.2.0.1", []byte("x"))
			sendAndReceive(t, d.HostPeer(), b.HostPeer(), pkt)
			if tc.apiFirst {
				spec, err := saspec.DecodeBundleSpecs([]byte(strings.Replace(strings.Replace(extraSA, "name: out2", "name: api1", 1), "spi: 0x1002", "spi: 0x3001", 1)))
				if err != nil {
					t.Fatal(err)
				}
				spec[0].ESP.EncKey, _ = saspec.ParseKey("0x" + strings.Repeat("77", 16))
				if _, err := d.Table().Add(spec[0]); err != nil {
					t.Fatal(err)
				}
			}
			next := tc.next(cur)
			if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
				t.Fatal(err)
			}
			before := tableState(d)
			sum, err := d.ReloadFile()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("reload: %v, want an error mentioning %q", err, tc.wantErr)
				}
				if after := tableState(d); after != before {
					t.Errorf("a refused reload changed the table:\nbefore\n%s\nafter\n%s", before, after)
				}
				if !strings.Contains(logs.String(), "reload refused") {
					t.Errorf("the refusal was not logged:\n%s", logs.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"added", sum.SAs.Added, tc.added}, {"replaced", sum.SAs.Replaced, tc.replaced},
				{"deleted", sum.SAs.Deleted, tc.deleted}, {"unchanged", sum.SAs.Unchanged, tc.unchanged},
			} {
				slices.Sort(c.got)
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
				}
			}
			// A replacement or re-add under the same keys goes on from the
			// old sequence number (1), so the next packet does not reuse nonce 1.
			if tc.name == "keys-kept-on-change" || tc.name == "rename-continues" {
				ref := "out1"
				if tc.name == "rename-continues" {
					ref = "out1b"
				}
				bi, err := d.Table().Get(ref, false)
				if err != nil || bi.SAs[0].Seq < 1 {
					t.Errorf("replaced out1 with the same keys restarted its sequence: %+v, %v", bi.SAs, err)
				}
			}
			// Unchanged bundles kept their state: out1's sequence number
			// is still 1.
			if slices.Contains(tc.unchanged, "out1") {
				bi, err := d.Table().Get("out1", false)
				if err != nil || bi.SAs[0].Seq != 1 || bi.SAs[0].Counters.Packets != 1 {
					t.Errorf("out1 after reload: %+v, %v", bi.SAs, err)
				}
			}
			if tc.log != "" && !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs.String())
			}
			if !strings.Contains(logs.String(), "configuration reloaded") {
				t.Errorf("no reload summary in the log")
			}
		})
	}
}

func TestReloadWithoutFile(t *testing.T) {
	dir := t.TempDir()
	d, _ := startSide(t, "a", uniqueCable(), dir)
	if _, err := d.ReloadFile(); err != ErrNoConfigFile {
		t.Errorf("ReloadFile: %v, want ErrNoConfigFile", err)
	}
}

// TestRunFileSignals runs the daemon as `secnic run` does and drives it
// with SIGHUP: a good change is applied, a bad file is refused, and
// cancelling the context shuts it down and removes the socket.
func TestRunFileSignals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secnic.yaml")
	cfg := sideYAML("a", uniqueCable(), dir)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// A stand-in for systemd's notification socket.
	nsock := filepath.Join(dir, "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	var notes []string
	notesDone := make(chan struct{})
	go func() {
		defer close(notesDone)
		buf := make([]byte, 4096)
		for {
			n, err := nconn.Read(buf)
			if err != nil {
				return
			}
			notes = append(notes, string(buf[:n]))
			if strings.HasPrefix(string(buf[:n]), "STOPPING=1") {
				return
			}
		}
	}()
	t.Setenv("NOTIFY_SOCKET", nsock)

	log, logs := newLog()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunFile(ctx, path, log) }()

	sock := filepath.Join(dir, "a", "ctl.sock")
	cl := control.NewClient(sock)
	wait := func(what string, cond func() bool) {
		t.Helper()
		for range 1000 { // watchdog: 10s
			if cond() {
				return
			}
			select {
			case err := <-done:
				t.Fatalf("daemon exited while waiting for %s: %v\n%s", what, err, logs.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
	}
	listNames := func() []string {
		r, err := cl.ListSAs(ctx, false)
		if err != nil {
			return nil
		}
		return names(r.Bundles)
	}
	wait("the control socket", func() bool { return len(listNames()) == 2 })

	// A good change.
	if err := os.WriteFile(path, []byte(strings.Replace(cfg, "policies:", strings.TrimPrefix(extraSA, "\n")+"policies:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("the reload", func() bool { return slices.Equal(listNames(), []string{"in1", "out1", "out2"}) })

	// A bad file: refused, nothing changes, the daemon keeps running.
	if err := os.WriteFile(path, []byte("wire: {type: carrier-pigeon}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("the refusal", func() bool { return strings.Contains(logs.String(), "reload refused") })
	if got := listNames(); !slices.Equal(got, []string{"in1", "out1", "out2"}) {
		t.Errorf("after a refused reload: %v", got)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunFile: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunFile did not return after cancel")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	for _, want := range []string{"SIGHUP: reloading", "configuration reloaded", "secnic daemon stopped"} {
		if !bytes.Contains([]byte(logs.String()), []byte(want)) {
			t.Errorf("log lacks %q", want)
		}
	}
	// The last message (STOPPING=1) may still be queued on the socket:
	// the reader stops after it; closing the socket would discard it.
	select {
	case <-notesDone:
	case <-time.After(5 * time.Second):
		nconn.Close()
		<-notesDone
	}
	all := strings.Join(notes, "|")
	for _, want := range []string{"READY=1\nSTATUS=running", "RELOADING=1\nMONOTONIC_USEC=", "STOPPING=1"} {
		if !strings.Contains(all, want) {
			t.Errorf("sd_notify messages lack %q: %q", want, notes)
		}
	}
}
