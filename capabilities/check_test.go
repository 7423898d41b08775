package capabilities

import (
	"encoding/json"
	"testing"
)

func TestCheck(t *testing.T) {
	gcm := BundleRequest{Protocols: ProtocolESP, Mode: ModeTransport, Encryption: EncAESGCM128, Integrity: IntegNone}
	with := func(f func(*BundleRequest)) BundleRequest {
		r := gcm
		f(&r)
		return r
	}
	cbc := with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncAESCBC128, IntegHMACSHA256128 })
	ah := BundleRequest{Protocols: ProtocolAH, Mode: ModeTransport, Integrity: IntegHMACSHA256128}
	legacyOn := Config{Current: Overrides{Limits: &LimitOverrides{LegacyAlgorithms: ptr(true)}}}

	tests := []struct {
		name    string
		config  Config
		req     BundleRequest
		wantErr error
		text    string
	}{
		// Accepted bundles.
		{name: "full gcm", req: gcm},
		{name: "ndis gcm", config: Config{Profile: ProfileNDIS}, req: gcm},
		{name: "ixgbe gcm", config: Config{Profile: ProfileIxgbe}, req: with(func(r *BundleRequest) { r.IPv6 = true; r.ICVLength = 16 })},
		{name: "mlx5 gcm-256 tunnel esn packet", config: Config{Profile: ProfileMlx5},
			req: with(func(r *BundleRequest) {
				r.Encryption, r.Mode, r.ESN, r.PacketOffload = EncAESGCM256, ModeTunnel, true, true
			})},
		{name: "netdevsim gcm tunnel", config: Config{Profile: ProfileNetdevsim}, req: with(func(r *BundleRequest) { r.Mode = ModeTunnel })},
		{name: "full cbc", req: cbc},
		{name: "full ctr sha512", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncAESCTR256, IntegHMACSHA512256 })},
		{name: "full null sha384", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncNull, IntegHMACSHA384192 })},
		{name: "full chacha icv 16", req: with(func(r *BundleRequest) { r.Encryption, r.ICVLength = EncChaCha20Poly1305, 16 })},
		{name: "full esp gmac", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncAESGMAC192, "" })},
		{name: "full gcm icv 8", req: with(func(r *BundleRequest) { r.ICVLength = 8 })},
		{name: "full ah", req: ah},
		{name: "full ah gmac", req: with(func(r *BundleRequest) { *r = ah; r.Integrity = IntegAESGMAC256 })},
		{name: "full ah+esp", req: with(func(r *BundleRequest) { r.Protocols, r.AHIntegrity = ProtocolAHESP, IntegHMACSHA196 })},
		{name: "full ah+esp same integrity", req: with(func(r *BundleRequest) { *r = cbc; r.Protocols = ProtocolAHESP })},
		{name: "full transport over tunnel udp", req: with(func(r *BundleRequest) {
			r.Mode, r.UDPESP = ModeTransportOverTunnel, UDPESPTransportOverUDPTunnel
		})},
		{name: "full udp tunnel", req: with(func(r *BundleRequest) { r.Mode, r.UDPESP = ModeTunnel, UDPESPTunnel })},
		{name: "mlx5 udp transport", config: Config{Profile: ProfileMlx5}, req: with(func(r *BundleRequest) { r.UDPESP = UDPESPTransport })},
		{name: "replay window at maximum", req: with(func(r *BundleRequest) { r.ReplayWindow = 4096 })},
		{name: "legacy allowed and enabled", config: Config{Current: Overrides{
			Limits: &LimitOverrides{LegacyAlgorithms: ptr(true)}, EncryptionAlgorithms: ptr(EncrDESCBC), AuthenticationAlgorithms: ptr(AuthMD5)}},
			req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncDESCBC, IntegHMACMD596 })},

		// Protocols.
		{name: "no protocol", req: with(func(r *BundleRequest) { r.Protocols = 0 }), wantErr: ErrInvalid, text: "use esp, ah or ah+esp"},
		{name: "esp disabled by parameters", config: Config{Current: Overrides{Esp: ptr(false), AhEspCombined: ptr(false)}}, req: gcm,
			wantErr: ErrDisabled, text: "ESP offload is disabled in the current configuration (enable ESP with the offload parameter IPsecV2 = ESP_ENABLED"},
		{name: "ah on ixgbe", config: Config{Profile: ProfileIxgbe}, req: ah,
			wantErr: ErrNotSupported, text: `AH offload is not supported by the hardware (the hardware profile "ixgbe" does not include it`},
		{name: "ah disabled", config: Config{Current: Overrides{Ah: ptr(false), AhEspCombined: ptr(false)}}, req: ah,
			wantErr: ErrDisabled, text: "IPsecV2 = AH_ENABLED or AH_AND_ESP_ENABLED"},
		{name: "ah+esp combined off", config: Config{Current: Overrides{AhEspCombined: ptr(false)}},
			req:     with(func(r *BundleRequest) { r.Protocols, r.AHIntegrity = ProtocolAHESP, IntegHMACSHA196 }),
			wantErr: ErrDisabled, text: "AH+ESP bundles (ah_esp_combined) is disabled"},

		// Modes, packet offload, IPv6.
		{name: "no mode", req: with(func(r *BundleRequest) { r.Mode = 0 }), wantErr: ErrInvalid, text: "is not a mode"},
		{name: "tunnel on ixgbe", config: Config{Profile: ProfileIxgbe}, req: with(func(r *BundleRequest) { r.Mode = ModeTunnel }),
			wantErr: ErrNotSupported, text: "tunnel mode is not supported by the hardware"},
		{name: "tunnel switched off", config: Config{Current: Overrides{Tunnel: ptr(false), TransportTunnelCombined: ptr(false), UdpEsp: ptr(UDPESPTransport)}},
			req:     with(func(r *BundleRequest) { r.Mode = ModeTunnel }),
			wantErr: ErrDisabled, text: "tunnel mode is disabled in the current configuration (switch on the feature tunnel"},
		{name: "transport over tunnel on mlx5", config: Config{Profile: ProfileMlx5}, req: with(func(r *BundleRequest) { r.Mode = ModeTransportOverTunnel }),
			wantErr: ErrNotSupported, text: "transport over tunnel"},
		{name: "transport switched off", config: Config{Current: Overrides{Transport: ptr(false), TransportTunnelCombined: ptr(false), UdpEsp: ptr(UDPESPTunnel)}},
			req: gcm, wantErr: ErrDisabled, text: "transport mode is disabled"},
		{name: "packet offload on ixgbe", config: Config{Profile: ProfileIxgbe}, req: with(func(r *BundleRequest) { r.PacketOffload = true }),
			wantErr: ErrNotSupported, text: "packet offload is not supported"},
		{name: "packet offload off", config: Config{Current: Overrides{Limits: &LimitOverrides{PacketOffload: ptr(false)}}},
			req: with(func(r *BundleRequest) { r.PacketOffload = true }), wantErr: ErrDisabled, text: "feature packet_offload"},
		{name: "ipv6 off", config: Config{Current: Overrides{IPv6Supported: ptr(false)}}, req: with(func(r *BundleRequest) { r.IPv6 = true }),
			wantErr: ErrDisabled, text: "IPv6 SAs is disabled"},
		{name: "ipv6 not in hardware", config: Config{Hardware: Overrides{IPv6Supported: ptr(false)}}, req: with(func(r *BundleRequest) { r.IPv6 = true }),
			wantErr: ErrNotSupported, text: "IPv6 SAs"},

		// ESP transform shape.
		{name: "ah with encryption", req: with(func(r *BundleRequest) { *r = ah; r.Encryption = EncAESCBC128 }),
			wantErr: ErrInvalid, text: "AH-only bundle"},
		{name: "esp without encryption", req: with(func(r *BundleRequest) { r.Encryption = "" }),
			wantErr: ErrInvalid, text: "without encryption algorithm"},
		{name: "unknown encryption", req: with(func(r *BundleRequest) { r.Encryption = "aes-gcm-512" }),
			wantErr: ErrInvalid, text: `encryption "aes-gcm-512" is unknown`},
		{name: "unknown integrity", req: with(func(r *BundleRequest) { *r = cbc; r.Integrity = "hmac-sha3" }),
			wantErr: ErrInvalid, text: `integrity "hmac-sha3" is unknown`},
		{name: "aead with integrity", req: with(func(r *BundleRequest) { r.Integrity = IntegHMACSHA256128 }),
			wantErr: ErrInvalid, text: `carries its own ICV; set integrity to "none"`},
		{name: "esp gmac with integrity", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncAESGMAC128, IntegAESGMAC128 }),
			wantErr: ErrInvalid, text: "carries its own ICV"},
		{name: "cbc without integrity", req: with(func(r *BundleRequest) { r.Encryption = EncAESCBC128 }),
			wantErr: ErrInvalid, text: "encryption without integrity"},
		{name: "null without integrity", req: with(func(r *BundleRequest) { r.Encryption = EncNull }),
			wantErr: ErrInvalid, text: "neither encryption nor integrity"},
		{name: "esp with gmac integrity", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncNull, IntegAESGMAC128 }),
			wantErr: ErrInvalid, text: `for ESP GMAC use encryption "aes-gmac-128" with integrity "none"`},

		// ESP algorithms against the records.
		{name: "encryption disabled (the documented message)",
			config: Config{Current: Overrides{EncryptionAlgorithms: ptr(allEncr &^ legacyEncr &^ EncrAESCBC128)}}, req: cbc,
			wantErr: ErrDisabled, text: `capabilities: encryption "aes-cbc-128" is disabled in the current configuration (enable it in the current offload configuration)`},
		{name: "encryption not in hardware", config: Config{Profile: ProfileNetdevsim},
			req:     with(func(r *BundleRequest) { r.Encryption = EncAESGCM256 }),
			wantErr: ErrNotSupported, text: `encryption "aes-gcm-256" is not supported by the hardware (the hardware profile "netdevsim"`},
		{name: "extension algorithm in ndis profile", config: Config{Profile: ProfileNDIS},
			req:     with(func(r *BundleRequest) { r.Encryption = EncChaCha20Poly1305 }),
			wantErr: ErrNotSupported, text: `encryption "chacha20-poly1305" is not supported`},
		{name: "extension algorithm disabled", config: Config{Current: Overrides{Extensions: &ExtensionOverrides{Encryption: ptr(ExtAESCTR128)}}},
			req:     with(func(r *BundleRequest) { r.Encryption = EncChaCha20Poly1305 }),
			wantErr: ErrDisabled, text: `encryption "chacha20-poly1305" is disabled`},
		{name: "esp gmac without ENCRYPTION_NONE", config: Config{Current: Overrides{EncryptionAlgorithms: ptr(EncrAESGCM128)}},
			req:     with(func(r *BundleRequest) { r.Encryption = EncAESGMAC128 }),
			wantErr: ErrDisabled, text: "AUTHENTICATION_AES_GCM_128 + ENCRYPTION_NONE"},
		{name: "legacy encryption not allowed", req: with(func(r *BundleRequest) { r.Encryption, r.Integrity = Enc3DESCBC, IntegHMACSHA196 }),
			wantErr: ErrDisabled, text: "legacy algorithms are not allowed in the current configuration (switch on the feature legacy_algorithms"},
		{name: "legacy allowed but algorithm off", config: legacyOn,
			req:     with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncDESCBC, IntegHMACSHA196 }),
			wantErr: ErrDisabled, text: `encryption "des-cbc" is disabled in the current configuration`},
		{name: "legacy integrity not allowed", req: with(func(r *BundleRequest) { *r = cbc; r.Integrity = IntegHMACMD596 }),
			wantErr: ErrDisabled, text: `integrity "hmac-md5-96" is a legacy algorithm`},
		{name: "legacy not in hardware", config: Config{Profile: ProfileMlx5},
			req:     with(func(r *BundleRequest) { r.Encryption, r.Integrity = EncDESCBC, IntegHMACSHA196 }),
			wantErr: ErrNotSupported, text: `encryption "des-cbc" is not supported`},
		{name: "integrity disabled", config: Config{Current: Overrides{Extensions: &ExtensionOverrides{Integrity: ptr(ExtHMACSHA384192)}}},
			req:     with(func(r *BundleRequest) { *r = cbc; r.Integrity = IntegHMACSHA512256 }),
			wantErr: ErrDisabled, text: `integrity "hmac-sha512-256" is disabled`},

		// ICV lengths.
		{name: "gcm icv 12 on ixgbe", config: Config{Profile: ProfileIxgbe}, req: with(func(r *BundleRequest) { r.ICVLength = 12 }),
			wantErr: ErrNotSupported, text: "AES-GCM ICV length 12 is not supported"},
		{name: "gcm icv 12 disabled", config: Config{Current: Overrides{Extensions: &ExtensionOverrides{GCMICVLengths: ptr(ICV16)}}},
			req:     with(func(r *BundleRequest) { r.ICVLength = 12 }),
			wantErr: ErrDisabled, text: "add it to extensions.gcm_icv_lengths"},
		{name: "gcm icv 10", req: with(func(r *BundleRequest) { r.ICVLength = 10 }),
			wantErr: ErrInvalid, text: "use 8, 12 or 16 bytes"},
		{name: "chacha icv 12", req: with(func(r *BundleRequest) { r.Encryption, r.ICVLength = EncChaCha20Poly1305, 12 }),
			wantErr: ErrInvalid, text: "always uses 16 bytes"},
		{name: "cbc with icv length", req: with(func(r *BundleRequest) { *r = cbc; r.ICVLength = 16 }),
			wantErr: ErrInvalid, text: "hmac-sha256-128 has a fixed 16-byte ICV"},

		// AH algorithms.
		{name: "ah without integrity", req: with(func(r *BundleRequest) { *r = ah; r.Integrity = IntegNone }),
			wantErr: ErrInvalid, text: "AH bundle without integrity"},
		{name: "ah unknown integrity", req: with(func(r *BundleRequest) { *r = ah; r.Integrity = "crc32" }),
			wantErr: ErrInvalid, text: `AH integrity "crc32" is unknown`},
		{name: "ah gmac disabled", config: Config{Current: Overrides{AuthenticationAlgorithms: ptr(AuthSHA256)}},
			req:     with(func(r *BundleRequest) { *r = ah; r.Integrity = IntegAESGMAC128 }),
			wantErr: ErrDisabled, text: `AH integrity "aes-gmac-128" is disabled`},
		{name: "ah legacy", req: with(func(r *BundleRequest) { *r = ah; r.Integrity = IntegHMACMD596 }),
			wantErr: ErrDisabled, text: "legacy"},
		{name: "ah+esp aead without ah integrity", req: with(func(r *BundleRequest) { r.Protocols = ProtocolAHESP }),
			wantErr: ErrInvalid, text: "AH bundle without integrity"},
		{name: "ah-only conflicting ah_integrity", req: with(func(r *BundleRequest) { *r = ah; r.AHIntegrity = IntegHMACSHA196 }),
			wantErr: ErrInvalid, text: "for an AH-only bundle give the AH algorithm in integrity"},
		{name: "esp-only with ah_integrity", req: with(func(r *BundleRequest) { r.AHIntegrity = IntegHMACSHA196 }),
			wantErr: ErrInvalid, text: "ESP-only bundle"},

		// ESN.
		{name: "esn on ixgbe", config: Config{Profile: ProfileIxgbe}, req: with(func(r *BundleRequest) { r.ESN = true }),
			wantErr: ErrNotSupported, text: "extended sequence numbers (ESN) is not supported"},
		{name: "esn off", config: Config{Current: Overrides{ExtendedSequenceNumbers: ptr(false)}}, req: with(func(r *BundleRequest) { r.ESN = true }),
			wantErr: ErrDisabled, text: "feature extended_sequence_numbers"},

		// UDP-ESP.
		{name: "udp-esp two types", req: with(func(r *BundleRequest) { r.UDPESP = UDPESPTransport | UDPESPTunnel }),
			wantErr: ErrInvalid, text: "is not one encapsulation type"},
		{name: "udp-esp with ah", req: with(func(r *BundleRequest) { *r = ah; r.UDPESP = UDPESPTransport }),
			wantErr: ErrInvalid, text: "RFC 3948 covers ESP only"},
		{name: "udp-esp mode mismatch", req: with(func(r *BundleRequest) { r.UDPESP = UDPESPTunnel }),
			wantErr: ErrInvalid, text: "does not match mode transport (use mode tunnel)"},
		{name: "udp-esp not in hardware", config: Config{Profile: ProfileMlx5},
			req:     with(func(r *BundleRequest) { r.Mode, r.UDPESP = ModeTunnel, UDPESPTunnel }),
			wantErr: ErrNotSupported, text: "UDP-ESP encapsulation tunnel is not supported"},
		{name: "udp-esp disabled", config: Config{Current: Overrides{UdpEsp: ptr(UDPESPTunnel)}},
			req:     with(func(r *BundleRequest) { r.UDPESP = UDPESPTransport }),
			wantErr: ErrDisabled, text: "feature udp_esp_transport"},

		// Anti-replay.
		{name: "replay window above hardware", req: with(func(r *BundleRequest) { r.ReplayWindow = 4097 }),
			wantErr: ErrNotSupported, text: "replay window 4097 is larger than the hardware maximum 4096"},
		{name: "replay window above current", config: Config{Current: Overrides{Limits: &LimitOverrides{MaxReplayWindow: ptr(uint32(64))}}},
			req:     with(func(r *BundleRequest) { r.ReplayWindow = 128 }),
			wantErr: ErrDisabled, text: "larger than the current maximum 64"},
		{name: "mlx5 replay window", config: Config{Profile: ProfileMlx5}, req: with(func(r *BundleRequest) { r.ReplayWindow = 512 }),
			wantErr: ErrNotSupported, text: "hardware maximum 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustManager(t, tt.config)
			checkErr(t, m.Check(tt.req), tt.wantErr, tt.text)
			// The pure function agrees on the kind of answer.
			hw, cur := m.Snapshot()
			checkErr(t, Check(hw, cur, tt.req), tt.wantErr)
		})
	}
}

func TestCheckHintWithoutProfile(t *testing.T) {
	ixgbe := mustProfile(t, ProfileIxgbe)
	err := Check(ixgbe, DefaultConfig(ixgbe), BundleRequest{Protocols: ProtocolAH, Mode: ModeTransport, Integrity: IntegHMACSHA196})
	checkErr(t, err, ErrNotSupported,
		"AH offload is not supported by the hardware (the hardware capabilities do not include it; choose another profile or add it with a hardware override)")
}

func TestBundleRequestJSON(t *testing.T) {
	in := `{"protocols":"ah+esp","mode":"transport-over-tunnel","ipv6":true,"encryption":"aes-gcm-256",` +
		`"integrity":"none","ah_integrity":"hmac-sha256-128","icv_length":16,"esn":true,"udp_esp":["transport_over_udp_tunnel"],` +
		`"replay_window":64,"packet_offload":true}`
	var r BundleRequest
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	want := BundleRequest{Protocols: ProtocolAHESP, Mode: ModeTransportOverTunnel, IPv6: true, Encryption: EncAESGCM256,
		Integrity: IntegNone, AHIntegrity: IntegHMACSHA256128, ICVLength: 16, ESN: true, UDPESP: UDPESPTransportOverUDPTunnel,
		ReplayWindow: 64, PacketOffload: true}
	if r != want {
		t.Errorf("decoded %+v\nwant %+v", r, want)
	}
	out, err := json.Marshal(r)
	if err != nil || string(out) != in {
		t.Errorf("encoded %s, %v\nwant %s", out, err, in)
	}
	for _, bad := range []string{`{"protocols":"gre"}`, `{"mode":"beet"}`} {
		if err := json.Unmarshal([]byte(bad), &BundleRequest{}); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
	// An invalid request can still be logged, but not read back.
	b, err := json.Marshal(BundleRequest{})
	if err != nil || string(b) != `{"protocols":"Protocols(0)","mode":"Mode(0)","ipv6":false}` {
		t.Errorf("Marshal(zero request) = %s, %v", b, err)
	}
	if err := json.Unmarshal(b, &BundleRequest{}); err == nil {
		t.Error("zero request read back without error")
	}
}

func TestCheckCapacity(t *testing.T) {
	tests := []struct {
		profile string
		u       Usage
		wantErr error
		text    string
	}{
		{ProfileNetdevsim, Usage{Bundles: 33, InboundSAs: 20, OutboundSAs: 13}, nil, ""},
		{ProfileNetdevsim, Usage{Bundles: 34, InboundSAs: 20, OutboundSAs: 14}, ErrCapacity, "34 bundles needed, 33 available"},
		{ProfileIxgbe, Usage{Bundles: 2048, InboundSAs: 1024, OutboundSAs: 1024}, nil, ""},
		{ProfileIxgbe, Usage{Bundles: 1025, InboundSAs: 1025}, ErrCapacity, "the inbound SA table is full: 1025 SAs needed, 1024 per direction"},
		{ProfileIxgbe, Usage{Bundles: 1025, OutboundSAs: 1025}, ErrCapacity, "outbound SA table"},
		{ProfileFull, Usage{Bundles: 4096, InboundSAs: 4096, OutboundSAs: 4096}, nil, ""},
	}
	for _, tt := range tests {
		m := mustManager(t, Config{Profile: tt.profile})
		checkErr(t, m.CheckCapacity(tt.u), tt.wantErr, tt.text)
	}
}

func TestErrorJSON(t *testing.T) {
	m := mustManager(t, Config{Profile: ProfileIxgbe})
	err := m.Check(BundleRequest{Protocols: ProtocolESP, Mode: ModeTransport, Encryption: EncAESGCM128, ESN: true})
	b, jerr := json.Marshal(err)
	if jerr != nil {
		t.Fatal(jerr)
	}
	want := `{"kind":"not_supported","subject":"extended sequence numbers (ESN)","problem":"is not supported by the hardware",` +
		`"hint":"the hardware profile \"ixgbe\" does not include it; choose another profile or add it with a hardware override",` +
		`"message":"capabilities: extended sequence numbers (ESN) is not supported by the hardware (the hardware profile \"ixgbe\" does not include it; choose another profile or add it with a hardware override)"}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
	for kind, name := range map[error]string{ErrInvalid: "invalid", ErrNotSupported: "not_supported", ErrDisabled: "disabled", ErrCapacity: "capacity", nil: ""} {
		if got := (&Error{Kind: kind}).KindName(); got != name {
			t.Errorf("KindName(%v) = %q, want %q", kind, got, name)
		}
	}
}
