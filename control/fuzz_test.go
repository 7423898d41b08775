package control

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sadb"
)

// fuzzHandler serves a fresh small table for one fuzz input.
func fuzzHandler(t *testing.T) (http.Handler, *sadb.Table) {
	m, err := capabilities.NewManagerFromConfig(capabilities.Config{Profile: capabilities.ProfileNetdevsim})
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
	return srv.Handler(), tb
}

// checkAnswer asserts the API answered with a known status and a JSON body;
// errors carry a code and a message.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("server error %d: %s", rec.Code, rec.Body)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("answer is not JSON: %q", rec.Body)
	}
	if rec.Code >= 300 {
		var e ErrorResponse
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if e.Code == "" || e.Error == "" || StatusOf(e.Code) != rec.Code {
			t.Fatalf("error answer %d without a matching code: %s", rec.Code, rec.Body)
		}
	}
}

func FuzzAPIAddSAs(f *testing.F) {
	f.Add(`{"dir":"in","esp":{"spi":4096,"enc":"aes-gcm-128","enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}`)
	f.Add(`[{"dir":"out","mode":"tunnel","src":"2001:db8::1","dst":"2001:db8::2","esp":{"spi":"0x1000","enc":"aes-gcm-128","enc_key":"00"}}]`)
	f.Add(`{"sas":[{"dir":"in","udp_encap":{},"replay_window":4096,"lifetime":{"hard":{"packets":1}},"esp":{"spi":4096,"enc":"aes-gcm-128","icv_len":8,"enc_key":"0x0102030405060708090a0b0c0d0e0f1011121314"}}]}`)
	f.Add(`{"dir":"in","ah":{"spi":4096,"auth":"hmac-sha256-128","auth_key":"00"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		h, tb := fuzzHandler(t)
		defer tb.Close()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sas", strings.NewReader(body)))
		checkAnswer(t, rec)
		if rec.Code == http.StatusCreated {
			var r AddSAsResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Offloaded == 0 || r.Offloaded != int(tb.Usage().Bundles) {
				t.Fatalf("201 answer %s does not match the table (%+v)", rec.Body, tb.Usage())
			}
		} else if tb.Usage().Bundles != 0 {
			t.Fatalf("refused request left %d bundles", tb.Usage().Bundles)
		}
	})
}

func FuzzAPIOffload(f *testing.F) {
	f.Add(`{"ipsec_v2":"esp-enabled"}`)
	f.Add(`{"ipsec_v2":1,"ipsec_v2_ipv4":3}`)
	f.Add(`{"toggles":[{"feature":"tunnel","on":false},{"ethtool":"esp-hw-offload","on":true},{"encryption":"aes-gcm-128","on":false}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		h, tb := fuzzHandler(t)
		defer tb.Close()
		before := tb.Caps().Current()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/offload", strings.NewReader(body)))
		checkAnswer(t, rec)
		after := tb.Caps().Current()
		if rec.Code != http.StatusOK && after != before {
			t.Fatalf("refused offload request changed the configuration: %s", rec.Body)
		}
		if err := after.Within(tb.Caps().Hardware()); err != nil {
			t.Fatalf("configuration left the hardware: %v", err)
		}
	})
}

func FuzzAPIPolicies(f *testing.F) {
	f.Add(`{"dir":"out","dst":"10.0.0.0/8","action":"bypass"}`)
	f.Add(`[{"dir":"in","src":"2001:db8::/32","proto":"icmpv6","src_port":128,"action":"discard"}]`)
	f.Add(`{"policies":[{"dir":"out","bundles":[1]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		h, tb := fuzzHandler(t)
		defer tb.Close()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/policies", strings.NewReader(body)))
		checkAnswer(t, rec)
	})
}
