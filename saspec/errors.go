package saspec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/secnic/secnic/capabilities"
)

var (
	// ErrInvalid: the request is malformed or inconsistent. It is the same
	// value as capabilities.ErrInvalid.
	ErrInvalid = capabilities.ErrInvalid
	// ErrCapacity: the SA offload capacity is used up. It is the same value
	// as capabilities.ErrCapacity.
	ErrCapacity = capabilities.ErrCapacity
	// ErrNotFound: no bundle or policy has that handle, name or ID.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the SPI, name or policy ID is already in use.
	ErrConflict = errors.New("conflict")
)

// Error is a refused request: which field (a JSON path such as
// "esp.enc_key" or "sas[2].dst"), what is wrong and how to fix it.
type Error struct {
	// Kind is ErrInvalid, ErrNotFound, ErrConflict or ErrCapacity.
	Kind error
	// Field is the JSON path of the offending field; may be empty.
	Field string
	// Msg says what is wrong and what to do.
	Msg string
	// Err is the underlying error (from capabilities or suite), if any.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("sa: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the kind and the underlying error.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

func Invalidf(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// WrapField returns err with field prefixed to its path.
func WrapField(prefix string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Field == "" {
			c.Field = prefix
		} else {
			c.Field = prefix + "." + c.Field
		}
		return &c
	}
	return &Error{Kind: ErrInvalid, Field: prefix, Msg: err.Error(), Err: err}
}

// ErrKeyReuse: an outbound SA would use key material that another outbound
// SA uses or used (a repeated (key, nonce) pair).
var ErrKeyReuse = errors.New("key reuse")

// ErrState: the state directory could not record a reservation, so the
// change was not made.
var ErrState = errors.New("state directory")

// ErrorCode maps an error of this package (or of capabilities) onto a
// short code for APIs: invalid, not_found, conflict, capacity, disabled,
// not_supported, or internal.
func ErrorCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrKeyReuse):
		return "key_reuse"
	case errors.Is(err, ErrState):
		return "state"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrCapacity):
		return "capacity"
	case errors.Is(err, capabilities.ErrDisabled):
		return "disabled"
	case errors.Is(err, capabilities.ErrNotSupported):
		return "not_supported"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	}
	return "internal"
}
