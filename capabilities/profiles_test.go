package capabilities

import (
	"slices"
	"strings"
	"testing"
)

func TestProfiles(t *testing.T) {
	tests := []struct {
		name            string
		esp, ah, ahEsp  bool
		transport       bool
		tunnel          bool
		combinedModes   bool
		esn             bool
		ipv4Options     bool
		ipv6Ext         bool
		udpESP          UDPESPTypes
		auth            AuthenticationAlgorithms
		encr            EncryptionAlgorithms
		extEncr         ExtEncryption
		extInteg        ExtIntegrity
		icv             ICVLengths
		capacity        uint32
		perDirection    uint32
		packetOffload   bool
		legacy          bool
		wantDeviation   string // substring of one Deviations entry, "" for none
		defaultEncNames []string
	}{
		{
			name: ProfileFull, esp: true, ah: true, ahEsp: true, transport: true, tunnel: true, combinedModes: true,
			esn: true, ipv4Options: true, ipv6Ext: true, udpESP: 0xf, auth: 0x3f, encr: 0x1ff,
			extEncr: 0xf, extInteg: 0x3, icv: ICV8 | ICV12 | ICV16, capacity: 4096, packetOffload: true, legacy: true,
			wantDeviation: "extension algorithms",
			defaultEncNames: []string{"null", "aes-cbc-128", "aes-cbc-192", "aes-cbc-256", "aes-ctr-128", "aes-ctr-192", "aes-ctr-256",
				"aes-gcm-128", "aes-gcm-192", "aes-gcm-256", "aes-gmac-128", "aes-gmac-192", "aes-gmac-256", "chacha20-poly1305"},
		},
		{
			name: ProfileNDIS, esp: true, ah: true, ahEsp: true, transport: true, tunnel: true, combinedModes: true,
			esn: true, ipv4Options: true, ipv6Ext: true, udpESP: 0xf, auth: 0x3f, encr: 0x1ff,
			icv: ICV8 | ICV12 | ICV16, capacity: 4096, packetOffload: true, legacy: true,
			defaultEncNames: []string{"null", "aes-cbc-128", "aes-cbc-192", "aes-cbc-256",
				"aes-gcm-128", "aes-gcm-192", "aes-gcm-256", "aes-gmac-128", "aes-gmac-192", "aes-gmac-256"},
		},
		{
			name: ProfileIxgbe, esp: true, transport: true, encr: EncrAESGCM128, icv: ICV16,
			capacity: 2048, perDirection: 1024, wantDeviation: "Tunnel is FALSE",
			defaultEncNames: []string{"aes-gcm-128"},
		},
		{
			name: ProfileMlx5, esp: true, transport: true, tunnel: true, esn: true, udpESP: UDPESPTransport,
			encr: EncrAESGCM128 | EncrAESGCM256, icv: ICV16, capacity: 65536, packetOffload: true,
			defaultEncNames: []string{"aes-gcm-128", "aes-gcm-256"},
		},
		{
			name: ProfileNetdevsim, esp: true, transport: true, tunnel: true, encr: EncrAESGCM128, icv: ICV16,
			capacity: 33, packetOffload: true,
			defaultEncNames: []string{"aes-gcm-128"},
		},
	}
	if got, want := len(tests), len(Profiles()); got != want {
		t.Fatalf("test table covers %d profiles, Profiles() has %d", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := LookupProfile(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			hw := p.Hardware
			if err := hw.ValidateHardware(); err != nil {
				t.Fatalf("hardware record invalid: %v", err)
			}
			checks := []struct {
				field     string
				got, want any
			}{
				{"Encapsulation", hw.Encapsulation, EncapsulationIEEE8023},
				{"IPv6Supported", hw.IPv6Supported, true},
				{"Esp", hw.Esp, tt.esp},
				{"Ah", hw.Ah, tt.ah},
				{"AhEspCombined", hw.AhEspCombined, tt.ahEsp},
				{"Transport", hw.Transport, tt.transport},
				{"Tunnel", hw.Tunnel, tt.tunnel},
				{"TransportTunnelCombined", hw.TransportTunnelCombined, tt.combinedModes},
				{"LsoSupported", hw.LsoSupported, false},
				{"ExtendedSequenceNumbers", hw.ExtendedSequenceNumbers, tt.esn},
				{"IPv4Options", hw.IPv4Options, tt.ipv4Options},
				{"IPv6NonIPsecExtensionHeaders", hw.IPv6NonIPsecExtensionHeaders, tt.ipv6Ext},
				{"UdpEsp", hw.UdpEsp, tt.udpESP},
				{"AuthenticationAlgorithms", hw.AuthenticationAlgorithms, tt.auth},
				{"EncryptionAlgorithms", hw.EncryptionAlgorithms, tt.encr},
				{"Extensions.Encryption", hw.Extensions.Encryption, tt.extEncr},
				{"Extensions.Integrity", hw.Extensions.Integrity, tt.extInteg},
				{"Extensions.GCMICVLengths", hw.Extensions.GCMICVLengths, tt.icv},
				{"SaOffloadCapacity", hw.SaOffloadCapacity, tt.capacity},
				{"Limits.SAsPerDirection", hw.Limits.SAsPerDirection, tt.perDirection},
				{"Limits.PacketOffload", hw.Limits.PacketOffload, tt.packetOffload},
				{"Limits.LegacyAlgorithms", hw.Limits.LegacyAlgorithms, tt.legacy},
				{"OffloadFlags", hw.OffloadFlags, FlagTCPChecksumCoexistence | FlagUDPChecksumCoexistence},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
				}
			}
			if hw.Limits.MaxReplayWindow == 0 {
				t.Error("MaxReplayWindow is 0")
			}

			cur := DefaultConfig(hw)
			if err := cur.Validate(); err != nil {
				t.Fatalf("default config invalid: %v", err)
			}
			if err := cur.Within(hw); err != nil {
				t.Fatalf("default config exceeds hardware: %v", err)
			}
			if cur.Limits.LegacyAlgorithms || cur.EncryptionAlgorithms&legacyEncr != 0 || cur.AuthenticationAlgorithms&legacyAuth != 0 {
				t.Errorf("default config allows legacy algorithms: %+v", cur)
			}
			if got := cur.EnabledAlgorithms().Encryption; !slices.Equal(got, tt.defaultEncNames) {
				t.Errorf("default encryption = %v, want %v", got, tt.defaultEncNames)
			}

			devs := hw.Deviations()
			found := false
			for _, d := range devs {
				if tt.wantDeviation != "" && strings.Contains(d, tt.wantDeviation) {
					found = true
				}
			}
			if tt.wantDeviation == "" && len(devs) != 0 {
				t.Errorf("Deviations() = %q, want none", devs)
			}
			if tt.wantDeviation != "" && !found {
				t.Errorf("Deviations() = %q, want one containing %q", devs, tt.wantDeviation)
			}
			if p.Description == "" || len(p.Notes) == 0 {
				t.Error("profile lacks description or notes")
			}
		})
	}
}

func TestNDISProfileIsFullWithoutExtensions(t *testing.T) {
	full, ndis := mustProfile(t, ProfileFull), mustProfile(t, ProfileNDIS)
	full.Extensions.Encryption, full.Extensions.Integrity = 0, 0
	if full != ndis {
		t.Errorf("ndis profile = %+v\nwant full without extension algorithms = %+v", ndis, full)
	}
}

func TestLookupProfile(t *testing.T) {
	tests := []struct {
		name     string
		wantName string
		wantErr  error
	}{
		{"", ProfileFull, nil},
		{"full", ProfileFull, nil},
		{"ixgbe", ProfileIxgbe, nil},
		{"netdevsim", ProfileNetdevsim, nil},
		{"FULL", "", ErrInvalid},
		{"e1000", "", ErrInvalid},
	}
	for _, tt := range tests {
		p, err := LookupProfile(tt.name)
		checkErr(t, err, tt.wantErr, "known profiles: full, ndis, ixgbe, mlx5, netdevsim")
		if p.Name != tt.wantName {
			t.Errorf("LookupProfile(%q).Name = %q, want %q", tt.name, p.Name, tt.wantName)
		}
	}
	if got, want := ProfileNames(), []string{"full", "ndis", "ixgbe", "mlx5", "netdevsim"}; !slices.Equal(got, want) {
		t.Errorf("ProfileNames() = %v, want %v", got, want)
	}
}

func TestProfilesReturnsCopies(t *testing.T) {
	ps := Profiles()
	ps[0].Hardware.Esp = false
	ps[0].Notes[0] = "changed"
	if again := Profiles(); !again[0].Hardware.Esp || again[0].Notes[0] == "changed" {
		t.Error("changing the result of Profiles() changed the profiles")
	}
}
