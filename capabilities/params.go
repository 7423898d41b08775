package capabilities

import (
	"fmt"
	"strconv"
	"strings"
)

// IPsecV2Setting is a value of NDIS_OFFLOAD_PARAMETERS.IPsecV2 or .IPsecV2IPv4
// (OID_TCP_OFFLOAD_PARAMETERS). In JSON it is the NDIS number.
type IPsecV2Setting uint8

// NDIS_OFFLOAD_PARAMETERS IPsecV2 values.
const (
	IPsecV2NoChange        IPsecV2Setting = 0 // NDIS_OFFLOAD_PARAMETERS_NO_CHANGE
	IPsecV2Disabled        IPsecV2Setting = 1 // NDIS_OFFLOAD_PARAMETERS_IPSECV2_DISABLED
	IPsecV2AHEnabled       IPsecV2Setting = 2 // NDIS_OFFLOAD_PARAMETERS_IPSECV2_AH_ENABLED
	IPsecV2ESPEnabled      IPsecV2Setting = 3 // NDIS_OFFLOAD_PARAMETERS_IPSECV2_ESP_ENABLED
	IPsecV2AHAndESPEnabled IPsecV2Setting = 4 // NDIS_OFFLOAD_PARAMETERS_IPSECV2_AH_AND_ESP_ENABLED
)

var settingNames = [...]string{"NO_CHANGE", "DISABLED", "AH_ENABLED", "ESP_ENABLED", "AH_AND_ESP_ENABLED"}

const settingValues = "0 NO_CHANGE, 1 DISABLED, 2 AH_ENABLED, 3 ESP_ENABLED, 4 AH_AND_ESP_ENABLED"

// Valid reports whether s is one of the five NDIS values.
func (s IPsecV2Setting) Valid() bool { return s <= IPsecV2AHAndESPEnabled }

// String returns the NDIS name without prefix, e.g. "ESP_ENABLED".
func (s IPsecV2Setting) String() string {
	if s.Valid() {
		return settingNames[s]
	}
	return fmt.Sprintf("IPsecV2Setting(%d)", uint8(s))
}

// Protocols returns which protocols the setting enables. It is meaningless
// for IPsecV2NoChange and invalid values.
func (s IPsecV2Setting) Protocols() (ah, esp bool) {
	switch s {
	case IPsecV2AHEnabled:
		return true, false
	case IPsecV2ESPEnabled:
		return false, true
	case IPsecV2AHAndESPEnabled:
		return true, true
	}
	return false, false
}

// SettingFor returns the setting that enables exactly the given protocols.
func SettingFor(ah, esp bool) IPsecV2Setting {
	switch {
	case ah && esp:
		return IPsecV2AHAndESPEnabled
	case ah:
		return IPsecV2AHEnabled
	case esp:
		return IPsecV2ESPEnabled
	}
	return IPsecV2Disabled
}

// ParseIPsecV2Setting reads a setting as a number ("0".."4"), as an NDIS name
// ("ESP_ENABLED", with or without the NDIS_OFFLOAD_PARAMETERS_IPSECV2_
// prefix) or as a short name: "no-change", "disabled"/"off", "ah", "esp",
// "ah+esp".
func ParseIPsecV2Setting(s string) (IPsecV2Setting, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseUint(t, 10, 8); err == nil {
		v := IPsecV2Setting(n)
		if !v.Valid() {
			return 0, invalid(fmt.Sprintf("IPsecV2 setting %d", n), "is out of range", "valid values: "+settingValues)
		}
		return v, nil
	}
	u := strings.ToUpper(t)
	u = strings.TrimPrefix(u, "NDIS_OFFLOAD_PARAMETERS_IPSECV2_")
	u = strings.TrimPrefix(u, "NDIS_OFFLOAD_PARAMETERS_")
	switch u {
	case "NO_CHANGE", "NO-CHANGE":
		return IPsecV2NoChange, nil
	case "DISABLED", "OFF":
		return IPsecV2Disabled, nil
	case "AH_ENABLED", "AH":
		return IPsecV2AHEnabled, nil
	case "ESP_ENABLED", "ESP":
		return IPsecV2ESPEnabled, nil
	case "AH_AND_ESP_ENABLED", "AH+ESP", "AH_AND_ESP", "ON":
		return IPsecV2AHAndESPEnabled, nil
	}
	return 0, invalid(fmt.Sprintf("IPsecV2 setting %q", s), "is unknown",
		"valid values: "+settingValues+", or off, ah, esp, ah+esp")
}

// OffloadParameters are the IPsecOV2 members of NDIS_OFFLOAD_PARAMETERS.
//
// IPsecV2 applies to IPv4 and IPv6; IPsecV2IPv4 is meant for adapters that
// support IPv4 but not IPv6. secnic decides which one counts by the hardware
// record's IPv6Supported:
//
//   - IPv6-capable hardware: IPsecV2 counts. IPsecV2IPv4 must be NO_CHANGE or
//     equal to IPsecV2 (a per-family setting cannot be expressed).
//   - IPv4-only hardware: IPsecV2IPv4 counts; if it is NO_CHANGE, IPsecV2
//     counts. If both are set they must be equal.
type OffloadParameters struct {
	IPsecV2     IPsecV2Setting `json:"ipsec_v2"`
	IPsecV2IPv4 IPsecV2Setting `json:"ipsec_v2_ipv4"`
}

// Validate checks that both members hold NDIS values.
func (p OffloadParameters) Validate() error {
	for _, f := range []struct {
		name string
		v    IPsecV2Setting
	}{{"IPsecV2", p.IPsecV2}, {"IPsecV2IPv4", p.IPsecV2IPv4}} {
		if !f.v.Valid() {
			return invalid(fmt.Sprintf("offload parameter %s = %d", f.name, uint8(f.v)), "is invalid",
				"valid values: "+settingValues)
		}
	}
	return nil
}

// effective returns the setting that applies to an adapter whose hardware
// does (ipv6) or does not support IPv6.
func (p OffloadParameters) effective(ipv6 bool) (IPsecV2Setting, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if ipv6 {
		if p.IPsecV2IPv4 != IPsecV2NoChange && p.IPsecV2IPv4 != p.IPsecV2 {
			return 0, invalid(fmt.Sprintf("offload parameter IPsecV2IPv4 = %s", p.IPsecV2IPv4),
				fmt.Sprintf("conflicts with IPsecV2 = %s", p.IPsecV2),
				"this adapter supports IPv6, so IPsecV2 sets IPv4 and IPv6 together; leave IPsecV2IPv4 at NO_CHANGE")
		}
		return p.IPsecV2, nil
	}
	if p.IPsecV2IPv4 == IPsecV2NoChange {
		return p.IPsecV2, nil
	}
	if p.IPsecV2 != IPsecV2NoChange && p.IPsecV2 != p.IPsecV2IPv4 {
		return 0, invalid(fmt.Sprintf("offload parameter IPsecV2 = %s", p.IPsecV2),
			fmt.Sprintf("conflicts with IPsecV2IPv4 = %s", p.IPsecV2IPv4),
			"this adapter supports IPv4 only; set IPsecV2IPv4 and leave IPsecV2 at NO_CHANGE")
	}
	return p.IPsecV2IPv4, nil
}

// Registry keywords *IPsecOffloadV2 and *IPsecOffloadV2IPv4 number the same
// choices differently from the OID: 0 disabled, 1 AH, 2 ESP, 3 AH and ESP.
const (
	KeywordDisabled  = 0
	KeywordAH        = 1
	KeywordESP       = 2
	KeywordAHAndESP  = 3
	KeywordDefault   = KeywordAHAndESP
	keywordValueList = "0 disabled, 1 AH, 2 ESP, 3 AH and ESP"
)

// SettingFromKeyword converts a registry keyword value (0-3) to the
// OID_TCP_OFFLOAD_PARAMETERS value (1-4).
func SettingFromKeyword(k int) (IPsecV2Setting, error) {
	if k < KeywordDisabled || k > KeywordAHAndESP {
		return 0, invalid(fmt.Sprintf("registry keyword *IPsecOffloadV2 = %d", k), "is invalid",
			"valid values: "+keywordValueList)
	}
	return IPsecV2Setting(k + 1), nil
}

// KeywordFromSetting converts an OID value (1-4) to the registry keyword
// value (0-3). NO_CHANGE has no keyword.
func KeywordFromSetting(s IPsecV2Setting) (int, error) {
	if s == IPsecV2NoChange || !s.Valid() {
		return 0, invalid(fmt.Sprintf("IPsecV2 setting %s", s), "has no registry keyword value",
			"only DISABLED, AH_ENABLED, ESP_ENABLED and AH_AND_ESP_ENABLED do")
	}
	return int(s) - 1, nil
}
