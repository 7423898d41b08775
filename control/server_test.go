package control

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fakeStats struct{}

func (fakeStats) Stats() any { return map[string]uint64{"rx_packets": 7, "tx_packets": 9} }

// testServer starts a server for a fresh table on a unix socket in a new
// temporary directory and returns a client for it.
func testServer(t testing.TB, cfg capabilities.Config) (*Client, *sadb.Table, string, *Server) {
	t.Helper()
	m, err := capabilities.NewManagerFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: m, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Start(ctx)
	srv, err := NewServer(Backend{Table: tb, Stats: fakeStats{}, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	// Short base path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "secnic")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "secnic.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
		cancel()
		tb.Close()
		os.RemoveAll(dir)
	})
	return NewClient(sock), tb, sock, srv
}

func gcm(name string, spi uint32) saspec.BundleSpec {
	key := make([]byte, 20)
	for i := range key {
		key[i] = byte(spi) + byte(i)
	}
	return saspec.BundleSpec{Name: name, Dir: "in", Dst: "192.0.2.2", ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}}
}

func apiCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an API error", err)
	}
	return ae.Status, ae.Code
}

func TestServerEndToEnd(t *testing.T) {
	c, tb, sock, _ := testServer(t, capabilities.Config{Profile: capabilities.ProfileNetdevsim})
	ctx := context.Background()

	// The socket is private.
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, %v", fi.Mode(), err)
	}
	if di, _ := os.Stat(filepath.Dir(sock)); di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v", di.Mode().Perm())
	}

	if h, err := c.Health(ctx); err != nil || h.Status != "ok" || h.Profile != "netdevsim" {
		t.Fatalf("health = %+v, %v", h, err)
	}

	// Capabilities in every view.
	caps, err := c.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if caps.Capacity != 33 || caps.Setting != "ESP_ENABLED" || len(caps.Hardware.NDIS) == 0 || len(caps.Linux) != 3 {
		t.Errorf("capabilities = %+v", caps)
	}
	bin, err := hex.DecodeString(caps.Current.Binary)
	if err != nil || len(bin) != capabilities.BinarySize {
		t.Errorf("binary view %q: %v", caps.Current.Binary, err)
	}
	var rec capabilities.Record
	if err := rec.UnmarshalBinary(bin); err != nil || rec.SaOffloadCapacity != 33 || !rec.Esp {
		t.Errorf("binary view decodes to %+v, %v", rec, err)
	}

	// Events: offload parameters change, the indication arrives on the stream.
	evs := make(chan sadb.Event, 64)
	ectx, ecancel := context.WithCancel(ctx)
	defer ecancel()
	go func() {
		_ = c.Events(ectx, func(e sadb.Event) error { evs <- e; return nil })
		close(evs)
	}()
	waitEvent(t, evs, sadb.EventSubscribed)
	resp, err := c.SetOffload(ctx, OffloadRequest{IPsecV2: "disabled"})
	if err != nil || !resp.Changed || resp.Setting != "DISABLED" || resp.Current.Esp {
		t.Fatalf("offload set = %+v, %v", resp, err)
	}
	ind := waitEvent(t, evs, sadb.EventIndication)
	if ind.Indication.Status != capabilities.StatusTaskOffloadCurrentConfig || ind.Indication.Record.Esp {
		t.Errorf("indication = %+v", ind.Indication)
	}
	// With ESP disabled, adds are refused as disabled.
	if _, err := c.AddSAs(ctx, []saspec.BundleSpec{gcm("x", 0x100)}); err == nil {
		t.Error("add with ESP disabled succeeded")
	} else if st, code := apiCode(t, err); st != http.StatusConflict || code != "disabled" {
		t.Errorf("add with ESP disabled: %d %s", st, code)
	}
	if _, err := c.SetOffload(ctx, OffloadRequest{IPsecV2: "3"}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evs, sadb.EventIndication)
	// Unsupported and invalid offload requests change nothing.
	for _, req := range []OffloadRequest{
		{IPsecV2: "ah-enabled"},
		{IPsecV2: "7"},
		{Toggles: []Toggle{{Feature: "tunnel", On: false}, {Encryption: "aes-cbc-128", On: true}}},
		{Toggles: []Toggle{{Feature: "tunnel", Encryption: "null", On: true}}},
		{},
	} {
		if _, err := c.SetOffload(ctx, req); err == nil {
			t.Errorf("offload %+v accepted", req)
		}
	}
	if cur := tb.Caps().Current(); !cur.Tunnel {
		t.Error("a refused offload request applied part of its toggles")
	}

	// Fill the table to its capacity.
	var specs []saspec.BundleSpec
	for i := range 33 {
		specs = append(specs, gcm("", uint32(0x1000+i)))
	}
	add, err := c.AddSAs(ctx, specs)
	if err != nil || add.Offloaded != 33 || add.Failed != 0 {
		t.Fatalf("add 33: %+v, %v", add, err)
	}
	waitEvent(t, evs, sadb.EventSAAdded)
	_, err = c.AddSAs(ctx, []saspec.BundleSpec{gcm("full", 0x2000)})
	if st, code := apiCode(t, err); st != http.StatusInsufficientStorage || code != "capacity" || !strings.Contains(err.Error(), "33") {
		t.Fatalf("add beyond capacity: %d %s %v", st, code, err)
	}
	// Several bundles, none offloaded: per-entry results in the error.
	_, err = c.AddSAs(ctx, []saspec.BundleSpec{gcm("a", 0x2001), gcm("b", 0x2002)})
	var ae *APIError
	if !errors.As(err, &ae) || len(ae.Results) == 0 {
		t.Fatalf("multi add beyond capacity: %v", err)
	}

	// Delete one, add again.
	first := add.Results[0].Handle
	del, err := c.DeleteSAs(ctx, "1")
	if err != nil || del.Deleted != 1 || del.Results[0].Handle != first {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	add, err = c.AddSAs(ctx, []saspec.BundleSpec{gcm("named", 0x2000)})
	if err != nil || add.Offloaded != 1 {
		t.Fatalf("add after delete: %+v %v", add, err)
	}
	if _, err := c.DeleteSAs(ctx, "no-such"); err == nil {
		t.Error("deleting an unknown bundle succeeded")
	} else if st, code := apiCode(t, err); st != http.StatusNotFound || code != "not_found" {
		t.Errorf("delete unknown: %d %s", st, code)
	}

	// Show and list, with and without keys.
	keyHex := gcm("named", 0x2000).ESP.EncKey.Hex()
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/v1/sas/named", nil, &raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), keyHex) || !strings.Contains(string(raw), "keys_redacted") {
		t.Errorf("show without keys: %s", raw)
	}
	if err := c.do(ctx, http.MethodGet, "/v1/sas", nil, &raw); err != nil || strings.Contains(string(raw), keyHex) {
		t.Errorf("list without keys leaks: %v", err)
	}
	info, err := c.ShowSA(ctx, "named", true)
	if err != nil || info.Spec.ESP.EncKey.Hex() != keyHex {
		t.Errorf("show with keys: %v", err)
	}
	list, err := c.ListSAs(ctx, false)
	if err != nil || len(list.Bundles) != 33 || list.Usage.Bundles != 33 || list.Capacity != 33 {
		t.Errorf("list: %d bundles, usage %+v, %v", len(list.Bundles), list.Usage, err)
	}

	// Update: netdevsim has no ESN, so UPDATE_SA is refused as NDIS says.
	if _, err := c.UpdateSA(ctx, "named", saspec.UpdateSpec{SeqHigh: 1}); err == nil {
		t.Error("update of a non-ESN SA succeeded")
	} else if st, code := apiCode(t, err); st != http.StatusBadRequest || code != "invalid" {
		t.Errorf("update non-ESN: %d %s", st, code)
	}

	// Policies.
	pol, err := c.AddPolicies(ctx, []saspec.PolicySpec{{Name: "p", Dir: "in", Src: "10.0.0.0/8", Bundles: []saspec.Ref{"named"}}})
	if err != nil || pol.Added != 1 {
		t.Fatalf("policy add: %+v, %v", pol, err)
	}
	pl, err := c.ListPolicies(ctx)
	if err != nil || len(pl.Policies) != 1 || !pl.Policies[0].Complete {
		t.Errorf("policy list: %+v, %v", pl, err)
	}
	if _, err := c.AddPolicies(ctx, []saspec.PolicySpec{{Dir: "in", Bundles: []saspec.Ref{"ghost"}}}); err == nil {
		t.Error("policy linking an unknown bundle accepted")
	}
	if d, err := c.DeletePolicy(ctx, "p"); err != nil || d.ID != pol.Results[0].ID {
		t.Errorf("policy delete: %+v, %v", d, err)
	}

	// Stats with the NIC's own.
	st, err := c.Stats(ctx)
	if err != nil || len(st.Table.SAs) != 33 || !strings.Contains(string(st.NIC), "rx_packets") {
		t.Errorf("stats: %+v, %v", st, err)
	}
}

func waitEvent(t *testing.T, ch <-chan sadb.Event, want sadb.EventType) sadb.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("event stream ended before %s", want)
			}
			if e.Type == want {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event", want)
		}
	}
}

func TestErrorResponses(t *testing.T) {
	tb, err := sadb.NewTable(sadb.TableConfig{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	srv, err := NewServer(Backend{Table: tb, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	// An outbound SA in use: its key may not serve a second one.
	inUse := `{"dir":"out","dst":"192.0.2.2","esp":{"spi":8192,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`
	if rec := httptest.NewRecorder(); true {
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sas", strings.NewReader(inUse)))
		if rec.Code != 200 && rec.Code != 201 {
			t.Fatalf("setup add: %d %s", rec.Code, rec.Body)
		}
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown endpoint", "GET", "/v2/things", "", 404, "not_found", ""},
		{"wrong method", "PUT", "/v1/sas", "", 405, "method_not_allowed", ""},
		{"empty body", "POST", "/v1/sas", "", 400, "invalid", ""},
		{"malformed JSON", "POST", "/v1/sas", `{"dir":`, 400, "invalid", ""},
		{"unknown field", "POST", "/v1/sas", `{"dir":"in","colour":"red"}`, 400, "invalid", ""},
		{"validation field", "POST", "/v1/sas", `{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"zz"}}`, 400, "invalid", "esp.enc_key"},
		{"key length", "POST", "/v1/sas", `{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"00"}}`, 400, "invalid", "esp.enc_key"},
		{"unknown bundle", "GET", "/v1/sas/42", "", 404, "not_found", ""},
		{"bad keys flag", "GET", "/v1/sas?keys=maybe", "", 400, "invalid", ""},
		{"key in use", "POST", "/v1/sas", strings.Replace(inUse, "8192", "8193", 1), 409, "key_reuse", "esp.enc_key"},
		{"update unknown", "POST", "/v1/sas/nope/update", `{"seq_high":1}`, 404, "not_found", ""},
		{"delete nothing", "POST", "/v1/sas/delete", `{"refs":[]}`, 400, "invalid", ""},
		{"policy invalid", "POST", "/v1/policies", `{"dir":"out","action":"teleport"}`, 400, "invalid", "action"},
		{"policy unknown", "DELETE", "/v1/policies/9", "", 404, "not_found", ""},
		{"offload bad value", "POST", "/v1/offload", `{"ipsec_v2":"sideways"}`, 400, "invalid", "ipsec_v2"},
		{"offload unknown feature", "POST", "/v1/offload", `{"toggles":[{"feature":"warp","on":true}]}`, 400, "invalid", "toggles[0]"},
		{"events bad buffer", "GET", "/v1/events?buffer=0", "", 400, "invalid", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
			if rec.Code != c.status {
				t.Errorf("status = %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var e ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("error body is not JSON: %q", rec.Body)
			}
			if e.Code != c.code || e.Field != c.field || len(e.Error) < 10 {
				t.Errorf("error = %+v, want code %q field %q", e, c.code, c.field)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
}

func TestListen(t *testing.T) {
	dir, err := os.MkdirTemp("", "secnic")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s.sock")

	// A stale socket (nobody listening) is replaced.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l, err = Listen(sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	// A live one is not.
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("second Listen: %v", err)
	}
	l.Close()
	// A regular file is not removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a file: %v", err)
	}
}

func TestEventStreamEndsOnShutdown(t *testing.T) {
	c, _, _, srv := testServer(t, capabilities.Config{})
	got := make(chan error, 1)
	subscribed := make(chan struct{})
	go func() {
		got <- c.Events(context.Background(), func(e sadb.Event) error {
			if e.Type == sadb.EventSubscribed {
				close(subscribed)
			}
			return nil
		})
	}()
	<-subscribed
	// Shutdown must end the stream (and not wait for it); Events returns
	// nil when the daemon closes the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open event stream: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("Events after shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Error("event stream still open after shutdown")
	}
}

func TestAddSAsRawForms(t *testing.T) {
	c, _, _, _ := testServer(t, capabilities.Config{})
	ctx := context.Background()
	docs := []string{
		`{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`,
		`[{"dir":"in","esp":{"spi":4097,"enc":"aes-gcm-128","enc_key":"0102030405060708090a0b0c0d0e0f1011121314"}}]`,
		`{"sas":[{"dir":"out","esp":{"spi":"0x1002","enc":"aes-gcm-128","enc_key":"01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14"}}]}`,
	}
	for _, d := range docs {
		if r, err := c.AddSAsRaw(ctx, []byte(d)); err != nil || r.Offloaded != 1 {
			t.Errorf("%s: %+v, %v", d, r, err)
		}
	}
	// Partial success: 201 with per-entry results.
	r, err := c.AddSAsRaw(ctx, []byte(`{"sas":[{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}},
		{"dir":"in","esp":{"spi":5000,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}]}`))
	if err != nil || r.Offloaded != 1 || r.Failed != 1 || r.Results[0].Code != "conflict" {
		t.Errorf("partial: %+v, %v", r, err)
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(r)
	if !strings.Contains(buf.String(), `"index": 0`) && !strings.Contains(buf.String(), `"index":0`) {
		t.Errorf("results lack indexes: %s", buf.String())
	}
}

// TestShutdownBeforeServe: a Shutdown that comes before Serve makes Serve
// return at once instead of serving forever.
func TestShutdownBeforeServe(t *testing.T) {
	tb, err := sadb.NewTable(sadb.TableConfig{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	s, err := NewServer(Backend{Table: tb, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve after Shutdown: %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve after Shutdown did not return")
	}
}
