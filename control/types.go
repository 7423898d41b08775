// Package control serves secnic's local control API: HTTP with JSON bodies
// over a unix socket, plus a newline-delimited JSON event stream. The
// daemon serves it; the secnic CLI uses the Client. docs/api.md documents
// every request and response.
package control

import (
	"encoding/json"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// APIVersion prefixes every path.
const APIVersion = "/v1"

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/secnic/secnic.sock"

// ErrorResponse is the body of every error: a message that says what to
// fix, a short code, the offending field if known, and per-entry results
// for multi-entry requests where nothing succeeded.
type ErrorResponse struct {
	Error string `json:"error"`
	// Code is invalid, not_found, conflict, capacity, disabled,
	// not_supported, method_not_allowed or internal.
	Code  string `json:"code"`
	Field string `json:"field,omitempty"`
	// Results holds the per-entry results of an add request that offloaded
	// nothing ([]sa.AddResult or []sa.PolicyResult).
	Results json.RawMessage `json:"results,omitempty"`
}

// HealthResponse answers GET /v1/health.
type HealthResponse struct {
	Status  string `json:"status"`
	Profile string `json:"profile"`
}

// RecordView is one capability record in every view.
type RecordView struct {
	// Record is the record itself (secnic JSON form).
	Record capabilities.Record `json:"record"`
	// NDIS lists the NDIS_IPSEC_OFFLOAD_V2 fields as an NDIS stack sees them.
	NDIS []capabilities.Field `json:"ndis"`
	// Secnic lists what NDIS cannot express (extensions, limits).
	Secnic []capabilities.Field `json:"secnic"`
	// Binary is the 32-byte NDIS_IPSEC_OFFLOAD_V2 structure in hex.
	Binary string `json:"binary"`
	// Algorithms are the canonical names the record allows.
	Algorithms capabilities.Algorithms `json:"algorithms"`
}

// CapabilitiesResponse answers GET /v1/capabilities.
type CapabilitiesResponse struct {
	Profile string `json:"profile"`
	// Setting is the NDIS_OFFLOAD_PARAMETERS IPsecV2 value that describes
	// the current configuration, e.g. "AH_AND_ESP_ENABLED".
	Setting  string     `json:"ipsec_v2"`
	Hardware RecordView `json:"hardware"`
	Current  RecordView `json:"current"`
	// Linux is the ethtool view of the current configuration.
	Linux []capabilities.LinuxFeature `json:"linux"`
	// Deviations lists where the current configuration departs from what
	// NDIS expects.
	Deviations []string `json:"deviations,omitempty"`
	// Usage and Capacity describe the SA table.
	Usage    capabilities.Usage `json:"usage"`
	Capacity uint32             `json:"capacity"`
}

// Toggle switches one part of the current configuration. Exactly one of
// Feature, Encryption, Integrity and Ethtool is set.
type Toggle struct {
	// Feature is a capabilities feature name (e.g. "tunnel",
	// "extended_sequence_numbers", "legacy_algorithms").
	Feature string `json:"feature,omitempty"`
	// Encryption is a canonical encryption algorithm name.
	Encryption string `json:"encryption,omitempty"`
	// Integrity is a canonical integrity algorithm name.
	Integrity string `json:"integrity,omitempty"`
	// Ethtool is a Linux feature: esp-hw-offload, esp-tx-csum-hw-offload,
	// tx-esp-segmentation.
	Ethtool string `json:"ethtool,omitempty"`
	On      bool   `json:"on"`
}

// OffloadRequest is POST /v1/offload: NDIS offload parameters and
// toggles, applied in order and all together (one indication), or not at
// all.
type OffloadRequest struct {
	// IPsecV2 is NDIS_OFFLOAD_PARAMETERS.IPsecV2: a number (0-4) or a name
	// (NO_CHANGE, DISABLED, AH_ENABLED, ESP_ENABLED, AH_AND_ESP_ENABLED;
	// also lower case with dashes, e.g. "esp-enabled").
	IPsecV2 saspec.Ref `json:"ipsec_v2,omitempty"`
	// IPsecV2IPv4 is NDIS_OFFLOAD_PARAMETERS.IPsecV2IPv4 (IPv4-only cards).
	IPsecV2IPv4 saspec.Ref `json:"ipsec_v2_ipv4,omitempty"`
	Toggles     []Toggle   `json:"toggles,omitempty"`
}

// OffloadResponse answers POST /v1/offload.
type OffloadResponse struct {
	// Changed reports whether the current configuration changed (and so an
	// NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG indication was emitted).
	Changed bool                 `json:"changed"`
	Setting string               `json:"ipsec_v2"`
	Current capabilities.Record  `json:"current"`
	NDIS    []capabilities.Field `json:"ndis"`
}

// AddSAsResponse answers POST /v1/sas when at least one bundle was
// offloaded.
type AddSAsResponse struct {
	Results   []sadb.AddResult `json:"results"`
	Offloaded int              `json:"offloaded"`
	Failed    int              `json:"failed"`
}

// ListSAsResponse answers GET /v1/sas: one page of the listing.
type ListSAsResponse struct {
	Bundles  []sadb.BundleInfo  `json:"bundles"`
	Usage    capabilities.Usage `json:"usage"`
	Capacity uint32             `json:"capacity"`
	// Next, when not 0, is the after= of the next page: more bundles
	// follow. Client.ListSAs follows the pages.
	Next sa.Handle `json:"next,omitempty"`
}

// The listing and the per-SA statistics are paged, so that neither the
// daemon's memory nor one reply grows with the table: GET /v1/sas and
// GET /v1/stats take after=HANDLE (the bundles with higher handles) and
// limit=N (bundles per page; DefaultPageLimit when not given, at most
// MaxPageLimit).
const (
	DefaultPageLimit = 1000
	MaxPageLimit     = 10000
)

// DeleteSAsRequest is POST /v1/sas/delete: several bundles, by handle or
// name (NDIS DELETE_SA with a linked list).
type DeleteSAsRequest struct {
	Refs []saspec.Ref `json:"refs"`
}

// DeleteResult is the outcome of deleting one bundle or policy.
type DeleteResult struct {
	Ref    string    `json:"ref"`
	Handle sa.Handle `json:"handle,omitempty"`
	ID     uint32    `json:"id,omitempty"`
	Error  string    `json:"error,omitempty"`
	Code   string    `json:"code,omitempty"`
}

// DeleteSAsResponse answers DELETE /v1/sas/{ref} and POST /v1/sas/delete.
type DeleteSAsResponse struct {
	Results []DeleteResult `json:"results"`
	Deleted int            `json:"deleted"`
}

// AddPoliciesResponse answers POST /v1/policies.
type AddPoliciesResponse struct {
	Results []sadb.PolicyResult `json:"results"`
	Added   int                 `json:"added"`
	Failed  int                 `json:"failed"`
}

// ListPoliciesResponse answers GET /v1/policies.
type ListPoliciesResponse struct {
	Policies []sadb.PolicyInfo `json:"policies"`
}

// DeletePolicyResponse answers DELETE /v1/policies/{ref}.
type DeletePolicyResponse struct {
	ID uint32 `json:"id"`
}

// StatsResponse answers GET /v1/stats: the table's usage, one page of the
// per-SA counters (table.sas: the SAs of at most limit bundles) and the
// NIC's statistics.
type StatsResponse struct {
	Table sadb.TableStats `json:"table"`
	// NIC holds the NIC's own statistics, if the daemon has a StatsSource.
	NIC json.RawMessage `json:"nic,omitempty"`
	// Next, when not 0, is the after= of the next page of table.sas.
	// Client.Stats follows the pages.
	Next sa.Handle `json:"next,omitempty"`
}
