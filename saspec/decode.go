package saspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// State is the declarative form of SA bundles and policies: the "sas" and
// "policies" sections of the configuration file. In State every bundle and
// every policy needs a name, which identifies it across reloads.
type State struct {
	SAs      []BundleSpec `json:"sas,omitempty"`
	Policies []PolicySpec `json:"policies,omitempty"`
}

// DecodeState reads a State from YAML or JSON (JSON is YAML), rejecting
// unknown fields so that typos are reported.
func DecodeState(data []byte) (State, error) {
	var s State
	if err := strictUnmarshal(data, &s); err != nil {
		return State{}, err
	}
	return s, nil
}

// DecodeBundleSpecs reads bundles from YAML or JSON: one bundle object, a
// list of bundles, or an object {"sas": [...]}. Unknown fields are errors.
func DecodeBundleSpecs(data []byte) ([]BundleSpec, error) {
	return decodeSpecs[BundleSpec](data, "sas", "a bundle object, a list of bundles")
}

// DecodePolicySpecs reads policies from YAML or JSON: one policy, a list,
// or {"policies": [...]}.
func DecodePolicySpecs(data []byte) ([]PolicySpec, error) {
	return decodeSpecs[PolicySpec](data, "policies", "a policy object, a list of policies")
}

// decodeSpecs reads one T, a list of T, or {key: [T...]} from YAML or JSON,
// strictly (unknown fields are errors).
func decodeSpecs[T any](data []byte, key, what string) ([]T, error) {
	js, err := toJSON(data)
	if err != nil {
		return nil, err
	}
	switch firstByte(js) {
	case '[':
		var out []T
		if err := decodeJSONStrict(js, &out); err != nil {
			return nil, err
		}
		return out, nil
	case '{':
		var probe map[string]json.RawMessage
		if err := decodeJSONStrict(js, &probe); err != nil {
			return nil, err
		}
		if raw, ok := probe[key]; ok && len(probe) == 1 {
			var out []T
			if err := decodeJSONStrict(raw, &out); err != nil {
				return nil, err
			}
			return out, nil
		}
		var one T
		if err := decodeJSONStrict(js, &one); err != nil {
			return nil, err
		}
		return []T{one}, nil
	}
	return nil, Invalidf("", "expected %s, or {%q: [...]}", what, key)
}

func firstByte(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

func toJSON(data []byte) ([]byte, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, Invalidf("", "the input is empty")
	}
	if c := firstByte(data); c == '{' || c == '[' {
		// JSON (JSON-looking YAML is parsed as JSON, for its precise errors).
		return data, nil
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, Invalidf("", "not valid YAML or JSON: %v", err)
	}
	return js, nil
}

func strictUnmarshal(data []byte, v any) error {
	js, err := toJSON(data)
	if err != nil {
		return err
	}
	return decodeJSONStrict(js, v)
}

// DecodeJSONStrict decodes one JSON value into v, rejecting unknown fields
// and trailing data, with errors that name the field.
func DecodeJSONStrict(data []byte, v any) error { return decodeJSONStrict(data, v) }

func decodeJSONStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return Invalidf("", "%s", jsonErrorText(err))
	}
	if d.More() {
		return Invalidf("", "unexpected data after the JSON value; send one object")
	}
	return nil
}

func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		f := te.Field
		if f == "" {
			f = "value"
		}
		hint := ""
		if te.Type.String() == "string" && (te.Value == "bool" || te.Value == "number") {
			hint = " (in YAML, quote values such as y, no, on or 0x12 that would otherwise be read as booleans or numbers)"
		}
		return fmt.Sprintf("%s: expected %s, got JSON %s%s", f, te.Type.String(), te.Value, hint)
	}
	var se *json.SyntaxError
	if asType(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		msg += " (check the spelling; see docs/config-schema.md)"
	}
	return msg
}

func asType[T error](err error, target *T) bool {
	for err != nil {
		if e, ok := err.(T); ok {
			*target = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
