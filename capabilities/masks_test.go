package capabilities

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestMaskStrings(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"encap 802.3", EncapsulationIEEE8023.String(), "0x00000002 (IEEE_802_3)"},
		{"encap zero", EncapsulationNotSupported.String(), "0x00000000 (NOT_SUPPORTED)"},
		{"encap unknown", Encapsulation(0x22).String(), "0x00000022 (IEEE_802_3|0x00000020)"},
		{"udp-esp zero", UDPESPNone.String(), "0x00000000 (NONE)"},
		{"udp-esp 1|8", (UDPESPTransport | UDPESPUDPTransportOverTunnel).String(),
			"0x00000009 (UDP_ESP_ENCAPSULATION_TRANSPORT|UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL)"},
		{"auth", (AuthSHA1 | AuthAESGCM256).String(), "0x00000022 (SHA_1|AES_GCM_256)"},
		{"auth zero", AuthenticationAlgorithms(0).String(), "0x00000000"},
		{"encr", (EncrNone | Encr3DESCBC | EncrAESCBC256).String(), "0x00000105 (NONE|3_DES_CBC|AES_CBC_256)"},
		{"flags", (FlagTCPChecksumCoexistence | FlagUDPChecksumCoexistence).String(),
			"0x00000006 (TCP_CHECKSUM_COEXISTENCE|UDP_CHECKSUM_COEXISTENCE)"},
		{"ext encr", (ExtChaCha20Poly1305 | ExtAESCTR256).String(), "chacha20-poly1305, aes-ctr-256"},
		{"ext integ none", ExtIntegrity(0).String(), "none"},
		{"icv", (ICV8 | ICV16).String(), "8, 16"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestNDISBitValues(t *testing.T) {
	// The NDIS values from the spec, table 1.2.
	tests := []struct {
		name string
		got  uint32
		want uint32
	}{
		{"AUTH_MD5", uint32(AuthMD5), 0x01},
		{"AUTH_SHA_1", uint32(AuthSHA1), 0x02},
		{"AUTH_SHA_256", uint32(AuthSHA256), 0x04},
		{"AUTH_AES_GCM_128", uint32(AuthAESGCM128), 0x08},
		{"AUTH_AES_GCM_192", uint32(AuthAESGCM192), 0x10},
		{"AUTH_AES_GCM_256", uint32(AuthAESGCM256), 0x20},
		{"ENCR_NONE", uint32(EncrNone), 0x001},
		{"ENCR_DES_CBC", uint32(EncrDESCBC), 0x002},
		{"ENCR_3_DES_CBC", uint32(Encr3DESCBC), 0x004},
		{"ENCR_AES_GCM_128", uint32(EncrAESGCM128), 0x008},
		{"ENCR_AES_GCM_192", uint32(EncrAESGCM192), 0x010},
		{"ENCR_AES_GCM_256", uint32(EncrAESGCM256), 0x020},
		{"ENCR_AES_CBC_128", uint32(EncrAESCBC128), 0x040},
		{"ENCR_AES_CBC_192", uint32(EncrAESCBC192), 0x080},
		{"ENCR_AES_CBC_256", uint32(EncrAESCBC256), 0x100},
		{"UDP_ESP_TRANSPORT", uint32(UDPESPTransport), 1},
		{"UDP_ESP_TUNNEL", uint32(UDPESPTunnel), 2},
		{"TRANSPORT_OVER_UDP_ESP_TUNNEL", uint32(UDPESPTransportOverUDPTunnel), 4},
		{"UDP_ESP_TRANSPORT_OVER_TUNNEL", uint32(UDPESPUDPTransportOverTunnel), 8},
		{"TCP_CHECKSUM_COEXISTENCE", uint32(FlagTCPChecksumCoexistence), 0x2},
		{"UDP_CHECKSUM_COEXISTENCE", uint32(FlagUDPChecksumCoexistence), 0x4},
		{"ENCAPSULATION_IEEE_802_3", uint32(EncapsulationIEEE8023), 0x2},
		{"STATUS_CURRENT_CONFIG", uint32(StatusTaskOffloadCurrentConfig), 0x40020006},
		{"STATUS_HARDWARE_CAPABILITIES", uint32(StatusTaskOffloadHardwareCapabilities), 0x40020007},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = 0x%x, want 0x%x", tt.name, tt.got, tt.want)
		}
	}
}

func TestMaskJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    EncryptionAlgorithms
		wantErr error
	}{
		{`["aes-gcm-128", "aes-cbc-256"]`, EncrAESGCM128 | EncrAESCBC256, nil},
		{`["AES_GCM_128"]`, EncrAESGCM128, nil},
		{`["IPSEC_OFFLOAD_V2_ENCRYPTION_3_DES_CBC"]`, Encr3DESCBC, nil},
		{`["Null"]`, EncrNone, nil},
		{`["0x00000200"]`, 0x200, nil},
		{`[]`, 0, nil},
		{`8`, EncrAESGCM128, nil},
		{`["aes-gcm-512"]`, 0, ErrInvalid},
		{`"aes-gcm-128"`, 0, ErrInvalid},
		{`[1]`, 0, ErrInvalid},
		{`-1`, 0, ErrInvalid},
	}
	for _, tt := range tests {
		var m EncryptionAlgorithms
		err := json.Unmarshal([]byte(tt.in), &m)
		if tt.wantErr == nil {
			checkErr(t, err, nil)
		} else {
			checkErr(t, err, tt.wantErr, "encryption_algorithms")
		}
		if m != tt.want {
			t.Errorf("Unmarshal(%s) = %#x, want %#x", tt.in, uint32(m), uint32(tt.want))
		}
	}

	// null leaves the value alone.
	m := EncrNone
	if err := json.Unmarshal([]byte(`null`), &m); err != nil || m != EncrNone {
		t.Errorf("Unmarshal(null) = %v, %v; want unchanged", m, err)
	}

	// Every table marshals to names and reads them back.
	for _, v := range []any{
		ptr(Encapsulation(0x1f)), ptr(UDPESPTypes(0xf)), ptr(AuthenticationAlgorithms(0x3f)),
		ptr(EncryptionAlgorithms(0x1ff)), ptr(OffloadFlags(0x6)), ptr(ExtEncryption(0xf)),
		ptr(ExtIntegrity(0x3)), ptr(ICVLengths(0x7)),
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Marshal(%T): %v", v, err)
		}
		if b[0] != '[' {
			t.Errorf("Marshal(%T) = %s, want a list", v, b)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Errorf("Unmarshal(%s) into %T: %v", b, v, err)
		}
	}
}

func TestICVLengthsJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    ICVLengths
		wantErr bool
	}{
		{`[16]`, ICV16, false},
		{`[8, 12, 16]`, ICV8 | ICV12 | ICV16, false},
		{`[]`, 0, false},
		{`[10]`, 0, true},
		{`["16"]`, 0, true},
	}
	for _, tt := range tests {
		var m ICVLengths
		err := json.Unmarshal([]byte(tt.in), &m)
		if tt.wantErr {
			checkErr(t, err, ErrInvalid, "gcm_icv_lengths")
			continue
		}
		checkErr(t, err, nil)
		if m != tt.want {
			t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, m, tt.want)
		}
	}
	if _, err := json.Marshal(ICVLengths(0x8)); err == nil {
		t.Error("Marshal of unknown ICV bit succeeded")
	}
	if got := (ICV8 | ICV16).Lengths(); !slices.Equal(got, []int{8, 16}) {
		t.Errorf("Lengths() = %v", got)
	}
}

func TestAlgorithmNames(t *testing.T) {
	wantEnc := []string{"null", "des-cbc", "3des-cbc", "aes-cbc-128", "aes-cbc-192", "aes-cbc-256",
		"aes-ctr-128", "aes-ctr-192", "aes-ctr-256", "aes-gcm-128", "aes-gcm-192", "aes-gcm-256",
		"aes-gmac-128", "aes-gmac-192", "aes-gmac-256", "chacha20-poly1305"}
	wantInteg := []string{"none", "hmac-md5-96", "hmac-sha1-96", "hmac-sha256-128", "hmac-sha384-192",
		"hmac-sha512-256", "aes-gmac-128", "aes-gmac-192", "aes-gmac-256"}
	if got := EncryptionNames(); !slices.Equal(got, wantEnc) {
		t.Errorf("EncryptionNames() = %v", got)
	}
	if got := IntegrityNames(); !slices.Equal(got, wantInteg) {
		t.Errorf("IntegrityNames() = %v", got)
	}
	legacy := map[string]bool{"des-cbc": true, "3des-cbc": true, "hmac-md5-96": true}
	for _, n := range append(wantEnc, wantInteg...) {
		if IsLegacy(n) != legacy[n] {
			t.Errorf("IsLegacy(%q) = %v", n, IsLegacy(n))
		}
	}
	// Every NDIS bit names exactly the canonical algorithm it stands for.
	for _, a := range encAlgs {
		if a.ndis != 0 && a.ndis.Names()[0] != a.name {
			t.Errorf("%s: NDIS bit %v is named %v", a.name, a.ndis, a.ndis.Names())
		}
		if n := boolCount(a.ndis != 0, a.gmacAuth != 0, a.ext != 0); n != 1 {
			t.Errorf("%s: %d kinds of capability bit, want 1", a.name, n)
		}
	}
	for _, a := range integAlgs {
		if a.ndis != 0 && a.ndis.Names()[0] != a.name {
			t.Errorf("%s: NDIS bit %v is named %v", a.name, a.ndis, a.ndis.Names())
		}
	}
}

func boolCount(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestEnabledAlgorithmsESPGMACNeedsEncrNone(t *testing.T) {
	r := Record{AuthenticationAlgorithms: AuthAESGCM128}
	got := r.EnabledAlgorithms()
	if slices.Contains(got.Encryption, EncAESGMAC128) {
		t.Errorf("ESP GMAC enabled without ENCRYPTION_NONE: %v", got.Encryption)
	}
	if !slices.Contains(got.Integrity, IntegAESGMAC128) {
		t.Errorf("AH GMAC missing: %v", got.Integrity)
	}
	r.EncryptionAlgorithms = EncrNone
	if got := r.EnabledAlgorithms(); !slices.Equal(got.Encryption, []string{EncNull, EncAESGMAC128}) {
		t.Errorf("with ENCRYPTION_NONE: %v", got.Encryption)
	}
}
