package xfrm

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// algo maps one Linux algorithm name onto secnic's canonical names.
type algo struct {
	linux  string   // the kernel's canonical name, as `ip xfrm` prints it
	compat []string // other names the kernel accepts
	// byKeyLen maps a key length in bytes to the secnic name.
	byKeyLen map[int]string
	legacy   bool
}

// AEAD algorithms (ip xfrm "aead NAME KEY ICV-BITS").
var aeadAlgos = []algo{
	{linux: "rfc4106(gcm(aes))", byKeyLen: map[int]string{20: "aes-gcm-128", 28: "aes-gcm-192", 36: "aes-gcm-256"}},
	{linux: "rfc4543(gcm(aes))", byKeyLen: map[int]string{20: "aes-gmac-128", 28: "aes-gmac-192", 36: "aes-gmac-256"}},
	{linux: "rfc7539esp(chacha20,poly1305)", byKeyLen: map[int]string{36: "chacha20-poly1305"}},
}

// Encryption algorithms (ip xfrm "enc NAME KEY").
var encAlgos = []algo{
	{linux: "cbc(aes)", compat: []string{"aes"}, byKeyLen: map[int]string{16: "aes-cbc-128", 24: "aes-cbc-192", 32: "aes-cbc-256"}},
	{linux: "rfc3686(ctr(aes))", byKeyLen: map[int]string{20: "aes-ctr-128", 28: "aes-ctr-192", 36: "aes-ctr-256"}},
	{linux: "ecb(cipher_null)", compat: []string{"cipher_null"}, byKeyLen: map[int]string{0: "null"}},
	{linux: "cbc(des3_ede)", compat: []string{"des3_ede"}, byKeyLen: map[int]string{24: "3des-cbc"}, legacy: true},
	{linux: "cbc(des)", compat: []string{"des"}, byKeyLen: map[int]string{8: "des-cbc"}, legacy: true},
}

// authAlgo is an HMAC: the secnic name per truncation length in bits, and
// the truncation Linux applies for "auth" without a length.
type authAlgo struct {
	linux       string
	compat      []string
	byTrunc     map[int]string
	defaultBits int
	legacy      bool
}

var authAlgos = []authAlgo{
	{linux: "hmac(sha1)", compat: []string{"sha1"}, byTrunc: map[int]string{96: "hmac-sha1-96"}, defaultBits: 96},
	// Linux truncates hmac(sha256) to 96 bits when no length is given (its
	// pre-RFC 4868 default); only 128 is RFC 4868.
	{linux: "hmac(sha256)", compat: []string{"sha256"}, byTrunc: map[int]string{128: "hmac-sha256-128"}, defaultBits: 96},
	{linux: "hmac(sha384)", compat: []string{"sha384"}, byTrunc: map[int]string{192: "hmac-sha384-192"}, defaultBits: 192},
	{linux: "hmac(sha512)", compat: []string{"sha512"}, byTrunc: map[int]string{256: "hmac-sha512-256"}, defaultBits: 256},
	{linux: "hmac(md5)", compat: []string{"md5"}, byTrunc: map[int]string{96: "hmac-md5-96"}, defaultBits: 96, legacy: true},
}

func (a algo) named(name string) bool {
	if name == a.linux {
		return true
	}
	for _, c := range a.compat {
		if name == c {
			return true
		}
	}
	return false
}

func (a authAlgo) named(name string) bool {
	if name == a.linux {
		return true
	}
	for _, c := range a.compat {
		if name == c {
			return true
		}
	}
	return false
}

func linuxNames(list []algo) string {
	var n []string
	for _, a := range list {
		n = append(n, a.linux)
	}
	return strings.Join(n, ", ")
}

func authNames() string {
	var n []string
	for _, a := range authAlgos {
		n = append(n, a.linux)
	}
	return strings.Join(n, ", ")
}

func keyLens(m map[int]string) string {
	var parts []string
	for _, l := range []int{0, 8, 16, 20, 24, 28, 32, 36} {
		if name, ok := m[l]; ok {
			parts = append(parts, fmt.Sprintf("%d bytes (%s)", l, name))
		}
	}
	return strings.Join(parts, ", ")
}

// lookupAEAD returns the secnic encryption for an aead name and key.
func lookupAEAD(name string, keyLen int) (string, bool, error) {
	for _, a := range aeadAlgos {
		if a.named(name) {
			s, ok := a.byKeyLen[keyLen]
			if !ok {
				return "", false, fmt.Errorf("aead %s: a %d-byte key is not supported: give %s (key then 4-byte salt)", name, keyLen, keyLens(a.byKeyLen))
			}
			return s, a.legacy, nil
		}
	}
	for _, a := range encAlgos {
		if a.named(name) {
			return "", false, fmt.Errorf("aead %q: %s is not an AEAD algorithm; write enc %s KEY with auth-trunc", name, name, a.linux)
		}
	}
	return "", false, fmt.Errorf("aead %q is not supported: secnic supports %s", name, linuxNames(aeadAlgos))
}

// lookupEnc returns the secnic encryption for an enc name and key.
func lookupEnc(name string, keyLen int) (string, bool, error) {
	for _, a := range encAlgos {
		if a.named(name) {
			s, ok := a.byKeyLen[keyLen]
			if !ok {
				return "", false, fmt.Errorf("enc %s: a %d-byte key is not supported: give %s", name, keyLen, keyLens(a.byKeyLen))
			}
			return s, a.legacy, nil
		}
	}
	for _, a := range aeadAlgos {
		if a.named(name) {
			return "", false, fmt.Errorf("enc %q: %s is an AEAD algorithm; write aead %s KEY ICV-BITS", name, name, a.linux)
		}
	}
	return "", false, fmt.Errorf("enc %q is not supported: secnic supports %s", name, linuxNames(encAlgos))
}

// lookupAuth returns the secnic integrity algorithm; bits is 0 for "auth"
// (Linux's default truncation).
func lookupAuth(word, name string, bits int) (string, bool, error) {
	for _, a := range authAlgos {
		if !a.named(name) {
			continue
		}
		b := bits
		if b == 0 {
			b = a.defaultBits
		}
		s, ok := a.byTrunc[b]
		if !ok {
			var want []string
			for t := range a.byTrunc {
				want = append(want, fmt.Sprint(t))
			}
			if bits == 0 {
				return "", false, fmt.Errorf("%s %s: Linux truncates it to %d bits when no length is given, which secnic does not support: write auth-trunc '%s' KEY %s", word, name, b, a.linux, strings.Join(want, "|"))
			}
			return "", false, fmt.Errorf("%s %s: truncation to %d bits is not supported: give %s", word, name, b, strings.Join(want, " or "))
		}
		return s, a.legacy, nil
	}
	return "", false, fmt.Errorf("%s %q is not supported: secnic supports %s", word, name, authNames())
}

// linuxEnc returns how `ip xfrm` prints secnic's encryption enc: the
// attribute ("aead" or "enc") and the Linux name.
func linuxEnc(enc string) (kind, name string) {
	for _, a := range aeadAlgos {
		for _, s := range a.byKeyLen {
			if s == enc {
				return "aead", a.linux
			}
		}
	}
	for _, a := range encAlgos {
		for _, s := range a.byKeyLen {
			if s == enc {
				return "enc", a.linux
			}
		}
	}
	return "enc", enc
}

// linuxAuth returns the Linux name and truncation of secnic's auth.
func linuxAuth(auth string) (string, int) {
	for _, a := range authAlgos {
		for bits, s := range a.byTrunc {
			if s == auth {
				return a.linux, bits
			}
		}
	}
	return auth, 0
}

// parseKeymat reads ALGO-KEYMAT as iproute2 does: "0x" and hex digits
// (an odd count gets a leading zero), or else the bytes of the string.
func parseKeymat(word, s string) ([]byte, error) {
	if len(s) > 2 && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")) {
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%s: the %d-character key is not hexadecimal after 0x: give 0x and hex digits, or a plain string used as bytes", word, len(s))
		}
		return b, nil
	}
	return []byte(s), nil
}
