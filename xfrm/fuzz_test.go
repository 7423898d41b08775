package xfrm

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzParse feeds untrusted lines to the grammar: parsing never panics,
// and whatever ParseState accepts is a bundle the table validates or
// refuses with an error, never a panic.
func FuzzParse(f *testing.F) {
	for _, l := range append(append([]string{}, selftestLines...), tunnelLines...) {
		f.Add(l)
	}
	f.Add(base)
	f.Add(`ip x s add proto ah src ::1 dst ::2 spi 300 auth-trunc 'hmac(sha1)' "a b" 96 dir in sel proto icmp type 3 code 1`)
	f.Add(`ip x p add dir in src 10.0.0.0/8 proto tcp sport 1 dport 2 tmpl src 1.1.1.1 dst 2.2.2.2 proto esp mode tunnel tmpl proto esp`)
	f.Add("state add \\\n src 1.2.3.4 dst 5.6.7.8 # comment")
	tb := newTable(f)
	f.Fuzz(func(t *testing.T, line string) {
		words, err := Split(line)
		if err != nil {
			return
		}
		// Every parser on every suffix.
		for i := range words {
			rest := words[i:]
			if st, err := ParseState(rest, Options{}); err == nil {
				if h, err := tb.Add(st.Bundle); err == nil {
					if err := tb.Delete(h); err != nil {
						t.Fatalf("delete %d: %v", h, err)
					}
				}
			}
			_, _ = ParsePolicy(rest)
			_, _ = ParsePolicyID(rest)
			_, _ = ParsePolicyFilter(rest)
			_, _ = ParseStateFilter(rest)
			_, _ = ParseID(rest)
		}
		// A whole line through the runner, against an empty table.
		var out bytes.Buffer
		r := &Runner{Backend: tableBackend{newTable(t)}, Out: &out}
		_ = r.RunLine(context.Background(), line)
		_ = r.RunScript(context.Background(), strings.ReplaceAll(line, ";", "\n"))
	})
}

// TestSplit checks the shell-like word splitting of script lines.
func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`ip x s add aead 'rfc4106(gcm(aes))' 0x01 128`, []string{"ip", "x", "s", "add", "aead", "rfc4106(gcm(aes))", "0x01", "128"}},
		{`enc "cbc(aes)" "" # trailing`, []string{"enc", "cbc(aes)", ""}},
		{`a\ b "c\"d" 'e'f`, []string{"a b", `c"d`, "ef"}},
		{"  \t ", nil},
	}
	for _, tc := range tests {
		got, err := Split(tc.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if got := Lines("a \\\nb\nc\n"); strings.Join(got, "|") != "a  b|c|" {
		t.Errorf("Lines: %q", got)
	}
}
