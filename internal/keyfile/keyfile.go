// Package keyfile decides whether a file that holds keys is private
// enough to read them from, as ssh does for private keys: a file that
// group or others may read or write is refused, with the chmod to run.
package keyfile

import (
	"fmt"
	"os"

	"github.com/secnic/secnic/saspec"
)

// InsecureError is a key file that group or others may read or write.
type InsecureError struct {
	// Path is the file.
	Path string
	// Mode is its permission bits.
	Mode os.FileMode
	// Override names the option that accepts such a file anyway.
	Override string
}

// Error says what is wrong and what to run.
func (e *InsecureError) Error() string {
	return fmt.Sprintf("%s holds keys and is mode %04o, so other users may read (or change) them: run `chmod 600 %s`; or, in a lab where that does not matter, %s",
		e.Path, e.Mode.Perm(), e.Path, e.Override)
}

// Check returns an *InsecureError if the file at path (followed through
// symbolic links) may be read or written by group or others; override is
// how the message tells the user to accept it anyway (e.g. "pass
// --allow-insecure-key-file"). Other errors are the file's stat errors.
func Check(path, override string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o066 != 0 {
		return &InsecureError{Path: path, Mode: fi.Mode(), Override: override}
	}
	return nil
}

// HasKeys reports whether any SA of the bundles carries key material.
func HasKeys(specs []saspec.BundleSpec) bool {
	for _, b := range specs {
		for _, s := range []*saspec.SASpec{b.ESP, b.AH} {
			if s != nil && (s.EncKey.Len() > 0 || s.AuthKey.Len() > 0) {
				return true
			}
		}
	}
	return false
}

// ZeroKeys returns a warning for each key of the bundles that is all
// zero bytes: accepted (test vectors use them), but never a real key.
func ZeroKeys(specs []saspec.BundleSpec) []string {
	var out []string
	for i, b := range specs {
		name := b.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		for _, s := range []struct {
			proto string
			spec  *saspec.SASpec
		}{{"esp", b.ESP}, {"ah", b.AH}} {
			if s.spec == nil {
				continue
			}
			for _, k := range []struct {
				field string
				key   saspec.Key
			}{{"enc_key", s.spec.EncKey}, {"auth_key", s.spec.AuthKey}} {
				if allZero(k.key.Bytes()) {
					out = append(out, fmt.Sprintf("bundle %s: %s.%s is all zero bytes; that is a test key, not a secret: generate one with `head -c %d /dev/urandom | xxd -p -c 256`",
						name, s.proto, k.field, k.key.Len()))
				}
			}
		}
	}
	return out
}

func allZero(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
