package capabilities

import (
	"bytes"
	"encoding/json"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestApply(t *testing.T) {
	full := mustProfile(t, ProfileFull)
	tests := []struct {
		name     string
		base     Record
		o        Overrides
		want     func(Record) Record
		wantErr  error
		wantText string
	}{
		{name: "empty", base: full, want: func(r Record) Record { return r }},
		{name: "every field", base: Record{}, o: Overrides{
			Encapsulation: ptr(EncapsulationIEEE8023 | EncapsulationNull), IPv6Supported: ptr(true), IPv4Options: ptr(true),
			IPv6NonIPsecExtensionHeaders: ptr(true), Ah: ptr(true), Esp: ptr(true), AhEspCombined: ptr(true),
			Transport: ptr(true), Tunnel: ptr(true), TransportTunnelCombined: ptr(true), LsoSupported: ptr(true),
			ExtendedSequenceNumbers: ptr(true), UdpEsp: ptr(UDPESPTunnel), AuthenticationAlgorithms: ptr(AuthSHA256),
			EncryptionAlgorithms: ptr(EncrAESGCM128), SaOffloadCapacity: ptr(uint32(7)), OffloadFlags: ptr(FlagUDPChecksumCoexistence),
			Extensions: &ExtensionOverrides{Encryption: ptr(ExtAESCTR128), Integrity: ptr(ExtHMACSHA384192), GCMICVLengths: ptr(ICV12)},
			Limits: &LimitOverrides{MaxReplayWindow: ptr(uint32(128)), SAsPerDirection: ptr(uint32(3)),
				PacketOffload: ptr(true), LegacyAlgorithms: ptr(true)},
		}, want: func(Record) Record {
			return Record{
				Encapsulation: EncapsulationIEEE8023 | EncapsulationNull, IPv6Supported: true, IPv4Options: true,
				IPv6NonIPsecExtensionHeaders: true, Ah: true, Esp: true, AhEspCombined: true, Transport: true, Tunnel: true,
				TransportTunnelCombined: true, LsoSupported: true, ExtendedSequenceNumbers: true, UdpEsp: UDPESPTunnel,
				AuthenticationAlgorithms: AuthSHA256, EncryptionAlgorithms: EncrAESGCM128, SaOffloadCapacity: 7,
				OffloadFlags: FlagUDPChecksumCoexistence,
				Extensions:   Extensions{Encryption: ExtAESCTR128, Integrity: ExtHMACSHA384192, GCMICVLengths: ICV12},
				Limits:       Limits{MaxReplayWindow: 128, SAsPerDirection: 3, PacketOffload: true, LegacyAlgorithms: true},
			}
		}},
		{name: "mask replaced, not merged", base: full, o: Overrides{EncryptionAlgorithms: ptr(EncrAESCBC256)},
			want: func(r Record) Record { r.EncryptionAlgorithms = EncrAESCBC256; return r }},
		{name: "tunnel off needs dependents off", base: full, o: Overrides{Tunnel: ptr(false)},
			wantErr: ErrInvalid, wantText: "transport_tunnel_combined requires tunnel"},
		{name: "tunnel off with dependents", base: full,
			o: Overrides{Tunnel: ptr(false), TransportTunnelCombined: ptr(false), UdpEsp: ptr(UDPESPTransport)},
			want: func(r Record) Record {
				r.Tunnel, r.TransportTunnelCombined, r.UdpEsp = false, false, UDPESPTransport
				return r
			}},
		{name: "ah off with combined", base: full, o: Overrides{Ah: ptr(false)},
			wantErr: ErrInvalid, wantText: "ah_esp_combined requires ah"},
		{name: "unknown bits", base: full, o: Overrides{EncryptionAlgorithms: ptr(EncryptionAlgorithms(0x200))},
			wantErr: ErrInvalid, wantText: "encryption_algorithms has unknown bits 0x00000200"},
		{name: "legacy bits without switch", base: full, o: Overrides{Limits: &LimitOverrides{LegacyAlgorithms: ptr(false)}},
			wantErr: ErrInvalid, wantText: "legacy algorithms des-cbc, 3des-cbc, hmac-md5-96"},
		{name: "gcm without icv", base: full, o: Overrides{Extensions: &ExtensionOverrides{GCMICVLengths: ptr(ICVLengths(0))}},
			wantErr: ErrInvalid, wantText: "gcm_icv_lengths is empty"},
		{name: "no 802.3", base: full, o: Overrides{Encapsulation: ptr(EncapsulationNull)},
			wantErr: ErrInvalid, wantText: "ieee_802_3"},
		{name: "zero capacity", base: full, o: Overrides{SaOffloadCapacity: ptr(uint32(0))},
			wantErr: ErrInvalid, wantText: "sa_offload_capacity must not be 0"},
		{name: "zero capacity with offload off", base: full,
			o: Overrides{SaOffloadCapacity: ptr(uint32(0)), Ah: ptr(false), Esp: ptr(false), AhEspCombined: ptr(false)},
			want: func(r Record) Record {
				r.SaOffloadCapacity, r.Ah, r.Esp, r.AhEspCombined = 0, false, false, false
				return r
			}},
		{name: "replay window too large", base: full, o: Overrides{Limits: &LimitOverrides{MaxReplayWindow: ptr(uint32(ReplayWindowLimit + 1))}},
			wantErr: ErrInvalid, wantText: "max_replay_window 32769 is above 32768"},
		{name: "several problems reported together", base: full,
			o:       Overrides{Encapsulation: ptr(EncapsulationNull), SaOffloadCapacity: ptr(uint32(0))},
			wantErr: ErrInvalid, wantText: "ieee_802_3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := tt.base
			got, err := tt.base.Apply(tt.o)
			checkErr(t, err, tt.wantErr, tt.wantText)
			if tt.base != base {
				t.Error("Apply changed its receiver")
			}
			if tt.want != nil {
				if want := tt.want(tt.base); got != want {
					t.Errorf("got  %+v\nwant %+v", got, want)
				}
			}
		})
	}
}

func TestConfigBuild(t *testing.T) {
	tests := []struct {
		name     string
		c        Config
		wantErr  error
		wantText string
		check    func(t *testing.T, hw, cur Record)
	}{
		{name: "default profile", c: Config{}, check: func(t *testing.T, hw, cur Record) {
			if hw != mustProfile(t, ProfileFull) || cur != DefaultConfig(hw) {
				t.Error("not the full profile with its default config")
			}
		}},
		{name: "hardware override flows into current", c: Config{Profile: ProfileMlx5,
			Hardware: Overrides{EncryptionAlgorithms: ptr(EncrAESGCM128)}},
			check: func(t *testing.T, hw, cur Record) {
				if hw.EncryptionAlgorithms != EncrAESGCM128 || cur.EncryptionAlgorithms != EncrAESGCM128 {
					t.Errorf("hw %v cur %v", hw.EncryptionAlgorithms, cur.EncryptionAlgorithms)
				}
			}},
		{name: "current override", c: Config{Profile: ProfileNetdevsim, Current: Overrides{Tunnel: ptr(false)}},
			check: func(t *testing.T, hw, cur Record) {
				if !hw.Tunnel || cur.Tunnel {
					t.Errorf("hw tunnel %v cur tunnel %v", hw.Tunnel, cur.Tunnel)
				}
			}},
		{name: "ixgbe with NDIS-required tunnel added", c: Config{Profile: ProfileIxgbe, Hardware: Overrides{Tunnel: ptr(true)}},
			check: func(t *testing.T, hw, cur Record) {
				if !cur.Tunnel || len(hw.Deviations()) != 0 {
					t.Errorf("tunnel %v deviations %q", cur.Tunnel, hw.Deviations())
				}
			}},
		{name: "current exceeds hardware", c: Config{Profile: ProfileIxgbe, Current: Overrides{Tunnel: ptr(true)}},
			wantErr: ErrNotSupported, wantText: "exceeds the hardware capabilities: tunnel"},
		{name: "current algorithm exceeds hardware", c: Config{Profile: ProfileNetdevsim,
			Current: Overrides{EncryptionAlgorithms: ptr(EncrAESGCM128 | EncrAESCBC128)}},
			wantErr: ErrNotSupported, wantText: "encryption_algorithms [aes-cbc-128]"},
		{name: "current per-direction limit removed", c: Config{Profile: ProfileIxgbe,
			Current: Overrides{Limits: &LimitOverrides{SAsPerDirection: ptr(uint32(0))}}},
			wantErr: ErrNotSupported, wantText: "limits.sas_per_direction 0 (hardware: 1024)"},
		{name: "current invalid", c: Config{Current: Overrides{Esp: ptr(false)}},
			wantErr: ErrInvalid, wantText: "ah_esp_combined requires esp"},
		{name: "hardware invalid", c: Config{Hardware: Overrides{Transport: ptr(false)}},
			wantErr: ErrInvalid, wantText: "transport_tunnel_combined requires transport"},
		{name: "hardware esp without algorithm", c: Config{Profile: ProfileIxgbe,
			Hardware: Overrides{EncryptionAlgorithms: ptr(EncryptionAlgorithms(0))}},
			wantErr: ErrInvalid, wantText: "no usable ESP algorithm"},
		{name: "hardware esp cbc without integrity", c: Config{Profile: ProfileIxgbe,
			Hardware: Overrides{EncryptionAlgorithms: ptr(EncrAESCBC128)}},
			wantErr: ErrInvalid, wantText: "no usable ESP algorithm"},
		{name: "hardware ah without integrity", c: Config{Profile: ProfileIxgbe, Hardware: Overrides{Ah: ptr(true)}},
			wantErr: ErrInvalid, wantText: "offers AH but no integrity algorithm"},
		{name: "unknown profile", c: Config{Profile: "bogus"}, wantErr: ErrInvalid, wantText: `profile "bogus" is unknown`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hw, cur, err := tt.c.Build()
			checkErr(t, err, tt.wantErr, tt.wantText)
			if tt.check != nil && err == nil {
				tt.check(t, hw, cur)
			}
		})
	}
}

func TestConfigFromYAMLAndJSON(t *testing.T) {
	const doc = `
profile: ixgbe
hardware:
  tunnel: true
  encryption_algorithms: [aes-gcm-128, AES_GCM_256]
  extensions:
    gcm_icv_lengths: [12, 16]
  limits:
    max_replay_window: 1024
current:
  encryption_algorithms: [aes-gcm-256]
  extensions:
    gcm_icv_lengths: [16]
`
	var c Config
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	hw, cur, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	if !hw.Tunnel || hw.EncryptionAlgorithms != EncrAESGCM128|EncrAESGCM256 || hw.Extensions.GCMICVLengths != ICV12|ICV16 ||
		hw.Limits.MaxReplayWindow != 1024 || hw.Limits.SAsPerDirection != 1024 {
		t.Errorf("hardware = %+v", hw)
	}
	if cur.EncryptionAlgorithms != EncrAESGCM256 || cur.Extensions.GCMICVLengths != ICV16 || !cur.Tunnel {
		t.Errorf("current = %+v", cur)
	}

	// Typos are caught by strict decoding.
	if err := yaml.UnmarshalStrict([]byte("hardware:\n  tunell: true\n"), &Config{}); err == nil {
		t.Error("unknown field accepted")
	}
	// Bad names are reported by the mask types.
	err = yaml.Unmarshal([]byte("hardware:\n  encryption_algorithms: [aes-gcm-129]\n"), &Config{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`unknown name "aes-gcm-129"`)) {
		t.Errorf("bad name error = %v", err)
	}

	// An Overrides round-trips through JSON, omitting unset fields.
	o := Overrides{Esp: ptr(false), UdpEsp: ptr(UDPESPTransport), Limits: &LimitOverrides{PacketOffload: ptr(true)}}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"esp":false,"udp_esp":["transport"],"limits":{"packet_offload":true}}`; string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	b, err = json.Marshal(Config{Profile: "mlx5"})
	if err != nil || string(b) != `{"profile":"mlx5"}` {
		t.Errorf("empty Config JSON = %s, %v", b, err)
	}
}

func TestRecordJSON(t *testing.T) {
	for _, p := range Profiles() {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		var back Profile
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		if back.Hardware != p.Hardware {
			t.Errorf("%s: JSON round trip changed the record:\n%s", p.Name, b)
		}
	}
	r := Record{Encapsulation: EncapsulationIEEE8023, Esp: true, Transport: true, EncryptionAlgorithms: EncrAESGCM128,
		SaOffloadCapacity: 33, Extensions: Extensions{GCMICVLengths: ICV16}, Limits: Limits{MaxReplayWindow: 64}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"encapsulation":["ieee_802_3"],"ipv6_supported":false,"ipv4_options":false,` +
		`"ipv6_non_ipsec_extension_headers":false,"ah":false,"esp":true,"ah_esp_combined":false,"transport":true,` +
		`"tunnel":false,"transport_tunnel_combined":false,"lso_supported":false,"extended_sequence_numbers":false,` +
		`"udp_esp":[],"authentication_algorithms":[],"encryption_algorithms":["aes-gcm-128"],"sa_offload_capacity":33,` +
		`"offload_flags":[],"extensions":{"encryption":[],"integrity":[],"gcm_icv_lengths":[16]},` +
		`"limits":{"max_replay_window":64,"sas_per_direction":0,"packet_offload":false,"legacy_algorithms":false}}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
}

// FuzzRecordJSON feeds arbitrary JSON (as an API or a configuration file
// would) to Record and Config decoding: no panics, and whatever decodes
// survives a JSON round trip unchanged.
func FuzzRecordJSON(f *testing.F) {
	for _, p := range Profiles() {
		b, _ := json.Marshal(p.Hardware)
		f.Add(b)
	}
	f.Add([]byte(`{"encryption_algorithms":["0x80000000","AES_GCM_128"],"udp_esp":15,"extensions":{"gcm_icv_lengths":[8]}}`))
	f.Add([]byte(`{"profile":"ixgbe","current":{"tunnel":true}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c Config
		if json.Unmarshal(data, &c) == nil {
			_, _, _ = c.Build()
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", r, err)
		}
		var back Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if back != r {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, back)
		}
		_ = r.Validate()
	})
}
