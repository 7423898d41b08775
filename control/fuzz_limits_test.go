package control

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAPIRequest sends arbitrary bodies to every endpoint that reads one
// (after one bundle was added, so that delete and update find something):
// the answer is always JSON with a known status, and never much larger
// than the request, whatever the request holds.
func FuzzAPIRequest(f *testing.F) {
	f.Add(uint8(0), `{"dir":"in","name":"x","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`)
	f.Add(uint8(1), `{"refs":["b1","1","nope"]}`)
	f.Add(uint8(2), `{"seq_high":7}`)
	f.Add(uint8(3), `[{"dir":"out","dst":"10.0.0.0/8","action":"bypass"}]`)
	f.Add(uint8(4), `{"toggles":[{"feature":"tunnel","on":false}]}`)
	f.Add(uint8(0), `[{},{},{},{},{},{},{},{},{},{},{},{},{}]`)
	f.Add(uint8(0), "name: "+strings.Repeat("y", 300)+"\n")
	f.Add(uint8(1), `{"refs":[`+strings.Repeat(`"r",`, 50)+`"r"]}`)
	f.Add(uint8(0), `{"`+strings.Repeat("k", 100)+`":1}`)
	paths := []string{"/v1/sas", "/v1/sas/delete", "/v1/sas/b1/update", "/v1/policies", "/v1/offload"}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		h, tb := fuzzHandler(t)
		defer tb.Close()
		if _, err := tb.Add(gcm("b1", 0x999)); err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, paths[int(which)%len(paths)], strings.NewReader(body)))
		checkAnswer(t, rec)
		if max := 16<<10 + 8*len(body); rec.Body.Len() > max {
			t.Fatalf("a %d-byte request got a %d-byte answer", len(body), rec.Body.Len())
		}
	})
}

// FuzzBoundedJSON checks the request bounds on arbitrary bodies: a body
// that passes is JSON the decoders can take; a refusal is short.
func FuzzBoundedJSON(f *testing.F) {
	f.Add([]byte(`{"sas":[{"name":"a"},{"name":"b"}]}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]`))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte(`{"a":"` + strings.Repeat("z", 300) + `"}`))
	f.Add([]byte(`{"a":{"b":[1,2,{"c":"d"}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		js, err := boundedJSON(body)
		if err != nil {
			if len(err.Error()) > 2048 {
				t.Fatalf("a %d-byte refusal", len(err.Error()))
			}
			return
		}
		if len(js) == 0 && len(body) != 0 {
			t.Fatalf("accepted %q as nothing", body)
		}
	})
}
