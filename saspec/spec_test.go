package saspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/secnic/secnic/sa"
	"sigs.k8s.io/yaml"
)

func intp(v int) *int { return &v }

// checkErr asserts that err is an *Error for field with the given code.
func checkErr(t *testing.T, err error, field, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want a %s error on field %q", code, field)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *sa.Error", err, err)
	}
	if e.Field != field {
		t.Errorf("field = %q, want %q (error: %v)", e.Field, field, err)
	}
	if got := ErrorCode(err); got != code {
		t.Errorf("code = %q, want %q (error: %v)", got, code, err)
	}
	if len(e.Msg) < 10 {
		t.Errorf("message %q is too terse to tell the user what to fix", e.Msg)
	}
}

func TestBundleSpecValidation(t *testing.T) {
	base := func() BundleSpec { return gcmSpec("b1", 0x1000, "192.0.2.2") }
	ah := func(b *BundleSpec) {
		b.ESP = nil
		b.AH = &SASpec{SPI: 0x2000, Auth: "hmac-sha256-128", AuthKey: testKey(32, 1)}
	}
	cases := []struct {
		name   string
		mutate func(*BundleSpec)
		field  string // "" = valid
	}{
		{"valid", func(*BundleSpec) {}, ""},
		{"valid no name", func(b *BundleSpec) { b.Name = "" }, ""},
		{"valid wildcards", func(b *BundleSpec) { b.Src, b.Dst = "", "" }, ""},
		{"valid ipv6", func(b *BundleSpec) { b.Src, b.Dst = "2001:db8::1", "::" }, ""},
		{"valid outbound", func(b *BundleSpec) { b.Dir = "out" }, ""},
		{"valid tunnel", func(b *BundleSpec) { b.Mode, b.TTL, b.DF = "tunnel", 32, "set" }, ""},
		{"valid ah", ah, ""},
		{"valid esp+ah", func(b *BundleSpec) {
			b.AH = &SASpec{SPI: 0x2000, Auth: "hmac-sha256-128", AuthKey: testKey(32, 1)}
		}, ""},
		{"valid null+gmac (NDIS form)", func(b *BundleSpec) {
			b.ESP = &SASpec{SPI: 0x1000, Enc: "null", Auth: "aes-gmac-128", AuthKey: testKey(20, 1)}
		}, ""},
		{"valid udp encap", func(b *BundleSpec) { b.UDPEncap = &UDPEncapSpec{} }, ""},
		{"valid lifetimes", func(b *BundleSpec) {
			b.Lifetime = LifetimeSpec{Soft: LimitSpec{Bytes: 10, Packets: 1, Seconds: 5}, Hard: LimitSpec{Bytes: 20, Packets: 2, Seconds: 6}}
		}, ""},
		{"valid esn", func(b *BundleSpec) { b.ESN, b.SeqHigh = true, 7 }, ""},
		{"name with space", func(b *BundleSpec) { b.Name = "a b" }, "name"},
		{"numeric name", func(b *BundleSpec) { b.Name = "42" }, "name"},
		{"long name", func(b *BundleSpec) { b.Name = strings.Repeat("x", 65) }, "name"},
		{"missing dir", func(b *BundleSpec) { b.Dir = "" }, "dir"},
		{"bad dir", func(b *BundleSpec) { b.Dir = "fwd" }, "dir"},
		{"bad mode", func(b *BundleSpec) { b.Mode = "beet" }, "mode"},
		{"bad src", func(b *BundleSpec) { b.Src = "host.example" }, "src"},
		{"dst with prefix", func(b *BundleSpec) { b.Dst = "192.0.2.0/24" }, "dst"},
		{"dst with zone", func(b *BundleSpec) { b.Dst = "fe80::1%eth0" }, "dst"},
		{"v4-mapped dst", func(b *BundleSpec) { b.Dst = "::ffff:192.0.2.2" }, "dst"},
		{"multicast dst", func(b *BundleSpec) { b.Dst = "224.0.0.5" }, "dst"},
		{"mixed families", func(b *BundleSpec) { b.Dst = "2001:db8::2" }, "dst"},
		{"family contradicts", func(b *BundleSpec) { b.Family = "ipv6" }, "family"},
		{"bad family", func(b *BundleSpec) { b.Family = "ipx" }, "family"},
		{"tunnel without endpoints", func(b *BundleSpec) { b.Mode, b.Src = "tunnel", "" }, "src"},
		{"seq_high without esn", func(b *BundleSpec) { b.SeqHigh = 1 }, "seq_high"},
		{"replay window too small", func(b *BundleSpec) { b.ReplayWindow = intp(16) }, "replay_window"},
		{"replay window too large", func(b *BundleSpec) { b.ReplayWindow = intp(sa.MaxReplayWindow + 1) }, "replay_window"},
		{"replay window outbound", func(b *BundleSpec) { b.Dir, b.ReplayWindow = "out", intp(64) }, "replay_window"},
		{"bad df", func(b *BundleSpec) { b.Mode, b.DF = "tunnel", "maybe" }, "df"},
		{"ttl in transport", func(b *BundleSpec) { b.TTL = 5 }, "ttl"},
		{"df in transport", func(b *BundleSpec) { b.DF = "set" }, "df"},
		{"negative tfc", func(b *BundleSpec) { b.TFCPad = -1 }, "tfc_pad"},
		{"bad offload", func(b *BundleSpec) { b.Offload = "full" }, "offload"},
		{"soft above hard", func(b *BundleSpec) {
			b.Lifetime = LifetimeSpec{Soft: LimitSpec{Bytes: 20}, Hard: LimitSpec{Bytes: 10}}
		}, "lifetime.soft.bytes"},
		{"soft equals hard packets", func(b *BundleSpec) {
			b.Lifetime = LifetimeSpec{Soft: LimitSpec{Packets: 5}, Hard: LimitSpec{Packets: 5}}
		}, "lifetime.soft.packets"},
		{"seconds overflow", func(b *BundleSpec) { b.Lifetime.Hard.Seconds = 1 << 40 }, "lifetime"},
		{"no SA", func(b *BundleSpec) { b.ESP = nil }, "esp"},
		{"spi 0", func(b *BundleSpec) { b.ESP.SPI = 0 }, "esp.spi"},
		{"reserved spi", func(b *BundleSpec) { b.ESP.SPI = 255 }, "esp.spi"},
		{"missing enc", func(b *BundleSpec) { b.ESP.Enc = "" }, "esp.enc"},
		{"unknown enc", func(b *BundleSpec) { b.ESP.Enc = "rot13" }, "esp.enc"},
		{"unknown auth", func(b *BundleSpec) { b.ESP.Enc, b.ESP.Auth = "aes-cbc-128", "crc32" }, "esp.auth"},
		{"cbc without auth", func(b *BundleSpec) { b.ESP.Enc = "aes-cbc-128" }, "esp.auth"},
		{"bad hex key", func(b *BundleSpec) { b.ESP.EncKey = Key{bad: "is not hexadecimal"} }, "esp.enc_key"},
		{"bad auth key", func(b *BundleSpec) { b.ESP.AuthKey = Key{bad: "has an odd number of hex digits"} }, "esp.auth_key"},
		{"redacted keys", func(b *BundleSpec) { b.ESP.KeysRedacted = true }, "esp.keys_redacted"},
		{"negative icv", func(b *BundleSpec) { b.ESP.ICVLen = -8 }, "esp.icv_len"},
		{"ah with enc", func(b *BundleSpec) { ah(b); b.AH.Enc = "aes-gcm-128" }, "ah.enc"},
		{"ah with enc key", func(b *BundleSpec) { ah(b); b.AH.EncKey = testKey(16, 0) }, "ah.enc_key"},
		{"ah without auth", func(b *BundleSpec) { ah(b); b.AH.Auth = "" }, "ah.auth"},
		{"ah auth none", func(b *BundleSpec) { ah(b); b.AH.Auth = "none" }, "ah.auth"},
		{"ah unknown auth", func(b *BundleSpec) { ah(b); b.AH.Auth = "sha3" }, "ah.auth"},
		{"ah spi reserved", func(b *BundleSpec) { ah(b); b.AH.SPI = 1 }, "ah.spi"},
		{"udp encap on ah", func(b *BundleSpec) { ah(b); b.UDPEncap = &UDPEncapSpec{} }, "udp_encap"},
		{"udp encap on ah+esp", func(b *BundleSpec) {
			b.AH = &SASpec{SPI: 0x2000, Auth: "hmac-sha256-128", AuthKey: testKey(32, 1)}
			b.UDPEncap = &UDPEncapSpec{}
		}, "udp_encap"},
		{"udp encap unknown type", func(b *BundleSpec) { b.UDPEncap = &UDPEncapSpec{Type: "gre"} }, "udp_encap.type"},
		{"udp encap transport in tunnel", func(b *BundleSpec) {
			b.Mode, b.UDPEncap = "tunnel", &UDPEncapSpec{Type: "transport"}
		}, "udp_encap.type"},
		{"udp encap tunnel in transport", func(b *BundleSpec) { b.UDPEncap = &UDPEncapSpec{Type: "tunnel"} }, "udp_encap.type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := base()
			c.mutate(&b)
			err := b.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			checkErr(t, err, c.field, "invalid")
		})
	}
}

func TestBundleSpecNormalized(t *testing.T) {
	b := BundleSpec{Name: "n", Dir: "OUT", Src: "", Dst: "", ESP: &SASpec{SPI: 0x100, Enc: "NULL", Auth: "aes-gmac-128", AuthKey: testKey(20, 1)},
		UDPEncap: &UDPEncapSpec{}}
	n, err := b.Normalized()
	if err != nil {
		t.Fatal(err)
	}
	if n.Dir != "out" || n.Mode != "transport" || n.Family != "ipv4" {
		t.Errorf("dir/mode/family = %q/%q/%q", n.Dir, n.Mode, n.Family)
	}
	if n.ESP.Enc != "aes-gmac-128" || n.ESP.Auth != "none" || n.ESP.EncKey.Len() != 20 || !n.ESP.AuthKey.IsZero() {
		t.Errorf("NDIS GMAC form not normalized: enc=%q auth=%q enc_key=%d auth_key=%d", n.ESP.Enc, n.ESP.Auth, n.ESP.EncKey.Len(), n.ESP.AuthKey.Len())
	}
	if n.UDPEncap.Type != "transport" || n.UDPEncap.SrcPort != 4500 || n.UDPEncap.DstPort != 4500 {
		t.Errorf("udp encap defaults = %+v", *n.UDPEncap)
	}
	in := gcmSpec("i", 0x100, "192.0.2.2")
	ni, _ := in.Normalized()
	if ni.ReplayWindow == nil || *ni.ReplayWindow != DefaultReplayWindow {
		t.Errorf("default replay window = %v", ni.ReplayWindow)
	}
	// The caller's spec is not changed.
	if b.Dir != "OUT" || b.ESP.Enc != "NULL" {
		t.Errorf("Normalized changed its receiver: %+v", b)
	}
}

func TestPolicySpecValidation(t *testing.T) {
	base := func() PolicySpec {
		return PolicySpec{Name: "p", Dir: "out", Src: "10.0.0.0/24", Dst: "10.1.0.0/16", Proto: "tcp", DstPort: 443, Bundles: []Ref{"b1"}}
	}
	cases := []struct {
		name   string
		mutate func(*PolicySpec)
		field  string
	}{
		{"valid", func(*PolicySpec) {}, ""},
		{"valid any", func(p *PolicySpec) { p.Src, p.Dst, p.Proto, p.DstPort = "", "any", "", 0 }, ""},
		{"valid host", func(p *PolicySpec) { p.Src = "10.0.0.1" }, ""},
		{"valid icmp type", func(p *PolicySpec) { p.Proto, p.SrcPort, p.DstPort = "icmp", 8, 0 }, ""},
		{"valid numeric proto", func(p *PolicySpec) { p.Proto = "132" }, ""},
		{"valid bypass", func(p *PolicySpec) { p.Action, p.Bundles = "bypass", nil }, ""},
		{"valid two bundles", func(p *PolicySpec) { p.Bundles = []Ref{"t", "u"} }, ""},
		{"valid inbound many", func(p *PolicySpec) { p.Dir, p.Bundles = "in", []Ref{"a", "b", "c"} }, ""},
		{"missing dir", func(p *PolicySpec) { p.Dir = "" }, "dir"},
		{"bad dir", func(p *PolicySpec) { p.Dir = "sideways" }, "dir"},
		{"bad name", func(p *PolicySpec) { p.Name = "a/b" }, "name"},
		{"bad src", func(p *PolicySpec) { p.Src = "10.0.0.0/33" }, "src"},
		{"bad dst", func(p *PolicySpec) { p.Dst = "nowhere" }, "dst"},
		{"mixed families", func(p *PolicySpec) { p.Dst = "2001:db8::/32" }, "dst"},
		{"bad proto", func(p *PolicySpec) { p.Proto = "tcpx" }, "proto"},
		{"proto out of range", func(p *PolicySpec) { p.Proto = "300" }, "proto"},
		{"ports without proto", func(p *PolicySpec) { p.Proto = "" }, "dst_port"},
		{"ports with gre", func(p *PolicySpec) { p.Proto, p.SrcPort = "gre", 1 }, "src_port"},
		{"bad action", func(p *PolicySpec) { p.Action = "maybe" }, "action"},
		{"protect without bundles", func(p *PolicySpec) { p.Bundles = nil }, "bundles"},
		{"discard with bundles", func(p *PolicySpec) { p.Action = "discard" }, "bundles"},
		{"three outbound bundles", func(p *PolicySpec) { p.Bundles = []Ref{"a", "b", "c"} }, "bundles"},
		{"empty bundle ref", func(p *PolicySpec) { p.Bundles = []Ref{" "} }, "bundles[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base()
			c.mutate(&p)
			err := p.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			checkErr(t, err, c.field, "invalid")
		})
	}
}

func TestKeysNeverPrinted(t *testing.T) {
	secret := testKey(20, 0xA0)
	b := gcmSpec("k", 0x1000, "192.0.2.2")
	b.ESP.EncKey = secret
	hexKey := secret.Hex()
	outputs := map[string]string{
		"String":     b.String(),
		"%v spec":    fmt.Sprintf("%v", b),
		"%+v spec":   fmt.Sprintf("%+v", *b.ESP),
		"%x key":     fmt.Sprintf("%x", secret),
		"%s key":     fmt.Sprintf("%s", secret),
		"key String": secret.String(),
	}
	var logs strings.Builder
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "bundle", b, "key", secret)
	outputs["slog"] = logs.String()
	red, _ := json.Marshal(b.Redacted())
	outputs["redacted JSON"] = string(red)
	for what, out := range outputs {
		if strings.Contains(strings.ToLower(out), hexKey) {
			t.Errorf("%s leaks the key: %s", what, out)
		}
	}
	if !strings.Contains(string(red), `"keys_redacted":true`) {
		t.Errorf("redacted JSON does not say keys_redacted: %s", red)
	}
	full, _ := json.Marshal(b)
	if !strings.Contains(string(full), hexKey) {
		t.Errorf("explicit JSON export lost the key: %s", full)
	}
}

func TestDecodeBundleSpecs(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		n     int
		error string // substring; "" = success
	}{
		{"one JSON object", `{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`, 1, ""},
		{"list", `[{"dir":"in","esp":{"spi":"0x1000"}},{"dir":"out","ah":{"spi":4097}}]`, 2, ""},
		{"sas object", `{"sas":[{"dir":"in"}]}`, 1, ""},
		{"yaml", "name: web\ndir: out\nesp:\n  spi: 0x1000\n  enc: aes-gcm-128\n  enc_key: \"00112233445566778899aabbccddeeff00112233\"\n", 1, ""},
		{"unknown field", `{"dir":"in","spii":5}`, 0, "unknown field"},
		{"wrong type", `{"dir":5}`, 0, "expected string"},
		{"bad spi", `{"dir":"in","esp":{"spi":"lots"}}`, 0, "spi"},
		{"trailing data", `{"dir":"in"} {"dir":"out"}`, 0, "after the JSON value"},
		{"empty", "  ", 0, "empty"},
		{"scalar", `42`, 0, "expected a bundle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeBundleSpecs([]byte(c.in))
			if c.error != "" {
				if err == nil || !strings.Contains(err.Error(), c.error) {
					t.Fatalf("error = %v, want one containing %q", err, c.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.n {
				t.Fatalf("decoded %d bundles, want %d", len(got), c.n)
			}
		})
	}
	// A YAML key written without quotes becomes a number: reported with its path.
	specs, err := DecodeBundleSpecs([]byte("dir: in\nesp:\n  spi: 4096\n  enc: aes-gcm-128\n  enc_key: 0x0102\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, specs[0].Validate(), "esp.enc_key", "invalid")
}

func TestYAMLRoundTrip(t *testing.T) {
	b := gcmSpec("y", 0x1234, "192.0.2.9")
	b.Lifetime.Hard.Packets = 10
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBundleSpecs(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	n1, _ := b.Normalized()
	n2, err := got[0].Normalized()
	if err != nil {
		t.Fatal(err)
	}
	if n1.String() != n2.String() || !n1.ESP.EncKey.Equal(n2.ESP.EncKey) || n2.Lifetime.Hard.Packets != 10 {
		t.Errorf("round trip changed the spec:\n%s\n%s", n1, n2)
	}
}
