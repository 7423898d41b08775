package xfrm

import (
	"strings"
	"testing"
)

const base = `ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 reqid 1 mode transport aead 'rfc4106(gcm(aes))' ` + k20a + ` 128 dir out`

// TestUnsupportedWords: every word secnic does not support is refused
// with an error that names it, and nothing is installed.
func TestUnsupportedWords(t *testing.T) {
	tests := []struct{ line, word string }{
		{base + " mark 7", `"mark"`},
		{base + " output-mark 1", `"output-mark"`},
		{base + " if_id 3", `"if_id"`},
		{base + " ctx foo", `"ctx"`},
		{base + " coa 10.0.0.9", `"coa"`},
		{base + " extra-flag dont-encap-dscp", `"extra-flag"`},
		{base + " seq 5", `"seq"`},
		{base + " pcpu-num 1", `"pcpu-num"`},
		{base + " flag noecn", `"flag noecn"`},
		{base + " flag af-unspec", `"flag af-unspec"`},
		{base + " flag 0x1", `"flag 0x1"`},
		{base + " replay-oseq 100", `"replay-oseq"`},
		{base + " limit time-use-hard 10", `"limit time-use-hard"`},
		{base + " encap espintcp 4500 4500 0.0.0.0", `"encap espintcp"`},
		{base + " encap espinudp-nonike 4500 4500 0.0.0.0", `"encap espinudp-nonike"`},
		{base + " sel src 10.0.0.0/24 dev eth0", `"sel dev"`},
		{base + " sel proto gre key 5", `"sel key"`},
		{base + " sel proto icmp type 0", `"sel type 0"`},
		{strings.Replace(base, "mode transport", "mode beet", 1), `"mode beet"`},
		{strings.Replace(base, "mode transport", "mode ro", 1), `"mode ro"`},
		{strings.Replace(base, "proto esp", "proto comp", 1), `"proto comp"`},
		{strings.Replace(base, "proto esp", "proto route2", 1), `"proto route2"`},
		{base + " comp deflate", `"comp"`},
		{"ip xfrm state allocspi src 10.0.0.1 dst 10.0.0.2 proto esp", `"allocspi"`},
		{"ip xfrm state list flag esn", `"flag"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out ptype sub", `"ptype sub"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out mark 1", `"mark"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out if_id 1", `"if_id"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out ctx x", `"ctx"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out flag localok", `"flag"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out limit time-hard 5", `"limit"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out index 8", `"index"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dev eth0 dir out", `"selector dev"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out tmpl proto esp level use", `"level use"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out tmpl proto ah mode transport tmpl proto esp mode transport", `"tmpl"`},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out tmpl proto esp tmpl proto esp tmpl proto esp", `"tmpl"`},
		{"ip xfrm policy setdefault in block", `"policy setdefault"`},
	}
	for _, tc := range tests {
		g := newRig(t)
		msg := g.fail(tc.line)
		if !strings.Contains(msg, tc.word) || !strings.Contains(msg, "not supported") {
			t.Errorf("%s:\n  error %q does not name %s as unsupported", tc.line, msg, tc.word)
		}
		if n := len(g.tb.List(false)) + len(g.tb.Policies()); n != 0 {
			t.Errorf("%s: %d entries installed", tc.line, n)
		}
	}
}

// TestBadInput: malformed lines say what is wrong.
func TestBadInput(t *testing.T) {
	tests := []struct{ line, want string }{
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "proto is missing"},
		{"ip xfrm state add src 10.0.0.1 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "dst is missing"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "spi is missing"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128", "inbound or outbound"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir in offload dev x dir out", "disagree"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 32 dir out", "ICV of 32 bits"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k16 + " 128 dir out", "16-byte key"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'gcm(aes)' " + k20a + " 128 dir out", "secnic supports rfc4106"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 enc 'cbc(aes)' " + k32a + " dir out", "without auth"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 enc 'cbc(aes)' " + k32a + " auth 'hmac(sha256)' " + k32b + " dir out", "auth-trunc 'hmac(sha256)' KEY 128"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 enc 'cbc(des3_ede)' 0x" + strings.Repeat("ab", 24) + " auth-trunc 'hmac(sha256)' " + k32b + " 128 dir out", "--allow-legacy"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto ah spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "AH only authenticates"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' 0xzz 128 dir out", "not hexadecimal"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out bogus", `"bogus" is not a word`},
		{"ip xfrm state add src 10.0.0.1 dst 2001:db8::1 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "different families"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a, "ALGO-ICV-LEN"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes)) " + k20a, "unterminated single quote"},
		{"ip xfrm state add src $SRC dst 10.0.0.2", "shell expansion"},
		{"ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 flag esn aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir in", "needs replay-window"},
		{"ip xfrm state get dst 10.0.0.2 proto esp", "needs dst ADDR, proto esp|ah and spi"},
		{"ip xfrm state get dst 10.0.0.2 proto esp spi 0x1000", "no state"},
		{"ip xfrm state update src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + k20a + " 128 dir out", "use state add"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 tmpl proto esp", "dir is missing"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 2001:db8::/64 dir out", "different families"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out action block tmpl proto esp", "action block with tmpl"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 sport 80 dir out", "ports need proto"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out tmpl proto esp mode tunnel", "needs src and dst"},
		{"ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir sideways", "not a direction"},
		{"ip xfrm policy frobnicate", "not a command"},
		{"ip xfrm tunnel list", "not an XFRM object"},
		{"ip -6 xfrm state list", "only -s"},
	}
	for _, tc := range tests {
		g := newRig(t)
		if msg := g.fail(tc.line); !strings.Contains(msg, tc.want) {
			t.Errorf("%s:\n  error %q lacks %q", tc.line, msg, tc.want)
		}
	}
}

// TestErrorsHideKeys: errors never repeat key material.
func TestErrorsHideKeys(t *testing.T) {
	g := newRig(t)
	key := "0x" + strings.Repeat("5a", 19) + "zz"
	msg := g.fail("ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1000 aead 'rfc4106(gcm(aes))' " + key + " 128 dir out")
	if strings.Contains(msg, "5a5a") {
		t.Errorf("error shows the key: %s", msg)
	}
}
