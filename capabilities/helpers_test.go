package capabilities

import (
	"errors"
	"strings"
	"testing"
)

// mustProfile returns the hardware record of a profile.
func mustProfile(t *testing.T, name string) Record {
	t.Helper()
	p, err := LookupProfile(name)
	if err != nil {
		t.Fatalf("LookupProfile(%q): %v", name, err)
	}
	return p.Hardware
}

// mustManager returns a Manager for a profile with optional overrides.
func mustManager(t *testing.T, c Config) *Manager {
	t.Helper()
	m, err := NewManagerFromConfig(c)
	if err != nil {
		t.Fatalf("NewManagerFromConfig(%+v): %v", c, err)
	}
	return m
}

// checkErr fails unless err matches kind (nil: no error) and, if kind is not
// nil, err's text contains every fragment.
func checkErr(t *testing.T, err error, kind error, fragments ...string) {
	t.Helper()
	if kind == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is not a *capabilities.Error", err)
	}
	if !strings.HasPrefix(err.Error(), "capabilities: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

// drain returns the indications waiting on s without blocking. Managers
// deliver synchronously, so after a call returns its indications are
// already in the channel.
func drain(s *Subscription) []Indication {
	var out []Indication
	for {
		select {
		case ind, ok := <-s.C:
			if !ok {
				return out
			}
			out = append(out, ind)
		default:
			return out
		}
	}
}

func ptr[T any](v T) *T { return &v }
