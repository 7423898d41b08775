package capabilities

import (
	"fmt"
	"strings"
)

// Record is one IPsecOV2 capability record: the NDIS_IPSEC_OFFLOAD_V2
// fields (names as in NDIS), the IPsecOV2 bits of NDIS_OFFLOAD.Flags, and the
// secnic-only Extensions and Limits. A Record is a plain value: copy it
// freely and compare it with ==.
//
// The same type holds both the hardware capabilities and the current
// configuration; see [Manager].
type Record struct {
	// Encapsulation: MAC framings supported for IPsec offload.
	// IEEE_802_3 is mandatory when AH or ESP is offered.
	Encapsulation Encapsulation `json:"encapsulation"`
	// IPv6Supported: offload works for IPv6 traffic.
	IPv6Supported bool `json:"ipv6_supported"`
	// IPv4Options: packets whose IPv4 header has options can be processed.
	IPv4Options bool `json:"ipv4_options"`
	// IPv6NonIPsecExtensionHeaders: packets with IPv6 extension headers other
	// than AH/ESP can be processed.
	IPv6NonIPsecExtensionHeaders bool `json:"ipv6_non_ipsec_extension_headers"`
	// Ah: AH packets can be processed.
	Ah bool `json:"ah"`
	// Esp: ESP packets can be processed.
	Esp bool `json:"esp"`
	// AhEspCombined: packets carrying both AH and ESP can be processed.
	AhEspCombined bool `json:"ah_esp_combined"`
	// Transport: the transport-mode part can be processed.
	Transport bool `json:"transport"`
	// Tunnel: the tunnel-mode part can be processed. NDIS says it must be
	// TRUE for IPsec task offload; the ixgbe profile deviates.
	Tunnel bool `json:"tunnel"`
	// TransportTunnelCombined: transport over tunnel in one packet.
	TransportTunnelCombined bool `json:"transport_tunnel_combined"`
	// LsoSupported: LSO also works for IPsec-protected connections.
	LsoSupported bool `json:"lso_supported"`
	// ExtendedSequenceNumbers: 64-bit sequence numbers (ESN).
	ExtendedSequenceNumbers bool `json:"extended_sequence_numbers"`
	// UdpEsp: UDP-ESP encapsulation types the NIC can parse.
	UdpEsp UDPESPTypes `json:"udp_esp"`
	// AuthenticationAlgorithms: NDIS authentication bits.
	AuthenticationAlgorithms AuthenticationAlgorithms `json:"authentication_algorithms"`
	// EncryptionAlgorithms: NDIS encryption bits.
	EncryptionAlgorithms EncryptionAlgorithms `json:"encryption_algorithms"`
	// SaOffloadCapacity: number of SA bundles (ESP, AH or AH+ESP) the NIC
	// holds.
	SaOffloadCapacity uint32 `json:"sa_offload_capacity"`
	// OffloadFlags: the checksum-coexistence bits of NDIS_OFFLOAD.Flags.
	OffloadFlags OffloadFlags `json:"offload_flags"`
	// Extensions: secnic algorithms without NDIS bits, and GCM ICV lengths.
	Extensions Extensions `json:"extensions"`
	// Limits: secnic limits the SA layer needs.
	Limits Limits `json:"limits"`
}

// Extensions are capabilities NDIS has no bits for. They are never encoded
// into NDIS structures; an NDIS stack does not see them.
type Extensions struct {
	// Encryption: ChaCha20-Poly1305 and AES-CTR.
	Encryption ExtEncryption `json:"encryption"`
	// Integrity: HMAC-SHA-384-192 and HMAC-SHA-512-256.
	Integrity ExtIntegrity `json:"integrity"`
	// GCMICVLengths: AES-GCM ICV lengths (bytes) accepted for ESP.
	// ChaCha20-Poly1305 and AES-GMAC always use 16.
	GCMICVLengths ICVLengths `json:"gcm_icv_lengths"`
}

// Limits are secnic-specific limits for the SA layer.
type Limits struct {
	// MaxReplayWindow is the largest anti-replay window (in packets) an
	// inbound SA may ask for; at most [ReplayWindowLimit].
	MaxReplayWindow uint32 `json:"max_replay_window"`
	// SAsPerDirection, if not 0, limits inbound SAs and outbound SAs
	// separately (ixgbe: 1024 each); 0 means one shared pool, limited only by
	// SaOffloadCapacity.
	SAsPerDirection uint32 `json:"sas_per_direction"`
	// PacketOffload: secnic's packet offload is available (the NIC also
	// frames packets, assigns sequence numbers and checks anti-replay, as
	// Linux XFRM_DEV_OFFLOAD_PACKET). Without it only crypto offload (the
	// NDIS IPsecOV2 split) is offered.
	PacketOffload bool `json:"packet_offload"`
	// LegacyAlgorithms: DES, 3DES and HMAC-MD5 may be used. When false,
	// their NDIS bits must be clear.
	LegacyAlgorithms bool `json:"legacy_algorithms"`
}

// ReplayWindowLimit bounds Limits.MaxReplayWindow: 32768 packets, the
// largest window Linux accepts (a 4096-byte XFRMA_REPLAY_ESN_VAL bitmap).
const ReplayWindowLimit = 32768

// Feature names accepted by [Manager.SetFeature]; they are the JSON names of
// the corresponding record fields or bits.
const (
	FeatureIPv6Supported                = "ipv6_supported"
	FeatureIPv4Options                  = "ipv4_options"
	FeatureIPv6NonIPsecExtensionHeaders = "ipv6_non_ipsec_extension_headers"
	FeatureAh                           = "ah"
	FeatureEsp                          = "esp"
	FeatureAhEspCombined                = "ah_esp_combined"
	FeatureTransport                    = "transport"
	FeatureTunnel                       = "tunnel"
	FeatureTransportTunnelCombined      = "transport_tunnel_combined"
	FeatureLsoSupported                 = "lso_supported"
	FeatureExtendedSequenceNumbers      = "extended_sequence_numbers"
	FeatureUDPESPTransport              = "udp_esp_transport"
	FeatureUDPESPTunnel                 = "udp_esp_tunnel"
	FeatureUDPESPTransportOverUDPTunnel = "udp_esp_transport_over_udp_tunnel"
	FeatureUDPESPUDPTransportOverTunnel = "udp_esp_udp_transport_over_tunnel"
	FeatureTCPChecksumCoexistence       = "tcp_checksum_coexistence"
	FeatureUDPChecksumCoexistence       = "udp_checksum_coexistence"
	FeaturePacketOffload                = "packet_offload"
	FeatureLegacyAlgorithms             = "legacy_algorithms"
)

// feature is one on/off part of a record. requires lists features that must
// be on while this one is on.
type feature struct {
	name     string
	get      func(*Record) bool
	set      func(*Record, bool)
	requires []string
}

func udpESPFeature(name string, bit UDPESPTypes, requires ...string) feature {
	return feature{
		name: name,
		get:  func(r *Record) bool { return r.UdpEsp.Has(bit) },
		set: func(r *Record, on bool) {
			if on {
				r.UdpEsp |= bit
			} else {
				r.UdpEsp &^= bit
			}
		},
		requires: requires,
	}
}

func flagFeature(name string, bit OffloadFlags) feature {
	return feature{
		name: name,
		get:  func(r *Record) bool { return r.OffloadFlags.Has(bit) },
		set: func(r *Record, on bool) {
			if on {
				r.OffloadFlags |= bit
			} else {
				r.OffloadFlags &^= bit
			}
		},
	}
}

var features = []feature{
	{name: FeatureIPv6Supported, get: func(r *Record) bool { return r.IPv6Supported }, set: func(r *Record, v bool) { r.IPv6Supported = v }},
	{name: FeatureIPv4Options, get: func(r *Record) bool { return r.IPv4Options }, set: func(r *Record, v bool) { r.IPv4Options = v }},
	{name: FeatureIPv6NonIPsecExtensionHeaders, get: func(r *Record) bool { return r.IPv6NonIPsecExtensionHeaders }, set: func(r *Record, v bool) { r.IPv6NonIPsecExtensionHeaders = v }},
	{name: FeatureAh, get: func(r *Record) bool { return r.Ah }, set: func(r *Record, v bool) { r.Ah = v }},
	{name: FeatureEsp, get: func(r *Record) bool { return r.Esp }, set: func(r *Record, v bool) { r.Esp = v }},
	{name: FeatureAhEspCombined, get: func(r *Record) bool { return r.AhEspCombined }, set: func(r *Record, v bool) { r.AhEspCombined = v },
		requires: []string{FeatureAh, FeatureEsp}},
	{name: FeatureTransport, get: func(r *Record) bool { return r.Transport }, set: func(r *Record, v bool) { r.Transport = v }},
	{name: FeatureTunnel, get: func(r *Record) bool { return r.Tunnel }, set: func(r *Record, v bool) { r.Tunnel = v }},
	{name: FeatureTransportTunnelCombined, get: func(r *Record) bool { return r.TransportTunnelCombined }, set: func(r *Record, v bool) { r.TransportTunnelCombined = v },
		requires: []string{FeatureTransport, FeatureTunnel}},
	{name: FeatureLsoSupported, get: func(r *Record) bool { return r.LsoSupported }, set: func(r *Record, v bool) { r.LsoSupported = v }},
	{name: FeatureExtendedSequenceNumbers, get: func(r *Record) bool { return r.ExtendedSequenceNumbers }, set: func(r *Record, v bool) { r.ExtendedSequenceNumbers = v }},
	udpESPFeature(FeatureUDPESPTransport, UDPESPTransport, FeatureTransport),
	udpESPFeature(FeatureUDPESPTunnel, UDPESPTunnel, FeatureTunnel),
	udpESPFeature(FeatureUDPESPTransportOverUDPTunnel, UDPESPTransportOverUDPTunnel, FeatureTransportTunnelCombined),
	udpESPFeature(FeatureUDPESPUDPTransportOverTunnel, UDPESPUDPTransportOverTunnel, FeatureTransportTunnelCombined),
	flagFeature(FeatureTCPChecksumCoexistence, FlagTCPChecksumCoexistence),
	flagFeature(FeatureUDPChecksumCoexistence, FlagUDPChecksumCoexistence),
	{name: FeaturePacketOffload, get: func(r *Record) bool { return r.Limits.PacketOffload }, set: func(r *Record, v bool) { r.Limits.PacketOffload = v }},
	{name: FeatureLegacyAlgorithms, get: func(r *Record) bool { return r.Limits.LegacyAlgorithms }, set: func(r *Record, v bool) {
		r.Limits.LegacyAlgorithms = v
		if !v {
			r.EncryptionAlgorithms &^= legacyEncr
			r.AuthenticationAlgorithms &^= legacyAuth
		}
	}},
}

// FeatureNames returns the names [Manager.SetFeature] accepts.
func FeatureNames() []string {
	out := make([]string, len(features))
	for i, f := range features {
		out[i] = f.name
	}
	return out
}

func lookupFeature(name string) (feature, bool) {
	for _, f := range features {
		if f.name == name {
			return f, true
		}
	}
	return feature{}, false
}

// clearDependents switches off every feature whose prerequisites are off,
// until nothing changes.
func (r *Record) clearDependents() {
	for changed := true; changed; {
		changed = false
		for _, f := range features {
			if f.get(r) && len(f.missing(r)) > 0 {
				f.set(r, false)
				changed = true
			}
		}
	}
}

// missing returns the prerequisites of f that are off in r.
func (f feature) missing(r *Record) []string {
	var out []string
	for _, req := range f.requires {
		p, _ := lookupFeature(req)
		if !p.get(r) {
			out = append(out, req)
		}
	}
	return out
}

// Validate checks that the record is self-consistent: only documented bits,
// combined features only with their parts, legacy bits only when legacy
// algorithms are allowed, an ICV length for AES-GCM, and for an enabled AH or
// ESP an IEEE 802.3 encapsulation, a mode and a non-zero capacity.
func (r Record) Validate() error {
	var problems []string
	unknown := func(field string, m, known uint32) {
		if rest := m &^ known; rest != 0 {
			problems = append(problems, fmt.Sprintf("%s has unknown bits 0x%08x", field, rest))
		}
	}
	unknown(encapsulationTable.field, uint32(r.Encapsulation), encapsulationTable.known())
	unknown(udpESPTable.field, uint32(r.UdpEsp), udpESPTable.known())
	unknown(authTable.field, uint32(r.AuthenticationAlgorithms), authTable.known())
	unknown(encrTable.field, uint32(r.EncryptionAlgorithms), encrTable.known())
	unknown(flagsTable.field, uint32(r.OffloadFlags), flagsTable.known())
	unknown(extEncrTable.field, uint32(r.Extensions.Encryption), extEncrTable.known())
	unknown(extIntegTable.field, uint32(r.Extensions.Integrity), extIntegTable.known())
	unknown(icvTable.field, uint32(r.Extensions.GCMICVLengths), icvTable.known())

	for _, f := range features {
		if f.get(&r) {
			if m := f.missing(&r); len(m) > 0 {
				problems = append(problems, fmt.Sprintf("%s requires %s", f.name, strings.Join(m, " and ")))
			}
		}
	}
	if !r.Limits.LegacyAlgorithms {
		legacy := append((r.EncryptionAlgorithms & legacyEncr).Names(), (r.AuthenticationAlgorithms & legacyAuth).Names()...)
		if len(legacy) > 0 {
			problems = append(problems, "legacy algorithms "+strings.Join(legacy, ", ")+" are listed but limits.legacy_algorithms is false")
		}
	}
	if r.EncryptionAlgorithms&(EncrAESGCM128|EncrAESGCM192|EncrAESGCM256) != 0 && r.Extensions.GCMICVLengths == 0 {
		problems = append(problems, "AES-GCM is listed but extensions.gcm_icv_lengths is empty")
	}
	if r.Ah || r.Esp {
		if !r.Encapsulation.Has(EncapsulationIEEE8023) {
			problems = append(problems, "encapsulation must include ieee_802_3 when ah or esp is on")
		}
		if !r.Transport && !r.Tunnel {
			problems = append(problems, "transport or tunnel must be on when ah or esp is on")
		}
		if r.SaOffloadCapacity == 0 {
			problems = append(problems, "sa_offload_capacity must not be 0 when ah or esp is on")
		}
	}
	if r.Limits.MaxReplayWindow > ReplayWindowLimit {
		problems = append(problems, fmt.Sprintf("limits.max_replay_window %d is above %d", r.Limits.MaxReplayWindow, ReplayWindowLimit))
	}
	if len(problems) > 0 {
		return invalid("record", "is inconsistent: "+strings.Join(problems, "; "), "")
	}
	return nil
}

// ValidateHardware checks a hardware capability record: [Record.Validate]
// plus, for an offered protocol, at least one usable algorithm (ESP: an AEAD,
// ESP GMAC, or a cipher with an integrity algorithm; AH: an integrity
// algorithm).
func (r Record) ValidateHardware() error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Esp && !r.anyESPTransform() {
		return invalid("hardware record", "offers ESP but no usable ESP algorithm", "add an encryption algorithm (and an integrity algorithm unless it is AES-GCM, ChaCha20-Poly1305 or AES-GMAC)")
	}
	if r.Ah && !r.anyAHIntegrity() {
		return invalid("hardware record", "offers AH but no integrity algorithm", "add an authentication algorithm")
	}
	return nil
}

func (r *Record) legacyOK(legacy bool) bool { return !legacy || r.Limits.LegacyAlgorithms }

func (r *Record) anyESPTransform() bool {
	haveInteg := false
	for _, i := range integAlgs {
		if i.name != IntegNone && !i.gmac && r.hasInteg(i) && r.legacyOK(i.legacy) {
			haveInteg = true
		}
	}
	for _, e := range encAlgs {
		if !r.hasEnc(e) || !r.legacyOK(e.legacy) {
			continue
		}
		if e.kind == encAEAD || e.kind == encGMAC || haveInteg {
			return true
		}
	}
	return false
}

func (r *Record) anyAHIntegrity() bool {
	for _, i := range integAlgs {
		if i.name != IntegNone && r.hasInteg(i) && r.legacyOK(i.legacy) {
			return true
		}
	}
	return false
}

// Within checks that every capability of r is also in hw: r is a current
// configuration and hw the hardware capabilities. The error lists everything
// that exceeds the hardware.
func (r Record) Within(hw Record) error {
	var extra []string
	for _, f := range features {
		if f.get(&r) && !f.get(&hw) {
			extra = append(extra, f.name)
		}
	}
	subset := func(field string, t *bitTable, cur, h uint32) {
		if rest := cur &^ h; rest != 0 {
			extra = append(extra, fmt.Sprintf("%s [%s]", field, strings.Join(t.names(rest), ", ")))
		}
	}
	subset(encapsulationTable.field, encapsulationTable, uint32(r.Encapsulation), uint32(hw.Encapsulation))
	subset(authTable.field, authTable, uint32(r.AuthenticationAlgorithms), uint32(hw.AuthenticationAlgorithms))
	subset(encrTable.field, encrTable, uint32(r.EncryptionAlgorithms), uint32(hw.EncryptionAlgorithms))
	subset(extEncrTable.field, extEncrTable, uint32(r.Extensions.Encryption), uint32(hw.Extensions.Encryption))
	subset(extIntegTable.field, extIntegTable, uint32(r.Extensions.Integrity), uint32(hw.Extensions.Integrity))
	subset(icvTable.field, icvTable, uint32(r.Extensions.GCMICVLengths), uint32(hw.Extensions.GCMICVLengths))
	if r.SaOffloadCapacity > hw.SaOffloadCapacity {
		extra = append(extra, fmt.Sprintf("sa_offload_capacity %d > %d", r.SaOffloadCapacity, hw.SaOffloadCapacity))
	}
	if r.Limits.MaxReplayWindow > hw.Limits.MaxReplayWindow {
		extra = append(extra, fmt.Sprintf("limits.max_replay_window %d > %d", r.Limits.MaxReplayWindow, hw.Limits.MaxReplayWindow))
	}
	if hw.Limits.SAsPerDirection != 0 && (r.Limits.SAsPerDirection == 0 || r.Limits.SAsPerDirection > hw.Limits.SAsPerDirection) {
		extra = append(extra, fmt.Sprintf("limits.sas_per_direction %d (hardware: %d)", r.Limits.SAsPerDirection, hw.Limits.SAsPerDirection))
	}
	if len(extra) > 0 {
		return &Error{
			Kind:    ErrNotSupported,
			Subject: "the current configuration",
			Problem: "exceeds the hardware capabilities: " + strings.Join(extra, ", "),
			Hint:    "enable only what the hardware record has, or add it to the hardware with a hardware override",
		}
	}
	return nil
}

// clampTo returns r reduced to what hw has.
func (r Record) clampTo(hw Record) Record {
	for _, f := range features {
		if f.get(&r) && !f.get(&hw) {
			f.set(&r, false)
		}
	}
	r.clearDependents()
	r.Encapsulation &= hw.Encapsulation
	r.AuthenticationAlgorithms &= hw.AuthenticationAlgorithms
	r.EncryptionAlgorithms &= hw.EncryptionAlgorithms
	r.Extensions.Encryption &= hw.Extensions.Encryption
	r.Extensions.Integrity &= hw.Extensions.Integrity
	r.Extensions.GCMICVLengths &= hw.Extensions.GCMICVLengths
	r.SaOffloadCapacity = min(r.SaOffloadCapacity, hw.SaOffloadCapacity)
	r.Limits.MaxReplayWindow = min(r.Limits.MaxReplayWindow, hw.Limits.MaxReplayWindow)
	if hw.Limits.SAsPerDirection != 0 && (r.Limits.SAsPerDirection == 0 || r.Limits.SAsPerDirection > hw.Limits.SAsPerDirection) {
		r.Limits.SAsPerDirection = hw.Limits.SAsPerDirection
	}
	return r
}

// DefaultConfig returns the current configuration a card with hardware
// capabilities hw starts with: everything on (NDIS: "miniports should enable
// all offloads at init"), except the legacy algorithms DES, 3DES and
// HMAC-MD5, which must be allowed explicitly (RFC 8221: MUST NOT / SHOULD
// NOT).
func DefaultConfig(hw Record) Record {
	r := hw
	if f, ok := lookupFeature(FeatureLegacyAlgorithms); ok {
		f.set(&r, false)
	}
	return r
}

// Deviations lists where the record departs from what NDIS expects of an
// IPsecOV2 card, or what an NDIS stack would not see. An empty list means
// none.
func (r Record) Deviations() []string {
	var out []string
	if !r.Ah && !r.Esp {
		out = append(out, "IPsec offload is off: Ah and Esp are both FALSE")
	}
	if (r.Ah || r.Esp) && !r.Tunnel {
		out = append(out, "Tunnel is FALSE, but NDIS requires TRUE to support IPsec task offload (transport-only NIC, like ixgbe)")
	}
	if r.Extensions.Encryption != 0 || r.Extensions.Integrity != 0 {
		out = append(out, "extension algorithms ("+strings.Join(append(r.Extensions.Encryption.Names(), r.Extensions.Integrity.Names()...), ", ")+") have no NDIS bits; an NDIS stack does not see them")
	}
	return out
}
