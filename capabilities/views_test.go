package capabilities

import (
	"slices"
	"testing"
)

func TestNDISView(t *testing.T) {
	got := mustProfile(t, ProfileIxgbe).NDISView()
	want := []Field{
		{"Encapsulation", "0x00000002 (IEEE_802_3)"},
		{"IPv6Supported", "TRUE"},
		{"IPv4Options", "FALSE"},
		{"IPv6NonIPsecExtensionHeaders", "FALSE"},
		{"Ah", "FALSE"},
		{"Esp", "TRUE"},
		{"AhEspCombined", "FALSE"},
		{"Transport", "TRUE"},
		{"Tunnel", "FALSE"},
		{"TransportTunnelCombined", "FALSE"},
		{"LsoSupported", "FALSE"},
		{"ExtendedSequenceNumbers", "FALSE"},
		{"UdpEsp", "0x00000000 (NONE)"},
		{"AuthenticationAlgorithms", "0x00000000"},
		{"EncryptionAlgorithms", "0x00000008 (AES_GCM_128)"},
		{"SaOffloadCapacity", "2048"},
		{"NDIS_OFFLOAD.Flags", "0x00000006 (TCP_CHECKSUM_COEXISTENCE|UDP_CHECKSUM_COEXISTENCE)"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("NDISView() =\n%q\nwant\n%q", got, want)
	}

	full := mustProfile(t, ProfileFull).NDISView()
	values := map[string]string{}
	for _, f := range full {
		values[f.Name] = f.Value
	}
	for name, want := range map[string]string{
		"AuthenticationAlgorithms": "0x0000003f (MD5|SHA_1|SHA_256|AES_GCM_128|AES_GCM_192|AES_GCM_256)",
		"EncryptionAlgorithms":     "0x000001ff (NONE|DES_CBC|3_DES_CBC|AES_GCM_128|AES_GCM_192|AES_GCM_256|AES_CBC_128|AES_CBC_192|AES_CBC_256)",
		"UdpEsp": "0x0000000f (UDP_ESP_ENCAPSULATION_TRANSPORT|UDP_ESP_ENCAPSULATION_TUNNEL|" +
			"TRANSPORT_OVER_UDP_ESP_ENCAPSULATION_TUNNEL|UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL)",
		"Tunnel": "TRUE",
	} {
		if values[name] != want {
			t.Errorf("full %s = %q, want %q", name, values[name], want)
		}
	}
}

func TestSecnicView(t *testing.T) {
	tests := []struct {
		profile string
		want    []Field
	}{
		{ProfileIxgbe, []Field{
			{"extensions.encryption", "none"},
			{"extensions.integrity", "none"},
			{"extensions.gcm_icv_lengths", "16"},
			{"limits.max_replay_window", "4096"},
			{"limits.sas_per_direction", "1024"},
			{"limits.packet_offload", "no"},
			{"limits.legacy_algorithms", "no"},
			{"algorithms.encryption", "aes-gcm-128"},
			{"algorithms.integrity", "none"},
		}},
		{ProfileFull, []Field{
			{"extensions.encryption", "chacha20-poly1305, aes-ctr-128, aes-ctr-192, aes-ctr-256"},
			{"extensions.integrity", "hmac-sha384-192, hmac-sha512-256"},
			{"extensions.gcm_icv_lengths", "8, 12, 16"},
			{"limits.max_replay_window", "4096"},
			{"limits.sas_per_direction", "shared (no per-direction limit)"},
			{"limits.packet_offload", "yes"},
			{"limits.legacy_algorithms", "yes"},
			{"algorithms.encryption", "null, des-cbc, 3des-cbc, aes-cbc-128, aes-cbc-192, aes-cbc-256, aes-ctr-128, aes-ctr-192, " +
				"aes-ctr-256, aes-gcm-128, aes-gcm-192, aes-gcm-256, aes-gmac-128, aes-gmac-192, aes-gmac-256, chacha20-poly1305"},
			{"algorithms.integrity", "hmac-md5-96, hmac-sha1-96, hmac-sha256-128, hmac-sha384-192, hmac-sha512-256, " +
				"aes-gmac-128, aes-gmac-192, aes-gmac-256"},
		}},
	}
	for _, tt := range tests {
		if got := mustProfile(t, tt.profile).SecnicView(); !slices.Equal(got, tt.want) {
			t.Errorf("%s SecnicView() =\n%q\nwant\n%q", tt.profile, got, tt.want)
		}
	}
}

func TestLinuxView(t *testing.T) {
	full := mustProfile(t, ProfileFull)
	withLSO := full
	withLSO.LsoSupported = true
	espOff := DefaultConfig(full)
	espOff.Esp, espOff.AhEspCombined = false, false
	noCsum := DefaultConfig(full)
	noCsum.OffloadFlags = FlagTCPChecksumCoexistence
	ahOnly, err := full.Apply(Overrides{Esp: ptr(false), AhEspCombined: ptr(false), UdpEsp: ptr(UDPESPNone)})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		hw, cur Record
		want    []string
	}{
		{"full default", full, DefaultConfig(full), []string{
			"esp-hw-offload: on", "esp-tx-csum-hw-offload: on", "tx-esp-segmentation: off [fixed]"}},
		{"esp off", full, espOff, []string{
			"esp-hw-offload: off", "esp-tx-csum-hw-offload: off", "tx-esp-segmentation: off [fixed]"}},
		{"only tcp coexistence", full, noCsum, []string{
			"esp-hw-offload: on", "esp-tx-csum-hw-offload: off", "tx-esp-segmentation: off [fixed]"}},
		{"hardware with lso", withLSO, DefaultConfig(withLSO), []string{
			"esp-hw-offload: on", "esp-tx-csum-hw-offload: on", "tx-esp-segmentation: on"}},
		{"hardware without esp", ahOnly, DefaultConfig(ahOnly), []string{
			"esp-hw-offload: off [fixed]", "esp-tx-csum-hw-offload: off [fixed]", "tx-esp-segmentation: off [fixed]"}},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range LinuxView(tt.hw, tt.cur) {
			got = append(got, f.String())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: LinuxView = %q, want %q", tt.name, got, tt.want)
		}
	}
	bits := []string{}
	for _, f := range LinuxView(full, full) {
		bits = append(bits, f.NetdevFeature)
	}
	if want := []string{"NETIF_F_HW_ESP", "NETIF_F_HW_ESP_TX_CSUM", "NETIF_F_GSO_ESP"}; !slices.Equal(bits, want) {
		t.Errorf("netdev bits = %v", bits)
	}

	m := mustManager(t, Config{})
	if _, err := m.SetLinuxFeature(EthtoolESPHWOffload, false); err != nil {
		t.Fatal(err)
	}
	if got := m.LinuxView()[0].String(); got != "esp-hw-offload: off" {
		t.Errorf("after ethtool -K esp-hw-offload off: %q", got)
	}
	if _, err := m.SetLinuxFeature(EthtoolESPHWOffload, true); err != nil {
		t.Fatal(err)
	}
	if got := m.LinuxView()[1].String(); got != "esp-tx-csum-hw-offload: on" {
		t.Errorf("after ethtool -K esp-hw-offload on: %q", got)
	}
}
