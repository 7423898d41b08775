package capabilities

import (
	"fmt"
	"strings"
)

// Protocols says which IPsec protocols an SA bundle uses.
// In JSON it is "esp", "ah" or "ah+esp".
type Protocols uint8

// Bundle protocols.
const (
	ProtocolESP   Protocols = 1
	ProtocolAH    Protocols = 2
	ProtocolAHESP Protocols = ProtocolESP | ProtocolAH
)

// String returns "esp", "ah" or "ah+esp".
func (p Protocols) String() string {
	switch p {
	case ProtocolESP:
		return "esp"
	case ProtocolAH:
		return "ah"
	case ProtocolAHESP:
		return "ah+esp"
	}
	return fmt.Sprintf("Protocols(%d)", uint8(p))
}

// MarshalText writes the name (String); it never fails, so that invalid
// requests can still be logged.
func (p Protocols) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads "esp", "ah" or "ah+esp" (also "esp+ah").
func (p *Protocols) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "esp":
		*p = ProtocolESP
	case "ah":
		*p = ProtocolAH
	case "ah+esp", "esp+ah":
		*p = ProtocolAHESP
	default:
		return invalid(fmt.Sprintf("protocols %q", b), "is unknown", "use esp, ah or ah+esp")
	}
	return nil
}

// Mode is the IPsec mode an SA bundle is used in.
// In JSON it is "transport", "tunnel" or "transport-over-tunnel".
type Mode uint8

// IPsec modes.
const (
	ModeTransport Mode = 1
	ModeTunnel    Mode = 2
	// ModeTransportOverTunnel: the bundle is part of a packet carrying both a
	// transport and a tunnel part.
	ModeTransportOverTunnel Mode = 3
)

// String returns the name.
func (m Mode) String() string {
	switch m {
	case ModeTransport:
		return "transport"
	case ModeTunnel:
		return "tunnel"
	case ModeTransportOverTunnel:
		return "transport-over-tunnel"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// MarshalText writes the name (String); it never fails.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads the name.
func (m *Mode) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "transport":
		*m = ModeTransport
	case "tunnel":
		*m = ModeTunnel
	case "transport-over-tunnel", "transport_over_tunnel":
		*m = ModeTransportOverTunnel
	default:
		return invalid(fmt.Sprintf("mode %q", b), "is unknown", "use transport, tunnel or transport-over-tunnel")
	}
	return nil
}

// BundleRequest is what an SA bundle about to be offloaded asks for.
type BundleRequest struct {
	Protocols Protocols `json:"protocols"`
	Mode      Mode      `json:"mode"`
	// IPv6: the SA endpoints are IPv6 (false: IPv4).
	IPv6 bool `json:"ipv6"`
	// Encryption is the ESP encryption algorithm (canonical name); empty for
	// AH-only bundles. ESP GMAC is "aes-gmac-N" with Integrity "none".
	Encryption string `json:"encryption,omitempty"`
	// Integrity is the ESP integrity algorithm ("none" for AES-GCM,
	// ChaCha20-Poly1305 and AES-GMAC); for an AH-only bundle it is the AH
	// algorithm.
	Integrity string `json:"integrity,omitempty"`
	// AHIntegrity is the AH algorithm of an AH+ESP bundle; empty means the
	// same as Integrity.
	AHIntegrity string `json:"ah_integrity,omitempty"`
	// ICVLength is the AES-GCM ICV length in bytes (8, 12 or 16); 0 means
	// 16. For ChaCha20-Poly1305 and AES-GMAC it must be 0 or 16; for other
	// algorithms 0.
	ICVLength int `json:"icv_length,omitempty"`
	// ESN: the SA uses 64-bit extended sequence numbers.
	ESN bool `json:"esn,omitempty"`
	// UDPESP is the UDP-ESP encapsulation type: 0 (none) or exactly one type.
	UDPESP UDPESPTypes `json:"udp_esp,omitzero"`
	// ReplayWindow is the inbound anti-replay window in packets; 0 disables
	// anti-replay.
	ReplayWindow uint32 `json:"replay_window,omitempty"`
	// PacketOffload: the bundle wants secnic's packet offload rather than
	// crypto offload.
	PacketOffload bool `json:"packet_offload,omitempty"`
	// Offload is the mode the bundle asks for; "" means the NIC's
	// ([Manager.OffloadMode]). [Manager.Check] refuses the other mode and
	// sets PacketOffload from the result.
	Offload OffloadMode `json:"offload,omitempty"`
}

// checker evaluates a request against the hardware and the current
// configuration, producing errors that say where the capability is missing.
type checker struct {
	hw, cur *Record
	profile string
}

// need reports a missing capability: not in hw at all, or off in cur.
func (c checker) need(inHW, inCur bool, subject, enable string) error {
	if !inHW {
		return notInHardware(c.profile, subject, "")
	}
	if !inCur {
		return &Error{Kind: ErrDisabled, Subject: subject, Problem: "is disabled in the current configuration", Hint: enable}
	}
	return nil
}

func (c checker) feature(name, subject string) error {
	f, _ := lookupFeature(name)
	return c.need(f.get(c.hw), f.get(c.cur), subject,
		fmt.Sprintf("switch on the feature %s in the current offload configuration", name))
}

// Check reports whether the current configuration cur (on hardware hw)
// can take the bundle: nil, or an [*Error] naming the first missing
// capability (ErrNotSupported: the hardware lacks it; ErrDisabled: it is
// off now) or the inconsistency in the request (ErrInvalid). It does not
// count capacity; see [Record.CheckCapacity].
func Check(hw, cur Record, req BundleRequest) error {
	return checker{hw: &hw, cur: &cur}.check(req)
}

// Check is [Check] against the Manager's records.
func (m *Manager) Check(req BundleRequest) error {
	m.mu.Lock()
	hw, cur, profile, mode := m.hw, m.cur, m.profile, m.mode
	m.mu.Unlock()
	c := checker{hw: &hw, cur: &cur, profile: profile}
	r, err := resolveOffload(mode, req)
	if err != nil {
		// Asking for packet offload where the card has none says so first.
		if req.PacketOffload || req.Offload == OffloadPacket {
			if ferr := c.feature(FeaturePacketOffload, "packet offload"); ferr != nil {
				return ferr
			}
		}
		return err
	}
	return c.check(r)
}

func (c checker) check(req BundleRequest) error {
	// Protocols.
	ah, esp := req.Protocols&ProtocolAH != 0, req.Protocols&ProtocolESP != 0
	switch req.Protocols {
	case ProtocolESP, ProtocolAH, ProtocolAHESP:
	default:
		return invalid(fmt.Sprintf("protocols %d", uint8(req.Protocols)), "is not a bundle", "use esp, ah or ah+esp")
	}
	if esp {
		if err := c.need(c.hw.Esp, c.cur.Esp, "ESP offload",
			"enable ESP with the offload parameter IPsecV2 = ESP_ENABLED or AH_AND_ESP_ENABLED"); err != nil {
			return err
		}
	}
	if ah {
		if err := c.need(c.hw.Ah, c.cur.Ah, "AH offload",
			"enable AH with the offload parameter IPsecV2 = AH_ENABLED or AH_AND_ESP_ENABLED"); err != nil {
			return err
		}
	}
	if ah && esp {
		if err := c.feature(FeatureAhEspCombined, "AH+ESP bundles (ah_esp_combined)"); err != nil {
			return err
		}
	}

	// Mode.
	switch req.Mode {
	case ModeTransport:
		if err := c.feature(FeatureTransport, "transport mode"); err != nil {
			return err
		}
	case ModeTunnel:
		if err := c.feature(FeatureTunnel, "tunnel mode"); err != nil {
			return err
		}
	case ModeTransportOverTunnel:
		if err := c.feature(FeatureTransportTunnelCombined, "transport over tunnel (transport_tunnel_combined)"); err != nil {
			return err
		}
	default:
		return invalid(fmt.Sprintf("mode %d", uint8(req.Mode)), "is not a mode", "use transport, tunnel or transport-over-tunnel")
	}
	if req.PacketOffload {
		if err := c.feature(FeaturePacketOffload, "packet offload"); err != nil {
			return err
		}
	}
	if req.IPv6 {
		if err := c.feature(FeatureIPv6Supported, "IPv6 SAs"); err != nil {
			return err
		}
	}

	// Algorithms.
	if esp {
		if err := c.checkESP(req); err != nil {
			return err
		}
	} else if req.Encryption != "" {
		return invalid(fmt.Sprintf("encryption %q", req.Encryption), "was given for an AH-only bundle", "AH does not encrypt; leave encryption empty or use ESP")
	}
	if ah {
		name := req.Integrity
		if esp && req.AHIntegrity != "" {
			name = req.AHIntegrity
		}
		if !esp && req.AHIntegrity != "" && req.AHIntegrity != req.Integrity {
			return invalid(fmt.Sprintf("ah_integrity %q", req.AHIntegrity), "conflicts with integrity "+fmt.Sprintf("%q", req.Integrity),
				"for an AH-only bundle give the AH algorithm in integrity")
		}
		if err := c.checkAH(name); err != nil {
			return err
		}
	} else if req.AHIntegrity != "" {
		return invalid(fmt.Sprintf("ah_integrity %q", req.AHIntegrity), "was given for an ESP-only bundle", "leave it empty")
	}

	// Sequence numbers, UDP encapsulation, anti-replay.
	if req.ESN {
		if err := c.feature(FeatureExtendedSequenceNumbers, "extended sequence numbers (ESN)"); err != nil {
			return err
		}
	}
	if err := c.checkUDPESP(req, esp); err != nil {
		return err
	}
	if req.ReplayWindow > c.hw.Limits.MaxReplayWindow {
		return &Error{Kind: ErrNotSupported, Subject: fmt.Sprintf("replay window %d", req.ReplayWindow),
			Problem: fmt.Sprintf("is larger than the hardware maximum %d", c.hw.Limits.MaxReplayWindow),
			Hint:    "use a smaller window, or raise limits.max_replay_window with a hardware override"}
	}
	if req.ReplayWindow > c.cur.Limits.MaxReplayWindow {
		return &Error{Kind: ErrDisabled, Subject: fmt.Sprintf("replay window %d", req.ReplayWindow),
			Problem: fmt.Sprintf("is larger than the current maximum %d", c.cur.Limits.MaxReplayWindow),
			Hint:    "use a smaller window, or raise limits.max_replay_window in the current offload configuration"}
	}
	return nil
}

func (c checker) encAllowed(a encAlg, subject string) error {
	if a.legacy && c.hw.hasEnc(a) && c.hw.Limits.LegacyAlgorithms && !c.cur.Limits.LegacyAlgorithms {
		return legacyOff(subject, legacyHintCheck)
	}
	return c.need(c.hw.hasEnc(a) && c.hw.legacyOK(a.legacy), c.cur.hasEnc(a) && c.cur.legacyOK(a.legacy), subject,
		"enable it in the current offload configuration")
}

func (c checker) integAllowed(a integAlg, subject string) error {
	if a.legacy && c.hw.hasInteg(a) && c.hw.Limits.LegacyAlgorithms && !c.cur.Limits.LegacyAlgorithms {
		return legacyOff(subject, legacyHintCheck)
	}
	return c.need(c.hw.hasInteg(a) && c.hw.legacyOK(a.legacy), c.cur.hasInteg(a) && c.cur.legacyOK(a.legacy), subject,
		"enable it in the current offload configuration")
}

func (c checker) checkESP(req BundleRequest) error {
	if req.Encryption == "" {
		return invalid("an ESP bundle without encryption algorithm", "is incomplete",
			`give encryption; use "null" with an integrity algorithm for integrity-only ESP`)
	}
	e, ok := lookupEnc(req.Encryption)
	if !ok {
		return invalid(fmt.Sprintf("encryption %q", req.Encryption), "is unknown",
			"known encryption algorithms: "+strings.Join(EncryptionNames(), ", "))
	}
	integ := req.Integrity
	if integ == "" {
		integ = IntegNone
	}
	i, ok := lookupInteg(integ)
	if !ok {
		return invalid(fmt.Sprintf("integrity %q", integ), "is unknown",
			"known integrity algorithms: "+strings.Join(IntegrityNames(), ", "))
	}
	encSubject := fmt.Sprintf("encryption %q", e.name)
	if e.kind == encGMAC {
		encSubject = fmt.Sprintf("encryption %q (NDIS: AUTHENTICATION_AES_GCM_%s + ENCRYPTION_NONE)", e.name, e.name[len(e.name)-3:])
	}

	switch e.kind {
	case encAEAD, encGMAC:
		if i.name != IntegNone {
			return invalid(fmt.Sprintf("integrity %q with encryption %q", i.name, e.name), "is not a valid ESP transform",
				e.name+" carries its own ICV; set integrity to \"none\"")
		}
	default:
		if i.name == IntegNone {
			p := "is encryption without integrity, which IPsec offload does not permit"
			if e.kind == encNull {
				p = "is neither encryption nor integrity"
			}
			return invalid(fmt.Sprintf("ESP with encryption %q and integrity \"none\"", e.name), p,
				"choose an integrity algorithm such as "+IntegHMACSHA256128)
		}
		if i.gmac {
			return invalid(fmt.Sprintf("ESP integrity %q", i.name), "is not an ESP integrity transform in secnic",
				fmt.Sprintf("for ESP GMAC use encryption %q with integrity \"none\" (RFC 4543)", i.name))
		}
	}

	if err := c.encAllowed(e, encSubject); err != nil {
		return err
	}
	if i.name != IntegNone {
		if err := c.integAllowed(i, fmt.Sprintf("integrity %q", i.name)); err != nil {
			return err
		}
	}

	// ICV length.
	switch {
	case e.gcm:
		n := req.ICVLength
		if n == 0 {
			n = 16
		}
		bit := ICVBit(n)
		if bit == 0 {
			return invalid(fmt.Sprintf("ICV length %d", req.ICVLength), "is not an AES-GCM ICV length", "use 8, 12 or 16 bytes")
		}
		if err := c.need(c.hw.Extensions.GCMICVLengths.Has(bit), c.cur.Extensions.GCMICVLengths.Has(bit),
			fmt.Sprintf("AES-GCM ICV length %d", n), "add it to extensions.gcm_icv_lengths in the current offload configuration"); err != nil {
			return err
		}
	case e.kind == encAEAD || e.kind == encGMAC:
		if req.ICVLength != 0 && req.ICVLength != 16 {
			return invalid(fmt.Sprintf("ICV length %d", req.ICVLength), "is not possible with "+e.name, "it always uses 16 bytes; give 0 or 16")
		}
	default:
		if req.ICVLength != 0 {
			return invalid(fmt.Sprintf("ICV length %d", req.ICVLength), "applies only to AEAD algorithms",
				fmt.Sprintf("leave it 0; %s has a fixed %d-byte ICV", i.name, i.icv))
		}
	}
	return nil
}

func (c checker) checkAH(name string) error {
	if name == "" || name == IntegNone {
		return invalid("an AH bundle without integrity algorithm", "is incomplete", "AH needs an integrity algorithm such as "+IntegHMACSHA256128)
	}
	i, ok := lookupInteg(name)
	if !ok {
		return invalid(fmt.Sprintf("AH integrity %q", name), "is unknown",
			"known integrity algorithms: "+strings.Join(IntegrityNames()[1:], ", "))
	}
	return c.integAllowed(i, fmt.Sprintf("AH integrity %q", name))
}

func (c checker) checkUDPESP(req BundleRequest, esp bool) error {
	t := req.UDPESP
	if t == UDPESPNone {
		return nil
	}
	var feature string
	var mode Mode
	switch t {
	case UDPESPTransport:
		feature, mode = FeatureUDPESPTransport, ModeTransport
	case UDPESPTunnel:
		feature, mode = FeatureUDPESPTunnel, ModeTunnel
	case UDPESPTransportOverUDPTunnel:
		feature, mode = FeatureUDPESPTransportOverUDPTunnel, ModeTransportOverTunnel
	case UDPESPUDPTransportOverTunnel:
		feature, mode = FeatureUDPESPUDPTransportOverTunnel, ModeTransportOverTunnel
	default:
		return invalid(fmt.Sprintf("UDP-ESP type 0x%x", uint32(t)), "is not one encapsulation type", "use 0 (none), 1, 2, 4 or 8")
	}
	if !esp {
		return invalid("UDP-ESP encapsulation", "needs ESP", "AH cannot be UDP-encapsulated (RFC 3948 covers ESP only)")
	}
	if req.Mode != mode {
		return invalid(fmt.Sprintf("UDP-ESP type %s", udpESPTable.list(uint32(t))), "does not match mode "+req.Mode.String(),
			"use mode "+mode.String())
	}
	return c.feature(feature, fmt.Sprintf("UDP-ESP encapsulation %s", udpESPTable.list(uint32(t))))
}

// Usage counts SAs in use, including the bundle about to be added.
type Usage struct {
	Bundles     uint32 `json:"bundles"`
	InboundSAs  uint32 `json:"inbound_sas"`
	OutboundSAs uint32 `json:"outbound_sas"`
}

// CheckCapacity reports whether usage u fits the record's SaOffloadCapacity
// and per-direction limit. Call it with the usage the table would have after
// adding a bundle.
func (r Record) CheckCapacity(u Usage) error {
	if u.Bundles > r.SaOffloadCapacity {
		return &Error{Kind: ErrCapacity, Subject: "the SA offload capacity",
			Problem: fmt.Sprintf("is exhausted: %d bundles needed, %d available", u.Bundles, r.SaOffloadCapacity),
			Hint:    "delete SA bundles, or raise sa_offload_capacity"}
	}
	if lim := r.Limits.SAsPerDirection; lim != 0 {
		for _, d := range []struct {
			name string
			n    uint32
		}{{"inbound", u.InboundSAs}, {"outbound", u.OutboundSAs}} {
			if d.n > lim {
				return &Error{Kind: ErrCapacity, Subject: "the " + d.name + " SA table",
					Problem: fmt.Sprintf("is full: %d SAs needed, %d per direction available", d.n, lim),
					Hint:    "delete " + d.name + " SAs, or raise limits.sas_per_direction"}
			}
		}
	}
	return nil
}

// CheckCapacity is [Record.CheckCapacity] on the current configuration.
func (m *Manager) CheckCapacity(u Usage) error { return m.Current().CheckCapacity(u) }
