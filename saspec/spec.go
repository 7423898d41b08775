// Package saspec is the schema of SA bundles and policies shared by the
// control API, the CLI and the configuration file: BundleSpec, SASpec,
// PolicySpec, keys and SPIs, their strict JSON/YAML decoding, validation
// into typed plans (BundleSpec.Plan, PolicySpec.Plan) and the field errors
// and error codes every refusal carries. Package sadb installs what it
// describes.
package saspec

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/secnic/secnic/capabilities"
)

// SASpec is one SA of a bundle: the ESP or the AH part.
type SASpec struct {
	// SPI is the security parameter index (256 or more; 1-255 are reserved).
	SPI SPI `json:"spi"`
	// Enc is the ESP encryption algorithm (canonical name, e.g.
	// "aes-gcm-128", "aes-cbc-256", "null"); empty for AH.
	Enc string `json:"enc,omitempty"`
	// Auth is the integrity algorithm (e.g. "hmac-sha256-128"); "none" or
	// empty with a combined-mode Enc (AES-GCM, ChaCha20-Poly1305, AES-GMAC).
	Auth string `json:"auth,omitempty"`
	// ICVLen is the AES-GCM ICV length in bytes (8, 12 or 16; 0 = 16).
	ICVLen int `json:"icv_len,omitempty"`
	// EncKey is the encryption KEYMAT, salt or nonce last (RFC 4106, 3686,
	// 4543, 7634): e.g. 20 bytes for aes-gcm-128.
	EncKey Key `json:"enc_key,omitzero"`
	// AuthKey is the integrity key (AH GMAC: AES key plus 4-byte salt).
	AuthKey Key `json:"auth_key,omitzero"`
	// KeysRedacted is set in output when the keys were left out; a spec
	// with it set cannot be added (export with keys instead).
	KeysRedacted bool `json:"keys_redacted,omitempty"`
}

// UDPEncapSpec is RFC 3948 UDP encapsulation of ESP, with the NDIS UDP-ESP
// encapsulation type.
type UDPEncapSpec struct {
	// Type is the NDIS UDP-ESP type: "none", "transport", "tunnel",
	// "transport-over-udp-tunnel" (NDIS
	// TRANSPORT_OVER_UDP_ESP_ENCAPSULATION_TUNNEL, value 4) or
	// "udp-transport-over-tunnel" (NDIS
	// UDP_ESP_ENCAPSULATION_TRANSPORT_OVER_TUNNEL, value 8). Empty means
	// the bundle's mode ("transport" or "tunnel").
	Type string `json:"type,omitempty"`
	// SrcPort and DstPort are the UDP ports (0 = 4500).
	SrcPort uint16 `json:"src_port,omitempty"`
	DstPort uint16 `json:"dst_port,omitempty"`
}

// LimitSpec is one set of lifetime limits; 0 means unlimited.
type LimitSpec struct {
	Bytes   uint64 `json:"bytes,omitempty"`
	Packets uint64 `json:"packets,omitempty"`
	Seconds uint64 `json:"seconds,omitempty"`
}

// LifetimeSpec holds the soft and hard lifetimes of each SA of a bundle.
// Reaching a soft limit raises an sa_delete_request event (NDIS SaDeleteReq,
// XFRM soft expire); reaching a hard limit stops the SA, which stays in the
// table until deleted.
type LifetimeSpec struct {
	Soft LimitSpec `json:"soft,omitzero"`
	Hard LimitSpec `json:"hard,omitzero"`
}

// Default values of the schema.
const (
	// DefaultReplayWindow is the inbound anti-replay window when none is
	// given (RFC 4303 3.4.3 recommends 64).
	DefaultReplayWindow = 64
	// DefaultEncapPort is the RFC 3948 NAT-T port (the only one NDIS supports).
	DefaultEncapPort = 4500
	// MaxNameLen bounds bundle and policy names.
	MaxNameLen = 64
)

// BundleSpec is an SA bundle as the API, the CLI and the configuration file
// describe it: one direction, ESP, AH or both (ESP applied first on output,
// AH outermost), as in NDIS IPSEC_OFFLOAD_V2_ADD_SA.
type BundleSpec struct {
	// Name optionally identifies the bundle (letters, digits, '.', '_',
	// '-'; at most 64). Policies and the CLI may refer to it by name; the
	// configuration file requires it.
	Name string `json:"name,omitempty"`
	// Dir is "in" or "out".
	Dir string `json:"dir"`
	// Mode is "transport" (default) or "tunnel".
	Mode string `json:"mode,omitempty"`
	// Family is "ipv4" or "ipv6"; derived from Src and Dst when empty.
	Family string `json:"family,omitempty"`
	// Src and Dst are the SA's endpoints (the tunnel endpoints in tunnel
	// mode). An empty or unspecified address ("", "0.0.0.0", "::") is a
	// wildcard, as NDIS says; tunnel mode needs both.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// ESN enables 64-bit extended sequence numbers.
	ESN bool `json:"esn,omitempty"`
	// SeqHigh is the initial high half of the sequence number (NDIS
	// SequenceNumberHighOrder); only with ESN.
	SeqHigh uint32 `json:"seq_high,omitempty"`
	// ReplayWindow is the inbound anti-replay window in packets: nil means
	// 64, 0 disables anti-replay, otherwise 32 to 8192. Outbound bundles
	// take none.
	ReplayWindow *int `json:"replay_window,omitempty"`
	// UDPEncap enables UDP encapsulation (ESP only).
	UDPEncap *UDPEncapSpec `json:"udp_encap,omitempty"`
	// TTL is the outer TTL / hop limit in tunnel mode (0 = 64).
	TTL uint8 `json:"ttl,omitempty"`
	// DF is the outer IPv4 DF bit in tunnel mode: "copy" (default), "set"
	// or "clear".
	DF string `json:"df,omitempty"`
	// TFCPad pads tunnel-mode inner packets to this many bytes (RFC 4303 2.7).
	TFCPad int `json:"tfc_pad,omitempty"`
	// Lifetime is applied to each SA of the bundle.
	Lifetime LifetimeSpec `json:"lifetime,omitzero"`
	// AllowLegacy permits DES, 3DES and HMAC-MD5 (also needed in the
	// current offload configuration).
	AllowLegacy bool `json:"allow_legacy,omitempty"`
	// Offload is "crypto" (the NDIS IPsecOV2 split; the host stack frames
	// the packets over the driver socket) or "packet" (secnic's packet
	// offload, like XFRM_DEV_OFFLOAD_PACKET); empty means the NIC's mode.
	// A bundle asking for the mode the NIC does not run is refused.
	Offload string `json:"offload,omitempty"`
	// ESP and AH are the SAs; at least one. With both, the bundle is
	// AH+ESP (NDIS AhEspCombined).
	ESP *SASpec `json:"esp,omitempty"`
	AH  *SASpec `json:"ah,omitempty"`
}

// Clone returns a deep copy, keys included.
func (b BundleSpec) Clone() BundleSpec {
	c := b
	if b.ReplayWindow != nil {
		w := *b.ReplayWindow
		c.ReplayWindow = &w
	}
	if b.UDPEncap != nil {
		u := *b.UDPEncap
		c.UDPEncap = &u
	}
	for _, p := range []**SASpec{&c.ESP, &c.AH} {
		if *p != nil {
			s := **p
			s.EncKey, s.AuthKey = s.EncKey.Clone(), s.AuthKey.Clone()
			*p = &s
		}
	}
	return c
}

// Redacted returns a copy without key material; the SAs say keys_redacted.
func (b BundleSpec) Redacted() BundleSpec {
	c := b
	for _, p := range []**SASpec{&c.ESP, &c.AH} {
		if *p != nil {
			s := **p
			if !s.EncKey.IsZero() || !s.AuthKey.IsZero() {
				s.KeysRedacted = true
			}
			s.EncKey, s.AuthKey = Key{}, Key{}
			*p = &s
		}
	}
	return c
}

// Wipe zeroes the key material of the spec in place.
func (b *BundleSpec) Wipe() {
	for _, s := range []*SASpec{b.ESP, b.AH} {
		if s != nil {
			s.EncKey.Wipe()
			s.AuthKey.Wipe()
		}
	}
}

// String describes the bundle without key material.
func (b BundleSpec) String() string {
	var parts []string
	if b.Name != "" {
		parts = append(parts, b.Name+":")
	}
	parts = append(parts, b.Dir, orDefault(b.Mode, "transport"), orDefault(b.Src, "*")+"->"+orDefault(b.Dst, "*"))
	if b.ESP != nil {
		parts = append(parts, fmt.Sprintf("esp spi=%v enc=%s auth=%s", b.ESP.SPI, b.ESP.Enc, orDefault(b.ESP.Auth, "none")))
	}
	if b.AH != nil {
		parts = append(parts, fmt.Sprintf("ah spi=%v auth=%s", b.AH.SPI, b.AH.Auth))
	}
	if b.ESN {
		parts = append(parts, "esn")
	}
	if b.UDPEncap != nil {
		parts = append(parts, "udp-encap="+orDefault(b.UDPEncap.Type, "auto"))
	}
	return strings.Join(parts, " ")
}

// LogValue describes the bundle without key material.
func (b BundleSpec) LogValue() slog.Value { return slog.StringValue(b.String()) }

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// UDP-ESP type names of the schema.
const (
	EncapNone                   = "none"
	EncapTransport              = "transport"
	EncapTunnel                 = "tunnel"
	EncapTransportOverUDPTunnel = "transport-over-udp-tunnel"
	EncapUDPTransportOverTunnel = "udp-transport-over-tunnel"
)

// UDPESPType maps a schema name onto the NDIS UDP-ESP type.
func UDPESPType(name string) (capabilities.UDPESPTypes, bool) {
	switch name {
	case EncapNone:
		return capabilities.UDPESPNone, true
	case EncapTransport:
		return capabilities.UDPESPTransport, true
	case EncapTunnel:
		return capabilities.UDPESPTunnel, true
	case EncapTransportOverUDPTunnel:
		return capabilities.UDPESPTransportOverUDPTunnel, true
	case EncapUDPTransportOverTunnel:
		return capabilities.UDPESPUDPTransportOverTunnel, true
	}
	return 0, false
}

// UpdateSpec is an NDIS UPDATE_SA: new high-order 32 bits of the extended
// sequence number for the bundle's ESN SAs.
type UpdateSpec struct {
	// SeqHigh is the new SequenceNumberHighOrder.
	SeqHigh uint32 `json:"seq_high"`
	// Proto ("esp" or "ah") and SPI optionally select one SA of the bundle
	// (NDIS passes Operation and Spi); without them every ESN SA of the
	// bundle is updated.
	Proto string `json:"proto,omitempty"`
	SPI   SPI    `json:"spi,omitempty"`
}
