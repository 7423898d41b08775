package sadb

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

func invalidf(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// wrapField returns err with field prefixed to its path.
func wrapField(prefix string, err error) error {
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
