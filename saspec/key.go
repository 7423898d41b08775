package saspec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// SPI is a security parameter index. In JSON it is written as a hex string
// ("0x00001000") and read from a number or from a decimal or 0x-prefixed
// hex string.
type SPI uint32

// String formats the SPI as 0x%08x.
func (s SPI) String() string { return fmt.Sprintf("0x%08x", uint32(s)) }

// MarshalJSON writes the SPI as a hex string.
func (s SPI) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// UnmarshalJSON reads a number or a string.
func (s *SPI) UnmarshalJSON(b []byte) error {
	txt := string(bytes.TrimSpace(b))
	if strings.HasPrefix(txt, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		txt = str
	}
	v, err := ParseSPI(txt)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSPI reads an SPI written in decimal or as 0x-prefixed hex.
func ParseSPI(s string) (SPI, error) {
	t := strings.TrimSpace(s)
	v, err := strconv.ParseUint(t, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("spi %s is not a 32-bit number: write it in decimal or as 0x-prefixed hex, e.g. 0x1000", quoteInput(s))
	}
	return SPI(v), nil
}

// Key is secret key material. In JSON it is a hex string (an optional 0x
// prefix, colons and spaces are ignored). A Key never prints itself: its
// String, Format and LogValue show only its length, so keys do not leak into
// logs; JSON output is redacted by the table unless keys are explicitly asked
// for (see BundleSpec.Redacted).
type Key struct {
	b   []byte
	bad string // decoding problem, reported with the field path by Validate
}

// KeyOf returns a Key holding a copy of b.
func KeyOf(b []byte) Key { return Key{b: append([]byte(nil), b...)} }

// ParseKey decodes a hex key.
func ParseKey(s string) (Key, error) {
	b, err := decodeHex(s)
	if err != nil {
		return Key{}, err
	}
	return Key{b: b}, nil
}

func decodeHex(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
	t = strings.NewReplacer(":", "", " ", "", "_", "").Replace(t)
	if len(t)%2 != 0 {
		return nil, fmt.Errorf("has an odd number of hex digits (%d); give whole bytes, two hex digits each", len(t))
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		var ie hex.InvalidByteError
		if errors.As(err, &ie) {
			return nil, fmt.Errorf("is not hexadecimal (found %q): give the key as hex digits, optionally with a 0x prefix", rune(ie))
		}
		return nil, fmt.Errorf("is not hexadecimal: give the key as hex digits, optionally with a 0x prefix")
	}
	return b, nil
}

// Bytes returns the key material (not a copy).
func (k Key) Bytes() []byte { return k.b }

// Len returns the key length in bytes.
func (k Key) Len() int { return len(k.b) }

// IsZero reports an absent key (for omitzero).
func (k Key) IsZero() bool { return len(k.b) == 0 && k.bad == "" }

// Equal compares two keys.
func (k Key) Equal(o Key) bool { return bytes.Equal(k.b, o.b) && k.bad == o.bad }

// Wipe zeroes the key material in place.
func (k *Key) Wipe() {
	clear(k.b)
	k.b = nil
}

// Clone returns a deep copy.
func (k Key) Clone() Key { return Key{b: append([]byte(nil), k.b...), bad: k.bad} }

// Hex returns the key as lowercase hex without prefix. Only for explicit
// key export.
func (k Key) Hex() string { return hex.EncodeToString(k.b) }

// String shows only the length.
func (k Key) String() string { return fmt.Sprintf("[%d-byte key]", len(k.b)) }

// Format shows only the length, whatever the verb.
func (k Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue shows only the length.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON writes the key as hex. The table only hands out specs with
// keys when asked to (BundleSpec.Redacted removes them).
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal("0x" + k.Hex()) }

// UnmarshalJSON reads a hex string. Malformed input is remembered and
// reported by Validate, with the field's path.
func (k *Key) UnmarshalJSON(b []byte) error {
	*k = Key{}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		k.bad = "must be a quoted hex string (in YAML quote it, e.g. \"0x0011...\", or the number is read as an integer)"
		return nil
	}
	v, err := decodeHex(s)
	if err != nil {
		k.bad = err.Error()
		return nil
	}
	k.b = v
	return nil
}
