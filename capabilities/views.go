package capabilities

import (
	"fmt"
	"strconv"
	"strings"
)

// Field is one named value of a view, formatted for display.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func ndisBool(v bool) string {
	if v {
		return "TRUE"
	}
	return "FALSE"
}

// NDISView lists the record as an NDIS stack sees it: the
// NDIS_IPSEC_OFFLOAD_V2 fields in declaration order, then
// NDIS_OFFLOAD.Flags. Masks show their value and decoded names, e.g.
// "0x00000002 (IEEE_802_3)"; booleans show TRUE or FALSE. Extensions and
// limits are not part of it (see [Record.SecnicView]).
func (r Record) NDISView() []Field {
	return []Field{
		{"Encapsulation", r.Encapsulation.String()},
		{"IPv6Supported", ndisBool(r.IPv6Supported)},
		{"IPv4Options", ndisBool(r.IPv4Options)},
		{"IPv6NonIPsecExtensionHeaders", ndisBool(r.IPv6NonIPsecExtensionHeaders)},
		{"Ah", ndisBool(r.Ah)},
		{"Esp", ndisBool(r.Esp)},
		{"AhEspCombined", ndisBool(r.AhEspCombined)},
		{"Transport", ndisBool(r.Transport)},
		{"Tunnel", ndisBool(r.Tunnel)},
		{"TransportTunnelCombined", ndisBool(r.TransportTunnelCombined)},
		{"LsoSupported", ndisBool(r.LsoSupported)},
		{"ExtendedSequenceNumbers", ndisBool(r.ExtendedSequenceNumbers)},
		{"UdpEsp", r.UdpEsp.String()},
		{"AuthenticationAlgorithms", r.AuthenticationAlgorithms.String()},
		{"EncryptionAlgorithms", r.EncryptionAlgorithms.String()},
		{"SaOffloadCapacity", strconv.FormatUint(uint64(r.SaOffloadCapacity), 10)},
		{"NDIS_OFFLOAD.Flags", r.OffloadFlags.String()},
	}
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}

// SecnicView lists what the NDIS view cannot show: the extensions, the
// limits, and the canonical names of all algorithms the record allows.
func (r Record) SecnicView() []Field {
	perDir := "shared (no per-direction limit)"
	if r.Limits.SAsPerDirection != 0 {
		perDir = strconv.FormatUint(uint64(r.Limits.SAsPerDirection), 10)
	}
	algs := r.EnabledAlgorithms()
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ", ")
	}
	return []Field{
		{"extensions.encryption", r.Extensions.Encryption.String()},
		{"extensions.integrity", r.Extensions.Integrity.String()},
		{"extensions.gcm_icv_lengths", r.Extensions.GCMICVLengths.String()},
		{"limits.max_replay_window", strconv.FormatUint(uint64(r.Limits.MaxReplayWindow), 10)},
		{"limits.sas_per_direction", perDir},
		{"limits.packet_offload", yesNo(r.Limits.PacketOffload)},
		{"limits.legacy_algorithms", yesNo(r.Limits.LegacyAlgorithms)},
		{"algorithms.encryption", list(algs.Encryption)},
		{"algorithms.integrity", list(algs.Integrity)},
	}
}

// Linux ethtool feature names.
const (
	EthtoolESPHWOffload       = "esp-hw-offload"
	EthtoolESPTxCsumHWOffload = "esp-tx-csum-hw-offload"
	EthtoolTxESPSegmentation  = "tx-esp-segmentation"
)

// LinuxFeature is one ethtool feature as `ethtool -k` shows it.
type LinuxFeature struct {
	// Name is the ethtool name, e.g. "esp-hw-offload".
	Name string `json:"name"`
	// NetdevFeature is the kernel bit, e.g. "NETIF_F_HW_ESP".
	NetdevFeature string `json:"netdev_feature"`
	// On: the feature is active in the current configuration.
	On bool `json:"on"`
	// Fixed: the hardware cannot change it ("[fixed]" in ethtool).
	Fixed bool `json:"fixed"`
}

// String formats f as ethtool does, e.g. "esp-hw-offload: on" or
// "tx-esp-segmentation: off [fixed]".
func (f LinuxFeature) String() string {
	s := f.Name + ": off"
	if f.On {
		s = f.Name + ": on"
	}
	if f.Fixed {
		s += " [fixed]"
	}
	return s
}

// LinuxView maps the records to the Linux ethtool features:
// esp-hw-offload is ESP offload; esp-tx-csum-hw-offload is the TCP and UDP
// checksum-coexistence bits together; tx-esp-segmentation is LsoSupported.
// The latter two are only on while ESP offload is on (as the kernel demands),
// and a feature is fixed when the hardware cannot switch it on.
func LinuxView(hw, cur Record) []LinuxFeature {
	csum := FlagTCPChecksumCoexistence | FlagUDPChecksumCoexistence
	return []LinuxFeature{
		{Name: EthtoolESPHWOffload, NetdevFeature: "NETIF_F_HW_ESP", On: cur.Esp, Fixed: !hw.Esp},
		{Name: EthtoolESPTxCsumHWOffload, NetdevFeature: "NETIF_F_HW_ESP_TX_CSUM",
			On: cur.Esp && cur.OffloadFlags.Has(csum), Fixed: !hw.Esp || !hw.OffloadFlags.Has(csum)},
		{Name: EthtoolTxESPSegmentation, NetdevFeature: "NETIF_F_GSO_ESP",
			On: cur.Esp && cur.LsoSupported, Fixed: !hw.Esp || !hw.LsoSupported},
	}
}

// LinuxView is [LinuxView] of the Manager's records.
func (m *Manager) LinuxView() []LinuxFeature {
	hw, cur := m.Snapshot()
	return LinuxView(hw, cur)
}

// SetLinuxFeature applies `ethtool -K dev NAME on|off`: esp-hw-offload
// switches ESP (AH is left alone), esp-tx-csum-hw-offload both
// checksum-coexistence bits, tx-esp-segmentation LsoSupported. The latter two
// need esp-hw-offload on, as in the kernel.
func (m *Manager) SetLinuxFeature(name string, on bool) (bool, error) {
	var names []string
	switch name {
	case EthtoolESPHWOffload:
		names = []string{FeatureEsp}
	case EthtoolESPTxCsumHWOffload:
		names = []string{FeatureTCPChecksumCoexistence, FeatureUDPChecksumCoexistence}
	case EthtoolTxESPSegmentation:
		names = []string{FeatureLsoSupported}
	default:
		return false, invalid(fmt.Sprintf("ethtool feature %q", name), "is not an IPsec feature",
			"use "+EthtoolESPHWOffload+", "+EthtoolESPTxCsumHWOffload+" or "+EthtoolTxESPSegmentation)
	}
	return m.update(func(hw, next *Record) error {
		if on && name != EthtoolESPHWOffload && !next.Esp {
			return invalid("ethtool feature "+name, "requires "+EthtoolESPHWOffload, "switch on "+EthtoolESPHWOffload+" first")
		}
		for _, n := range names {
			f, _ := lookupFeature(n)
			if err := m.applyFeature(hw, next, f, on); err != nil {
				if on && !f.get(hw) {
					return m.notInHardware("ethtool feature "+name, "it is [fixed] off")
				}
				return err
			}
		}
		return nil
	})
}
