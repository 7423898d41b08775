package sadb

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/saspec"
)

// testKey returns n bytes of recognizable key material.
func testKey(n int, seed byte) saspec.Key {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return saspec.KeyOf(b)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newManager(t testing.TB, profile string) *capabilities.Manager {
	t.Helper()
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: profile})
	if err != nil {
		t.Fatalf("manager for profile %q: %v", profile, err)
	}
	return m
}

func newTable(t testing.TB, profile string) *Table {
	t.Helper()
	tb, err := NewTable(TableConfig{Caps: newManager(t, profile), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tb.Close)
	return tb
}

// gcmSpec is a valid inbound ESP AES-GCM-128 transport bundle.
func gcmSpec(name string, spi uint32, dst string) saspec.BundleSpec {
	return saspec.BundleSpec{
		Name: name, Dir: "in", Src: "192.0.2.1", Dst: dst,
		ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: keyForSPI(20, spi)},
	}
}

// cbcSpec is a valid ESP AES-CBC/HMAC-SHA-256 transport bundle whose keys
// are unique to its SPI (an outbound key serves one SA).
func cbcSpec(name, dir string, spi uint32) saspec.BundleSpec {
	return saspec.BundleSpec{
		Name: name, Dir: dir, Src: "192.0.2.1", Dst: "192.0.2.2",
		ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-cbc-128", Auth: "hmac-sha256-128", EncKey: keyForSPI(16, spi), AuthKey: keyForSPI(32, spi^0xa5a5)},
	}
}

// keyForSPI returns n bytes of key material unique to spi.
func keyForSPI(n int, spi uint32) saspec.Key {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(spi>>(8*(i%4))) ^ byte(i*7+1)
	}
	return saspec.KeyOf(b)
}

// drain returns the events waiting on sub.
func drain(sub *Subscription) []Event {
	var out []Event
	for {
		select {
		case e := <-sub.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

func types(es []Event) []EventType {
	out := make([]EventType, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

func intp(v int) *int { return &v }

// checkErr asserts that err is an *Error for field with the given code.
func checkErr(t *testing.T, err error, field, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a %s error on field %q", code, field)
	}
	var e *saspec.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *sa.Error", err, err)
	}
	if e.Field != field {
		t.Errorf("field = %q, want %q (error: %v)", e.Field, field, err)
	}
	if got := saspec.ErrorCode(err); got != code {
		t.Errorf("code = %q, want %q (error: %v)", got, code, err)
	}
	if len(e.Msg) < 10 {
		t.Errorf("message %q is too terse to tell the user what to fix", e.Msg)
	}
}
