package capabilities

// Overrides changes a record field by field: every non-nil field replaces
// the record's value (a mask is replaced as a whole, not merged). Its JSON
// shape mirrors [Record], so a configuration file can say, in YAML (read
// with sigs.k8s.io/yaml, which goes through the JSON tags and the masks'
// JSON methods):
//
//	hardware:
//	  tunnel: false
//	  encryption_algorithms: [aes-gcm-128, aes-cbc-256]
//	  extensions:
//	    gcm_icv_lengths: [16]
//	  limits:
//	    max_replay_window: 1024
//
// Decode with unknown fields disallowed (json.Decoder.DisallowUnknownFields,
// yaml.UnmarshalStrict) so that typos are reported.
type Overrides struct {
	Encapsulation                *Encapsulation            `json:"encapsulation,omitempty" yaml:"encapsulation,omitempty"`
	IPv6Supported                *bool                     `json:"ipv6_supported,omitempty" yaml:"ipv6_supported,omitempty"`
	IPv4Options                  *bool                     `json:"ipv4_options,omitempty" yaml:"ipv4_options,omitempty"`
	IPv6NonIPsecExtensionHeaders *bool                     `json:"ipv6_non_ipsec_extension_headers,omitempty" yaml:"ipv6_non_ipsec_extension_headers,omitempty"`
	Ah                           *bool                     `json:"ah,omitempty" yaml:"ah,omitempty"`
	Esp                          *bool                     `json:"esp,omitempty" yaml:"esp,omitempty"`
	AhEspCombined                *bool                     `json:"ah_esp_combined,omitempty" yaml:"ah_esp_combined,omitempty"`
	Transport                    *bool                     `json:"transport,omitempty" yaml:"transport,omitempty"`
	Tunnel                       *bool                     `json:"tunnel,omitempty" yaml:"tunnel,omitempty"`
	TransportTunnelCombined      *bool                     `json:"transport_tunnel_combined,omitempty" yaml:"transport_tunnel_combined,omitempty"`
	LsoSupported                 *bool                     `json:"lso_supported,omitempty" yaml:"lso_supported,omitempty"`
	ExtendedSequenceNumbers      *bool                     `json:"extended_sequence_numbers,omitempty" yaml:"extended_sequence_numbers,omitempty"`
	UdpEsp                       *UDPESPTypes              `json:"udp_esp,omitempty" yaml:"udp_esp,omitempty"`
	AuthenticationAlgorithms     *AuthenticationAlgorithms `json:"authentication_algorithms,omitempty" yaml:"authentication_algorithms,omitempty"`
	EncryptionAlgorithms         *EncryptionAlgorithms     `json:"encryption_algorithms,omitempty" yaml:"encryption_algorithms,omitempty"`
	SaOffloadCapacity            *uint32                   `json:"sa_offload_capacity,omitempty" yaml:"sa_offload_capacity,omitempty"`
	OffloadFlags                 *OffloadFlags             `json:"offload_flags,omitempty" yaml:"offload_flags,omitempty"`
	Extensions                   *ExtensionOverrides       `json:"extensions,omitempty" yaml:"extensions,omitempty"`
	Limits                       *LimitOverrides           `json:"limits,omitempty" yaml:"limits,omitempty"`
}

// ExtensionOverrides overrides fields of [Extensions].
type ExtensionOverrides struct {
	Encryption    *ExtEncryption `json:"encryption,omitempty" yaml:"encryption,omitempty"`
	Integrity     *ExtIntegrity  `json:"integrity,omitempty" yaml:"integrity,omitempty"`
	GCMICVLengths *ICVLengths    `json:"gcm_icv_lengths,omitempty" yaml:"gcm_icv_lengths,omitempty"`
}

// LimitOverrides overrides fields of [Limits].
type LimitOverrides struct {
	MaxReplayWindow  *uint32 `json:"max_replay_window,omitempty" yaml:"max_replay_window,omitempty"`
	SAsPerDirection  *uint32 `json:"sas_per_direction,omitempty" yaml:"sas_per_direction,omitempty"`
	PacketOffload    *bool   `json:"packet_offload,omitempty" yaml:"packet_offload,omitempty"`
	LegacyAlgorithms *bool   `json:"legacy_algorithms,omitempty" yaml:"legacy_algorithms,omitempty"`
}

func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// Apply returns r with the overrides applied, or an error if the result is
// not a valid record ([Record.Validate]). r itself is not changed.
func (r Record) Apply(o Overrides) (Record, error) {
	set(&r.Encapsulation, o.Encapsulation)
	set(&r.IPv6Supported, o.IPv6Supported)
	set(&r.IPv4Options, o.IPv4Options)
	set(&r.IPv6NonIPsecExtensionHeaders, o.IPv6NonIPsecExtensionHeaders)
	set(&r.Ah, o.Ah)
	set(&r.Esp, o.Esp)
	set(&r.AhEspCombined, o.AhEspCombined)
	set(&r.Transport, o.Transport)
	set(&r.Tunnel, o.Tunnel)
	set(&r.TransportTunnelCombined, o.TransportTunnelCombined)
	set(&r.LsoSupported, o.LsoSupported)
	set(&r.ExtendedSequenceNumbers, o.ExtendedSequenceNumbers)
	set(&r.UdpEsp, o.UdpEsp)
	set(&r.AuthenticationAlgorithms, o.AuthenticationAlgorithms)
	set(&r.EncryptionAlgorithms, o.EncryptionAlgorithms)
	set(&r.SaOffloadCapacity, o.SaOffloadCapacity)
	set(&r.OffloadFlags, o.OffloadFlags)
	if e := o.Extensions; e != nil {
		set(&r.Extensions.Encryption, e.Encryption)
		set(&r.Extensions.Integrity, e.Integrity)
		set(&r.Extensions.GCMICVLengths, e.GCMICVLengths)
	}
	if l := o.Limits; l != nil {
		set(&r.Limits.MaxReplayWindow, l.MaxReplayWindow)
		set(&r.Limits.SAsPerDirection, l.SAsPerDirection)
		set(&r.Limits.PacketOffload, l.PacketOffload)
		set(&r.Limits.LegacyAlgorithms, l.LegacyAlgorithms)
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Config is the capabilities section of a secnic configuration: a profile
// and overrides for its hardware record and for the current configuration.
type Config struct {
	// Profile names the hardware profile; "" means [DefaultProfile].
	Profile string `json:"profile,omitempty" yaml:"profile,omitempty"`
	// Hardware overrides the profile's hardware record.
	Hardware Overrides `json:"hardware,omitzero" yaml:"hardware,omitempty"`
	// Current overrides the default configuration derived from the
	// (overridden) hardware record.
	Current Overrides `json:"current,omitzero" yaml:"current,omitempty"`
}

// Build returns the hardware record and the current configuration the
// config describes: the profile's hardware with c.Hardware applied, and
// [DefaultConfig] of that with c.Current applied. The current configuration
// must stay within the hardware.
func (c Config) Build() (hw, cur Record, err error) {
	p, err := LookupProfile(c.Profile)
	if err != nil {
		return Record{}, Record{}, err
	}
	hw, err = p.Hardware.Apply(c.Hardware)
	if err != nil {
		return Record{}, Record{}, err
	}
	if err := hw.ValidateHardware(); err != nil {
		return Record{}, Record{}, err
	}
	cur, err = DefaultConfig(hw).Apply(c.Current)
	if err != nil {
		return Record{}, Record{}, err
	}
	if err := cur.Within(hw); err != nil {
		return Record{}, Record{}, err
	}
	return hw, cur, nil
}
