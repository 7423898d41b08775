package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// emptyEntries is a JSON list of n empty objects, the body that once took
// the daemon to 2 GB.
func emptyEntries(n int) []byte {
	var b bytes.Buffer
	b.Grow(3*n + 2)
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("{}")
	}
	b.WriteByte(']')
	return b.Bytes()
}

// post sends body to path on h and returns the recorder and the bytes
// allocated while the request was served.
func post(t *testing.T, h http.Handler, path string, body []byte) (*httptest.ResponseRecorder, uint64) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	runtime.ReadMemStats(&after)
	checkAnswer(t, rec)
	return rec, after.TotalAlloc - before.TotalAlloc
}

func TestHostileBodiesAreBounded(t *testing.T) {
	h, _ := fuzzHandler(t)
	longName := strings.Repeat("n", 200<<10)
	cases := []struct {
		name, path string
		body       []byte
		want       string
		maxReply   int
		maxAlloc   uint64
	}{
		{"4 MB of empty entries", "/v1/sas", emptyEntries(4 << 20 / 3), "larger than", 1 << 10, 64 << 20},
		{"1 MB of empty entries", "/v1/sas", emptyEntries(1 << 20 / 3), "the request has more than 1024 entries", 1 << 10, 32 << 20},
		{"sas key with too many", "/v1/sas", []byte(`{"sas":` + string(emptyEntries(MaxEntries+1)) + `}`), "sas has more than 1024", 1 << 10, 8 << 20},
		{"too many refs", "/v1/sas/delete", []byte(`{"refs":[` + strings.Repeat(`"a",`, MaxEntries) + `"a"]}`), "refs has more than", 1 << 10, 8 << 20},
		{"too many policies", "/v1/policies", emptyEntries(MaxEntries + 1), "more than 1024", 1 << 10, 8 << 20},
		{"200 KB name", "/v1/sas", []byte(`{"name":"` + longName + `","dir":"in"}`), "name is 204800 bytes", 512, 8 << 20},
		{"200 KB field name", "/v1/sas", []byte(`{"` + longName + `":1}`), "field name of 204800 bytes", 512, 8 << 20},
		{"200 KB YAML name", "/v1/sas", []byte("name: " + longName + "\n"), "name is 204800 bytes", 512, 16 << 20},
		{"deep nesting", "/v1/sas", []byte(strings.Repeat("[", 1000) + strings.Repeat("]", 1000)), "nested more than", 1 << 10, 8 << 20},
		{"200-byte invalid name", "/v1/sas", []byte(`{"name":"` + strings.Repeat("n", 200) + `!","dir":"in"}`), "is not a valid name", 512, 8 << 20},
		{"200-byte invalid address", "/v1/sas", []byte(`{"dir":"in","dst":"` + strings.Repeat("n", 200) + `"}`), "is not an IP address", 512, 8 << 20},
		{"200-byte invalid policy prefix", "/v1/policies", []byte(`{"dir":"in","src":"` + strings.Repeat("n", 200) + `"}`), "is not an address or prefix", 512, 8 << 20},
		{"200 KB offload value", "/v1/offload", []byte(`{"ipsec_v2":"` + longName + `"}`), "ipsec_v2 is 204800 bytes", 512, 8 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, alloc := post(t, h, c.path, c.body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %.300s", rec.Code, rec.Body)
			}
			if !strings.Contains(rec.Body.String(), c.want) {
				t.Errorf("reply %.300s does not say %q", rec.Body, c.want)
			}
			if rec.Body.Len() > c.maxReply {
				t.Errorf("reply is %d bytes, want at most %d", rec.Body.Len(), c.maxReply)
			}
			if alloc > c.maxAlloc {
				t.Errorf("serving a %d-byte body allocated %d bytes, want at most %d", len(c.body), alloc, c.maxAlloc)
			}
			if strings.Contains(rec.Body.String(), strings.Repeat("n", QuoteBytes+1)) {
				t.Errorf("reply quotes more than %d bytes of the input", QuoteBytes)
			}
			t.Logf("%d-byte body: %d-byte reply, %d bytes allocated", len(c.body), rec.Body.Len(), alloc)
		})
	}
}

func TestRefusedBatchListsTenErrors(t *testing.T) {
	h, _ := fuzzHandler(t)
	rec, _ := post(t, h, "/v1/sas", emptyEntries(MaxEntries))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d: %.300s", rec.Code, rec.Body)
	}
	var e ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("and %d more entries failed", MaxEntries-10); !strings.Contains(e.Error, want) {
		t.Errorf("message %.500s does not summarize with %q", e.Error, want)
	}
	if n := strings.Count(e.Error, "sas["); n != 10 {
		t.Errorf("message lists %d entries, want 10", n)
	}
	if len(e.Error) > 4<<10 {
		t.Errorf("message is %d bytes", len(e.Error))
	}
	var res []sadb.AddResult
	if err := json.Unmarshal(e.Results, &res); err != nil || len(res) != MaxEntries {
		t.Errorf("results: %d entries, %v", len(res), err)
	}
	// A request at the limit of real size is accepted.
	specs := make([]saspec.BundleSpec, 0, MaxEntries)
	for i := range MaxEntries {
		s := gcm(fmt.Sprintf("b%d", i), uint32(0x1000+i))
		s.ESP.Enc, s.ESP.EncKey = "aes-gcm-256", saspec.KeyOf(bytes.Repeat([]byte{byte(i) | 1}, 36))
		specs = append(specs, s)
	}
	body, err := json.MarshalIndent(map[string]any{"sas": specs}, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > MaxBodyBytes {
		t.Fatalf("%d real bundles take %d bytes, more than MaxBodyBytes", MaxEntries, len(body))
	}
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: capabilities.ProfileFull})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: m, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Backend{Table: tb, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rec, _ = post(t, srv.Handler(), "/v1/sas", body)
	if rec.Code != http.StatusCreated {
		t.Fatalf("%d real bundles (%d bytes): status %d: %.300s", MaxEntries, len(body), rec.Code, rec.Body)
	}
	t.Logf("%d bundles, pretty printed: %d bytes", MaxEntries, len(body))
}

// limitedServer serves a fresh table with the given limits.
func limitedServer(t *testing.T, lim Limits) (string, *Client) {
	t.Helper()
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: capabilities.ProfileNetdevsim})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Caps: m, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Start(ctx)
	srv, err := NewServer(Backend{Table: tb, Logger: quiet(), Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "secnic")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		<-done
		cancel()
		tb.Close()
		os.RemoveAll(dir)
	})
	return sock, NewClient(sock)
}

// trickle writes data one byte every interval until the server closes the
// connection, and returns how long that took.
func trickle(t *testing.T, sock, data string, interval, max time.Duration) time.Duration {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c)
		close(closed)
	}()
	for i := 0; ; i++ {
		select {
		case <-closed:
			return time.Since(start)
		case <-time.After(interval):
		}
		if time.Since(start) > max {
			t.Fatalf("a trickling client is still connected after %v", max)
		}
		if _, err := c.Write([]byte{data[i%len(data)]}); err != nil {
			return time.Since(start)
		}
	}
}

func TestSlowClientsAreCutOff(t *testing.T) {
	sock, client := limitedServer(t, Limits{HeaderTimeout: 300 * time.Millisecond, ReadTimeout: 600 * time.Millisecond, WriteTimeout: time.Second, IdleTimeout: 500 * time.Millisecond, MaxConns: 2})
	// Headers a byte at a time.
	if d := trickle(t, sock, "GET /v1/health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 20*time.Millisecond, 5*time.Second); d > 3*time.Second {
		t.Errorf("header trickle held for %v", d)
	}
	// A body a byte at a time.
	if d := trickle(t, sock, "POST /v1/sas HTTP/1.1\r\nHost: secnic\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("[", 100), 5*time.Millisecond, 5*time.Second); d > 3*time.Second {
		t.Errorf("body trickle held for %v", d)
	}
	// Connections that send nothing take the slots; others wait, and get
	// in once the silent ones are cut off.
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := client.Health(ctx)
	cancel()
	if err == nil {
		t.Errorf("a third connection was served while two held both slots")
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Health(ctx); err != nil {
		t.Fatalf("health after the silent connections timed out: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("waited %v for a slot", d)
	}
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("a silent connection was not closed: %v", err)
		}
	}
}

func TestEventStreamOutlivesRequestTimeouts(t *testing.T) {
	_, client := limitedServer(t, Limits{HeaderTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan sadb.Event, 8)
	done := make(chan error, 1)
	go func() {
		done <- client.Events(ctx, func(e sadb.Event) error {
			got <- e
			if e.Type == sadb.EventSAAdded {
				return ErrStopEvents
			}
			return nil
		})
	}()
	if e := <-got; e.Type != sadb.EventSubscribed {
		t.Fatalf("first event %v", e.Type)
	}
	time.Sleep(700 * time.Millisecond) // longer than every timeout
	if _, err := client.AddSAs(ctx, []saspec.BundleSpec{gcm("late", 0x500)}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case e := <-got:
			if e.Type == sadb.EventSAAdded {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				return
			}
		case err := <-done:
			for len(got) > 0 {
				if e := <-got; e.Type == sadb.EventSAAdded && err == nil {
					return
				}
			}
			t.Fatalf("the stream ended before the event: %v", err)
		case <-ctx.Done():
			t.Fatal("no event")
		}
	}
}

func TestQuote(t *testing.T) {
	if q := Quote("short"); q != `"short"` {
		t.Errorf("Quote(short) = %s", q)
	}
	long := strings.Repeat("é", 100)
	q := Quote(long)
	if !strings.HasSuffix(q, "... (200 bytes)") || len(q) > QuoteBytes+20 {
		t.Errorf("Quote(long) = %s", q)
	}
}

func TestLongPathsAreNotEchoed(t *testing.T) {
	h, _ := fuzzHandler(t)
	long := strings.Repeat("n", 8000)
	for _, c := range []struct{ method, path, want string }{
		{http.MethodGet, "/v1/sas/" + long, "the reference"},
		{http.MethodDelete, "/v1/sas/" + long, "the reference"},
		{http.MethodPost, "/v1/sas/" + long + "/update", "the reference"},
		{http.MethodGet, "/v1/policies/" + long, "the reference"},
		{http.MethodDelete, "/v1/policies/" + long, "the reference"},
		{http.MethodGet, "/v1/" + long, "no endpoint"},
		{http.MethodGet, "/v1/sas?keys=" + long, "is not a boolean"},
		{http.MethodGet, "/v1/events?buffer=" + long, "must be a number"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(`{"seq_high":1}`)))
		checkAnswer(t, rec)
		if rec.Code < 400 || !strings.Contains(rec.Body.String(), c.want) || rec.Body.Len() > 512 || strings.Contains(rec.Body.String(), strings.Repeat("n", QuoteBytes+1)) {
			t.Errorf("%s %.40s...: %d, %d bytes: %.300s", c.method, c.path, rec.Code, rec.Body.Len(), rec.Body)
		}
	}
}
