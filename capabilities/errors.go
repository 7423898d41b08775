package capabilities

import (
	"encoding/json"
	"errors"
	"strings"
)

// Error kinds. Every error this package returns is an [*Error] whose Kind is
// one of these, so callers can map them with errors.Is (for example onto
// NDIS_STATUS_INVALID_DATA, NDIS_STATUS_NOT_SUPPORTED or
// NDIS_STATUS_RESOURCES).
var (
	// ErrInvalid: the value or request is malformed or inconsistent.
	ErrInvalid = errors.New("invalid")
	// ErrNotSupported: the hardware capabilities do not include it.
	ErrNotSupported = errors.New("not supported by the hardware")
	// ErrDisabled: the hardware has it but the current configuration does not.
	ErrDisabled = errors.New("disabled in the current configuration")
	// ErrCapacity: the SA offload capacity is used up.
	ErrCapacity = errors.New("capacity exhausted")
)

// Error describes a refused value, configuration or SA request.
type Error struct {
	// Kind is ErrInvalid, ErrNotSupported, ErrDisabled or ErrCapacity.
	Kind error
	// Subject names what was asked for, e.g. `encryption "aes-cbc-128"`.
	Subject string
	// Problem says what is wrong with it, e.g. "is disabled in the current
	// configuration".
	Problem string
	// Hint says how to fix it; may be empty.
	Hint string
	// Field, if set, names the request field at fault (e.g. "offload").
	Field string `json:"-"`
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("capabilities: ")
	b.WriteString(e.Subject)
	b.WriteByte(' ')
	b.WriteString(e.Problem)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteByte(')')
	}
	return b.String()
}

// KindName returns a short name for Kind: "invalid", "not_supported",
// "disabled" or "capacity" ("" for anything else).
func (e *Error) KindName() string {
	switch e.Kind {
	case ErrInvalid:
		return "invalid"
	case ErrNotSupported:
		return "not_supported"
	case ErrDisabled:
		return "disabled"
	case ErrCapacity:
		return "capacity"
	}
	return ""
}

// MarshalJSON writes the error for an API: kind (see KindName), subject,
// problem, hint and the full message.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Kind    string `json:"kind"`
		Subject string `json:"subject"`
		Problem string `json:"problem"`
		Hint    string `json:"hint,omitempty"`
		Message string `json:"message"`
	}{e.KindName(), e.Subject, e.Problem, e.Hint, e.Error()})
}

// Unwrap returns Kind, so that errors.Is(err, ErrDisabled) works.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(subject, problem, hint string) error {
	return &Error{Kind: ErrInvalid, Subject: subject, Problem: problem, Hint: hint}
}
