package capabilities

import (
	"fmt"
	"strings"
)

// Profile names.
const (
	ProfileFull      = "full"
	ProfileNDIS      = "ndis"
	ProfileIxgbe     = "ixgbe"
	ProfileMlx5      = "mlx5"
	ProfileNetdevsim = "netdevsim"
	// DefaultProfile is used when a configuration names no profile.
	DefaultProfile = ProfileFull
)

// Profile is a named hardware capability record: a card secnic can pretend
// to be. Its current configuration starts as [DefaultConfig] of Hardware.
type Profile struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Hardware    Record `json:"hardware"`
	// Notes record where the profile differs from the real device, and why.
	Notes []string `json:"notes,omitempty"`
}

const (
	allAuth = AuthMD5 | AuthSHA1 | AuthSHA256 | AuthAESGCM128 | AuthAESGCM192 | AuthAESGCM256
	allEncr = EncrNone | EncrDESCBC | Encr3DESCBC | EncrAESGCM128 | EncrAESGCM192 | EncrAESGCM256 |
		EncrAESCBC128 | EncrAESCBC192 | EncrAESCBC256
	allUDPESP   = UDPESPTransport | UDPESPTunnel | UDPESPTransportOverUDPTunnel | UDPESPUDPTransportOverTunnel
	bothCsum    = FlagTCPChecksumCoexistence | FlagUDPChecksumCoexistence
	allICV      = ICV8 | ICV12 | ICV16
	allExtEncr  = ExtChaCha20Poly1305 | ExtAESCTR128 | ExtAESCTR192 | ExtAESCTR256
	allExtInteg = ExtHMACSHA384192 | ExtHMACSHA512256
	// secnicReplayWindow is the anti-replay window secnic's SA layer offers.
	secnicReplayWindow = 4096
)

const noLSO = "LsoSupported follows the wire port, not the profile: TRUE when the port sends the ESP segments of one host super-packet with one segmentation offload (the udp wire with UDP_SEGMENT), FALSE otherwise (link and memory wires)."

// fullRecord is everything secnic implements.
func fullRecord() Record {
	return Record{
		Encapsulation:                EncapsulationIEEE8023,
		IPv6Supported:                true,
		IPv4Options:                  true,
		IPv6NonIPsecExtensionHeaders: true,
		Ah:                           true,
		Esp:                          true,
		AhEspCombined:                true,
		Transport:                    true,
		Tunnel:                       true,
		TransportTunnelCombined:      true,
		LsoSupported:                 false,
		ExtendedSequenceNumbers:      true,
		UdpEsp:                       allUDPESP,
		AuthenticationAlgorithms:     allAuth,
		EncryptionAlgorithms:         allEncr,
		SaOffloadCapacity:            4096,
		OffloadFlags:                 bothCsum,
		Extensions: Extensions{
			Encryption:    allExtEncr,
			Integrity:     allExtInteg,
			GCMICVLengths: allICV,
		},
		Limits: Limits{
			MaxReplayWindow:  secnicReplayWindow,
			PacketOffload:    true,
			LegacyAlgorithms: true,
		},
	}
}

// Profiles returns every profile, in a fixed order (full first).
func Profiles() []Profile {
	full := fullRecord()

	ndis := fullRecord()
	ndis.Extensions.Encryption = 0
	ndis.Extensions.Integrity = 0

	ixgbe := Record{
		Encapsulation:        EncapsulationIEEE8023,
		IPv6Supported:        true,
		Esp:                  true,
		Transport:            true,
		EncryptionAlgorithms: EncrAESGCM128,
		SaOffloadCapacity:    2048,
		OffloadFlags:         bothCsum,
		Extensions:           Extensions{GCMICVLengths: ICV16},
		Limits: Limits{
			MaxReplayWindow: secnicReplayWindow,
			SAsPerDirection: 1024,
		},
	}

	mlx5 := Record{
		Encapsulation:           EncapsulationIEEE8023,
		IPv6Supported:           true,
		Esp:                     true,
		Transport:               true,
		Tunnel:                  true,
		ExtendedSequenceNumbers: true,
		UdpEsp:                  UDPESPTransport,
		EncryptionAlgorithms:    EncrAESGCM128 | EncrAESGCM256,
		SaOffloadCapacity:       65536,
		OffloadFlags:            bothCsum,
		Extensions:              Extensions{GCMICVLengths: ICV16},
		Limits: Limits{
			MaxReplayWindow: 256,
			PacketOffload:   true,
		},
	}

	netdevsim := Record{
		Encapsulation:        EncapsulationIEEE8023,
		IPv6Supported:        true,
		Esp:                  true,
		Transport:            true,
		Tunnel:               true,
		EncryptionAlgorithms: EncrAESGCM128,
		SaOffloadCapacity:    33,
		OffloadFlags:         bothCsum,
		Extensions:           Extensions{GCMICVLengths: ICV16},
		Limits: Limits{
			MaxReplayWindow: secnicReplayWindow,
			PacketOffload:   true,
		},
	}

	return []Profile{
		{
			Name:        ProfileFull,
			Description: "Everything secnic implements: ESP, AH and AH+ESP, transport, tunnel and both combined, IPv6, IPv4 options, IPv6 extension headers, ESN, all four UDP-ESP types, every NDIS algorithm plus ChaCha20-Poly1305, AES-CTR, HMAC-SHA-384/512 and GCM ICV 8/12/16.",
			Hardware:    full,
			Notes: []string{
				noLSO,
				"DES, 3DES and HMAC-MD5 are in the hardware record but off in the default configuration (RFC 8221).",
			},
		},
		{
			Name:        ProfileNDIS,
			Description: "Exactly what an NDIS IPsecOV2 record can express: like full, without the extension algorithms.",
			Hardware:    ndis,
			Notes: []string{
				noLSO,
				"AES-GCM ICV lengths 8/12/16 are kept: NDIS carries the ICV length per SA in ALGORITHM_INFO.AdditionalInfo.",
				"packet_offload is a secnic mode outside the NDIS record and stays available.",
			},
		},
		{
			Name:        ProfileIxgbe,
			Description: "Intel 82599/X5x0 (ixgbe): ESP only, AES-GCM-128 with a 16-byte ICV, transport mode only, 1024 SAs per direction, no ESN, crypto offload only.",
			Hardware:    ixgbe,
			Notes: []string{
				"Tunnel is FALSE although NDIS requires TRUE: the real ixgbe refuses tunnel mode (\"Unsupported mode for ipsec offload\").",
				"SaOffloadCapacity is 2048 bundles: 1024 RX plus 1024 TX SAs; the 128-entry RX destination-IP table is not modelled.",
				"IPv4 options and IPv6 extension headers are not offloaded (the real driver refuses them).",
				noLSO,
			},
		},
		{
			Name:        ProfileMlx5,
			Description: "NVIDIA/Mellanox ConnectX-6 Dx+ (mlx5): ESP only, AES-GCM-128/256 with a 16-byte ICV, transport and tunnel, ESN, UDP-ESP transport, crypto and packet offload.",
			Hardware:    mlx5,
			Notes: []string{
				"Capacity is a hardware object limit on the real device, modelled as 65536 bundles.",
				"The real device allows tunnel mode and UDP encapsulation only with packet offload; this record does not express that restriction.",
				"max_replay_window 256: packet-mode inbound windows are 32, 64, 128 or 256 on the real device.",
				noLSO,
			},
		},
		{
			Name:        ProfileNetdevsim,
			Description: "Linux netdevsim: 33 SAs shared by both directions, ESP AES-GCM-128 with a 16-byte ICV only, transport and tunnel, no ESN.",
			Hardware:    netdevsim,
			Notes: []string{
				"Unlike netdevsim, secnic really encrypts and decrypts.",
				"netdevsim accepts AH requests but has no AH algorithm it can use; AH is FALSE here.",
				noLSO,
			},
		},
	}
}

// ProfileNames returns the names of all profiles, in the order of [Profiles].
func ProfileNames() []string {
	ps := Profiles()
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out
}

// LookupProfile returns the profile with the given name; "" means
// [DefaultProfile].
func LookupProfile(name string) (Profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	for _, p := range Profiles() {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, invalid(fmt.Sprintf("profile %q", name), "is unknown",
		"known profiles: "+strings.Join(ProfileNames(), ", "))
}
