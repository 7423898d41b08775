package saspec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func FuzzDecodeBundleSpec(f *testing.F) {
	f.Add([]byte(`{"name":"a","dir":"in","dst":"192.0.2.2","esp":{"spi":"0x1000","enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`))
	f.Add([]byte(`[{"dir":"out","mode":"tunnel","src":"2001:db8::1","dst":"2001:db8::2","ah":{"spi":4096,"auth":"hmac-sha256-128","auth_key":"00"}}]`))
	f.Add([]byte(`{"sas":[{"dir":"in","udp_encap":{"type":"transport"},"replay_window":0,"lifetime":{"soft":{"bytes":1},"hard":{"bytes":2}},"esp":{"spi":1}}]}`))
	f.Add([]byte("dir: in\nesp:\n  spi: 0x100\n  enc: null\n  auth: aes-gmac-128\n  auth_key: \"00\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := DecodeBundleSpecs(data)
		if err != nil {
			if ErrorCode(err) != "invalid" {
				t.Fatalf("decode error with code %q: %v", ErrorCode(err), err)
			}
			return
		}
		for _, s := range specs {
			n, err := s.Normalized()
			if err != nil {
				var e *Error
				if ErrorCode(err) != "invalid" || !asType(err, &e) {
					t.Fatalf("validation error %v is not an invalid *Error", err)
				}
				continue
			}
			// Normalizing is idempotent and survives a JSON round trip.
			js, err := json.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodeBundleSpecs(js)
			if err != nil || len(again) != 1 {
				t.Fatalf("re-decoding %s: %v", js, err)
			}
			n2, err := again[0].Normalized()
			if err != nil {
				t.Fatalf("normalized spec %s no longer valid: %v", js, err)
			}
			if !reflect.DeepEqual(n, n2) {
				t.Fatalf("round trip changed the spec:\n%s\n%+v", js, n2)
			}
			red, _ := json.Marshal(n.Redacted())
			for _, sa := range []*SASpec{n.ESP, n.AH} {
				if sa == nil {
					continue
				}
				for _, k := range []Key{sa.EncKey, sa.AuthKey} {
					if k.Len() >= 4 && strings.Contains(string(red), k.Hex()) {
						t.Fatalf("redacted output leaks a key: %s", red)
					}
				}
			}
		}
	})
}

func FuzzDecodePolicySpec(f *testing.F) {
	f.Add([]byte(`{"name":"p","dir":"out","src":"10.0.0.0/8","dst":"2001:db8::/32","proto":"tcp","dst_port":443,"bundles":["a",7]}`))
	f.Add([]byte(`[{"dir":"in","proto":58,"src_port":128,"action":"bypass"}]`))
	f.Add([]byte("policies:\n  - dir: out\n    action: discard\n    dst: any\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := DecodePolicySpecs(data)
		if err != nil {
			return
		}
		for _, s := range specs {
			n, err := s.Normalized()
			if err != nil {
				if ErrorCode(err) != "invalid" {
					t.Fatalf("validation error with code %q: %v", ErrorCode(err), err)
				}
				continue
			}
			js, _ := json.Marshal(n)
			again, err := DecodePolicySpecs(js)
			if err != nil || len(again) != 1 {
				t.Fatalf("re-decoding %s: %v", js, err)
			}
			n2, err := again[0].Normalized()
			if err != nil || !reflect.DeepEqual(n, n2) {
				t.Fatalf("round trip of %s: %+v, %v", js, n2, err)
			}
		}
	})
}
