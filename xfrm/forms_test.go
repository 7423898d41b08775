package xfrm

import (
	"net/netip"
	"strings"
	"testing"
)

// Keys of the golden tests: distinct for every SA (secnic refuses a second
// live outbound SA with a key already in use).
const (
	k20a = "0xd23417d8f54ff1b3ed53dc1c33c975ebe0c1bcc7"
	k20b = "0x005c4d1e88de30186d235058b2105a34052904c9"
	k20c = "0x9c5d3fc60f0277c8ecd1eb6ca1ed8a18bb126441"
	k20d = "0x395d1b297f4d847b5c8b6f3ac623f63f7ef7c109"
	k36  = "0x517cd4f6203c0406ec15866367cd3477d6ffc265f641b869232e6fcfd202500ee4d5c230"
	k36b = "0x645bb5db705563da09c693eb8399b6b299f52c02a1a0c811458e5c315089fca812ddd26e"
	k36c = "0xe55388f680e9a06beff23fe3de28fb30edc16022bb5ef67d29a3f783b0b8426f7cd9ea23"
	k32a = "0xb137953eaefdacb496682222dff237d80692c80bf259485bc66752a5f0bc9a40"
	k32b = "0xdfe174a5f0a0f715804fb483e5d89546d7db847f09e927de3e5aa1562b60e764"
	k32c = "0x8d31a378d9a2f095c745a577a6317757357dfe84893bab1de7bdc158082927fd"
	k64  = "0x56ac2d1871a27450b3439f2a0067a1c41b01e73c6a36841fb4bd5c422fe80567c2c8c0265e1999c1be036a66a8a19924c21e138bece961b060d5b94d9d82b551"
	k48  = "0x0638634b12610fa7cd10e572e436e162d6092b928f919be2a556cd51d9db5b560d11bc8008336e319a4a61a83e5df55e"
	k16  = "0x69efa54e2e440ebd3c195a303ffebb64"
)

// TestGoldenStateForms: each supported state form, the bundle secnic
// installs for it, and what `ip xfrm state` prints for it.
func TestGoldenStateForms(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		check func(t *testing.T, g *rig) // the installed bundle
		stats bool
		keys  bool
		want  string
	}{
		{
			name: "tunnel-esn-gcm256-in",
			line: `ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc0000001 reqid 1 mode tunnel replay-window 64 flag esn aead 'rfc4106(gcm(aes))' ` + k36 + ` 128 dir in`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(true)[0].Spec
				if b.Dir != "in" || b.Mode != "tunnel" || !b.ESN || *b.ReplayWindow != 64 || b.ESP.Enc != "aes-gcm-256" || b.ESP.EncKey.Len() != 36 {
					t.Errorf("bundle %+v esp %+v", b, b.ESP)
				}
			},
			keys: true,
			want: "src 192.0.2.1 dst 192.0.2.2\n" +
				"\tproto esp spi 0xc0000001 reqid 1 mode tunnel\n" +
				"\treplay-window 0 flag esn\n" +
				"\taead rfc4106(gcm(aes)) " + k36 + " 128\n" +
				"\tanti-replay esn context:\n" +
				"\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0\n" +
				"\t replay_window 64, bitmap-length 2\n" +
				"\t 00000000 00000000 \n" +
				"\tcrypto offload parameters: dev secnic0 dir in mode packet\n" +
				"\tdir in\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "cbc-sha256-limits-out-stats",
			line: `ip xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x1001 reqid 7 mode transport enc 'cbc(aes)' ` + k32a + ` auth-trunc 'hmac(sha256)' ` + k32b + ` 128 limit byte-soft 1000000 limit byte-hard 2000000 limit time-hard 3600 dir out`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(false)[0].Spec
				if b.ESP.Enc != "aes-cbc-256" || b.ESP.Auth != "hmac-sha256-128" || b.Lifetime.Hard.Seconds != 3600 || b.Lifetime.Soft.Bytes != 1000000 || b.ReplayWindow != nil {
					t.Errorf("bundle %+v esp %+v", b, b.ESP)
				}
			},
			stats: true, keys: true,
			want: "src 10.0.0.1 dst 10.0.0.2\n" +
				"\tproto esp spi 0x00001001(4097) reqid 7(0x00000007) mode transport\n" +
				"\treplay-window 0 seq 0x00000000 flag  (0x00000000)\n" +
				"\tauth-trunc hmac(sha256) " + k32b + " (256 bits) 128\n" +
				"\tenc cbc(aes) " + k32a + " (256 bits)\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
				"\tdir out\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 uid 0\n" +
				"\tlifetime config:\n" +
				"\t  limit: soft 1000000(bytes), hard 2000000(bytes)\n" +
				"\t  limit: soft (INF)(packets), hard (INF)(packets)\n" +
				"\t  expire add: soft 0(sec), hard 3600(sec)\n" +
				"\t  expire use: soft 0(sec), hard 0(sec)\n" +
				"\tlifetime current:\n" +
				"\t  0(bytes), 0(packets)\n" +
				"\t  add TIME use -\n" +
				"\tstats:\n" +
				"\t  replay-window 0 replay 0 failed 0\n",
		},
		{
			name: "ah-sha1-ipv6-in",
			line: `ip xfrm state add src 2001:db8::1 dst 2001:db8::2 proto ah spi 0x2000 mode transport auth 'hmac(sha1)' ` + k20a + ` replay-window 32 dir in`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(false)[0].Spec
				if b.AH == nil || b.AH.Auth != "hmac-sha1-96" || b.ESP != nil || b.Family != "ipv6" || *b.ReplayWindow != 32 {
					t.Errorf("bundle %+v", b)
				}
			},
			want: "src 2001:db8::1 dst 2001:db8::2\n" +
				"\tproto ah spi 0x00002000 reqid 0 mode transport\n" +
				"\treplay-window 32 \n" +
				"\tauth-trunc hmac(sha1) <<Keys hidden>> 96\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir in mode packet\n" +
				"\tdir in\n" +
				"\tsel src ::/0 dst ::/0 \n",
		},
		{
			name: "natt-gcm-icv64-packet-out",
			line: `ip xfrm state add src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x3000 reqid 3 mode tunnel aead 'rfc4106(gcm(aes))' ` + k20b + ` 64 encap espinudp 4500 4500 0.0.0.0 tfcpad 256 offload packet dev secnic0 dir out`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(false)[0].Spec
				if b.UDPEncap == nil || b.UDPEncap.SrcPort != 4500 || b.Offload != "packet" || b.TFCPad != 256 || b.ESP.ICVLen != 8 {
					t.Errorf("bundle %+v esp %+v", b, b.ESP)
				}
			},
			want: "src 198.51.100.1 dst 198.51.100.2\n" +
				"\tproto esp spi 0x00003000 reqid 3 mode tunnel\n" +
				"\treplay-window 0 \n" +
				"\taead rfc4106(gcm(aes)) <<Keys hidden>> 64\n" +
				"\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
				"\ttfcpad 256\n" +
				"\tdir out\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "gmac-rfc4543-out",
			line: `ip xfrm state add src 10.9.0.1 dst 10.9.0.2 proto esp spi 0x4000 reqid 4 mode transport aead 'rfc4543(gcm(aes))' ` + k20c + ` 128 dir out`,
			check: func(t *testing.T, g *rig) {
				if e := g.tb.List(false)[0].Spec.ESP; e.Enc != "aes-gmac-128" || e.Auth != "none" {
					t.Errorf("esp %+v", e)
				}
			},
			keys: true,
			want: "src 10.9.0.1 dst 10.9.0.2\n" +
				"\tproto esp spi 0x00004000 reqid 4 mode transport\n" +
				"\treplay-window 0 \n" +
				"\taead rfc4543(gcm(aes)) " + k20c + " 128\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
				"\tdir out\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "chacha20-poly1305-in",
			line: `ip xfrm state add src 10.9.0.2 dst 10.9.0.1 proto esp spi 0x4001 reqid 4 mode transport aead 'rfc7539esp(chacha20,poly1305)' ` + k36b + ` 128 dir in`,
			check: func(t *testing.T, g *rig) {
				if e := g.tb.List(false)[0].Spec.ESP; e.Enc != "chacha20-poly1305" {
					t.Errorf("esp %+v", e)
				}
			},
			want: "src 10.9.0.2 dst 10.9.0.1\n" +
				"\tproto esp spi 0x00004001 reqid 4 mode transport\n" +
				"\treplay-window 0 \n" +
				"\taead rfc7539esp(chacha20,poly1305) <<Keys hidden>> 128\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir in mode packet\n" +
				"\tdir in\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "ctr-sha512-out",
			line: `ip xfrm state add src 10.9.0.1 dst 10.9.0.3 proto esp spi 0x4002 mode tunnel enc 'rfc3686(ctr(aes))' ` + k36c + ` auth-trunc 'hmac(sha512)' ` + k64 + ` 256 dir out`,
			check: func(t *testing.T, g *rig) {
				if e := g.tb.List(false)[0].Spec.ESP; e.Enc != "aes-ctr-256" || e.Auth != "hmac-sha512-256" {
					t.Errorf("esp %+v", e)
				}
			},
			want: "src 10.9.0.1 dst 10.9.0.3\n" +
				"\tproto esp spi 0x00004002 reqid 0 mode tunnel\n" +
				"\treplay-window 0 \n" +
				"\tauth-trunc hmac(sha512) <<Keys hidden>> 256\n" +
				"\tenc rfc3686(ctr(aes)) <<Keys hidden>>\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
				"\tdir out\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "null-sha384-ascii-key-in",
			// A key without 0x is its string's bytes, as iproute2 reads it.
			line: `ip xfrm state add src 10.9.0.3 dst 10.9.0.1 proto esp spi 0x4003 mode transport enc cipher_null "" auth-trunc 'hmac(sha384)' ` + k48 + ` 192 replay-window 128 dir in`,
			check: func(t *testing.T, g *rig) {
				if e := g.tb.List(false)[0].Spec.ESP; e.Enc != "null" || e.Auth != "hmac-sha384-192" || e.EncKey.Len() != 0 {
					t.Errorf("esp %+v", e)
				}
			},
			keys: true,
			want: "src 10.9.0.3 dst 10.9.0.1\n" +
				"\tproto esp spi 0x00004003 reqid 0 mode transport\n" +
				"\treplay-window 0 \n" +
				"\tauth-trunc hmac(sha384) " + k48 + " 192\n" +
				"\tenc ecb(cipher_null) \n" +
				"\tanti-replay esn context:\n" +
				"\t seq-hi 0x0, seq 0x0, oseq-hi 0x0, oseq 0x0\n" +
				"\t replay_window 128, bitmap-length 4\n" +
				"\t 00000000 00000000 00000000 00000000 \n" +
				"\tcrypto offload parameters: dev secnic0 dir in mode packet\n" +
				"\tdir in\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
		{
			name: "esn-oseq-hi-ipv6-tunnel-out",
			line: `ip xfrm state add src 2001:db8:1::1 dst 2001:db8:2::1 proto esp spi 0x4005 reqid 11 mode tunnel flag esn replay-oseq-hi 5 enc aes ` + k16 + ` auth-trunc 'hmac(sha256)' ` + k32c + ` 128 dir out`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(false)[0].Spec
				if !b.ESN || b.SeqHigh != 5 || b.ESP.Enc != "aes-cbc-128" || b.Family != "ipv6" {
					t.Errorf("bundle %+v esp %+v", b, b.ESP)
				}
			},
			want: "src 2001:db8:1::1 dst 2001:db8:2::1\n" +
				"\tproto esp spi 0x00004005 reqid 11 mode tunnel\n" +
				"\treplay-window 0 flag esn\n" +
				"\tauth-trunc hmac(sha256) <<Keys hidden>> 128\n" +
				"\tenc cbc(aes) <<Keys hidden>>\n" +
				"\tanti-replay esn context:\n" +
				"\t seq-hi 0x0, seq 0x0, oseq-hi 0x5, oseq 0x0\n" +
				"\t replay_window 0, bitmap-length 0\n" +
				"\tcrypto offload parameters: dev secnic0 dir out mode packet\n" +
				"\tdir out\n" +
				"\tsel src ::/0 dst ::/0 \n",
		},
		{
			name: "string-key-local-direction",
			// No dir: 10.9.0.9 is local, so the state is inbound.
			line: `ip xfrm state add src 10.9.0.8 dst 10.9.0.9 proto esp spi 0x4004 reqid 9 mode transport aead 'rfc4106(gcm(aes))' 1234567890123456dcba 128`,
			check: func(t *testing.T, g *rig) {
				b := g.tb.List(true)[0].Spec
				if b.Dir != "in" || string(b.ESP.EncKey.Bytes()) != "1234567890123456dcba" {
					t.Errorf("bundle %+v", b)
				}
			},
			want: "src 10.9.0.8 dst 10.9.0.9\n" +
				"\tproto esp spi 0x00004004 reqid 9 mode transport\n" +
				"\treplay-window 0 \n" +
				"\taead rfc4106(gcm(aes)) <<Keys hidden>> 128\n" +
				"\tanti-replay context: seq 0x0, oseq 0x0, bitmap 0x00000000\n" +
				"\tcrypto offload parameters: dev secnic0 dir in mode packet\n" +
				"\tdir in\n" +
				"\tsel src 0.0.0.0/0 dst 0.0.0.0/0 \n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.r.Parse.Local = func(a netip.Addr) bool { return a.String() == "10.9.0.9" }
			g.run(tc.line)
			tc.check(t, g)
			g.r.Print.Stats, g.r.Print.Keys = tc.stats, tc.keys
			if got := stamp(g.run("ip xfrm state list")); got != tc.want {
				t.Errorf("ip xfrm state:\n%s\nwant:\n%s", got, tc.want)
			}
			if !tc.keys {
				// Keys never print unless asked for.
				g.r.Print.Keys = false
				for _, k := range []string{k20a, k20b, k36b, k36c, k64} {
					if strings.Contains(g.run("ip xfrm state list"), k[2:]) {
						t.Errorf("key printed without Keys")
					}
				}
			}
		})
	}
}
