package capabilities

import "fmt"

// OffloadMode is how a NIC offloads IPsec, chosen per NIC in its
// configuration, and how a bundle asks to be offloaded.
type OffloadMode string

// Offload modes.
const (
	// OffloadPacket: secnic's packet offload (like Linux
	// XFRM_DEV_OFFLOAD_PACKET): the NIC frames, numbers and checks
	// everything; the host port is a TUN device. It needs the feature
	// packet_offload.
	OffloadPacket OffloadMode = "packet"
	// OffloadCrypto: the NDIS IPsecOV2 split (Linux XFRM_DEV_OFFLOAD_CRYPTO):
	// the host stack frames and numbers the packets and does anti-replay;
	// the NIC encrypts, decrypts and checks ICVs; the host port is the
	// driver socket.
	OffloadCrypto OffloadMode = "crypto"
)

// ParseOffloadMode reads a mode; "" is returned as "" (the default of
// whoever asks).
func ParseOffloadMode(s string) (OffloadMode, error) {
	switch m := OffloadMode(s); m {
	case "", OffloadPacket, OffloadCrypto:
		return m, nil
	}
	return "", invalid(fmt.Sprintf("offload %q", s), "is not an offload mode", `use "packet" or "crypto"`)
}

// defaultMode is a new Manager's mode: packet offload when the hardware
// has it, crypto offload otherwise.
func defaultMode(hw Record) OffloadMode {
	if hw.Limits.PacketOffload {
		return OffloadPacket
	}
	return OffloadCrypto
}

// OffloadMode returns the NIC's offload mode: what a bundle without an
// offload of its own gets, and the only mode a bundle may ask for.
func (m *Manager) OffloadMode() OffloadMode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mode
}

// SetOffloadMode sets the NIC's offload mode (the daemon does, from the
// configuration, before any SA is added). It does not check the
// hardware: on a NIC in packet mode whose hardware lacks packet offload
// every bundle is refused, with an error that says so.
func (m *Manager) SetOffloadMode(mode OffloadMode) error {
	if mode != OffloadPacket && mode != OffloadCrypto {
		return invalid(fmt.Sprintf("offload mode %q", mode), "is not an offload mode", `use "packet" or "crypto"`)
	}
	m.mu.Lock()
	m.mode = mode
	m.mu.Unlock()
	return nil
}

// resolveOffload applies the NIC's mode to a request: a bundle without an
// offload gets the NIC's; one that asks for the other mode is refused.
func resolveOffload(mode OffloadMode, req BundleRequest) (BundleRequest, error) {
	want := req.Offload
	if want == "" && req.PacketOffload {
		want = OffloadPacket
	}
	if want == "" {
		want = mode
	}
	if want != mode {
		return req, &Error{Kind: ErrInvalid, Field: "offload",
			Subject: fmt.Sprintf("offload %q", want),
			Problem: fmt.Sprintf("does not match this NIC, which does %s offload", mode),
			Hint:    fmt.Sprintf(`leave offload out or give %q, or run the NIC with offload: %s`, mode, want)}
	}
	req.Offload, req.PacketOffload = want, want == OffloadPacket
	return req, nil
}
