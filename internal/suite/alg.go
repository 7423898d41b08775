// Package suite implements the cryptographic transforms shared by ESP and AH:
// AEAD (AES-GCM, ChaCha20-Poly1305), integrity-only AES-GMAC, block and
// stream ciphers (AES-CBC, AES-CTR, 3DES-CBC, DES-CBC, NULL) paired with HMAC
// integrity, with the key layouts, IV rules and ICV lengths of the RFCs.
//
// A Suite is built once per security association from its keys and is safe
// for concurrent use. Its per-packet methods work in place on caller buffers
// and allocate nothing.
package suite

import "fmt"

// Enc names an ESP encryption (or combined-mode) transform, as used in the
// config file, the API and benchmark names.
type Enc string

// Encryption transforms.
const (
	EncNull      Enc = "null"              // RFC 2410
	EncDESCBC    Enc = "des-cbc"           // RFC 2405, legacy (RFC 8221 MUST NOT)
	Enc3DESCBC   Enc = "3des-cbc"          // RFC 2451, legacy (RFC 8221 SHOULD NOT)
	EncAESCBC128 Enc = "aes-cbc-128"       // RFC 3602
	EncAESCBC192 Enc = "aes-cbc-192"       // RFC 3602
	EncAESCBC256 Enc = "aes-cbc-256"       // RFC 3602
	EncAESCTR128 Enc = "aes-ctr-128"       // RFC 3686
	EncAESCTR192 Enc = "aes-ctr-192"       // RFC 3686
	EncAESCTR256 Enc = "aes-ctr-256"       // RFC 3686
	EncAESGCM128 Enc = "aes-gcm-128"       // RFC 4106
	EncAESGCM192 Enc = "aes-gcm-192"       // RFC 4106
	EncAESGCM256 Enc = "aes-gcm-256"       // RFC 4106
	EncGMAC128   Enc = "aes-gmac-128"      // RFC 4543 ENCR_NULL_AUTH_AES_GMAC
	EncGMAC192   Enc = "aes-gmac-192"      // RFC 4543
	EncGMAC256   Enc = "aes-gmac-256"      // RFC 4543
	EncChaCha    Enc = "chacha20-poly1305" // RFC 7634
)

// Auth names an integrity transform.
type Auth string

// Integrity transforms.
const (
	AuthNone     Auth = "none"
	AuthMD5      Auth = "hmac-md5-96"     // RFC 2403, legacy (RFC 8221 MUST NOT)
	AuthSHA1     Auth = "hmac-sha1-96"    // RFC 2404
	AuthSHA256   Auth = "hmac-sha256-128" // RFC 4868
	AuthSHA384   Auth = "hmac-sha384-192" // RFC 4868
	AuthSHA512   Auth = "hmac-sha512-256" // RFC 4868
	AuthGMAC128  Auth = "aes-gmac-128"    // RFC 4543 (AH form)
	AuthGMAC192  Auth = "aes-gmac-192"    // RFC 4543 (AH form)
	AuthGMAC256  Auth = "aes-gmac-256"    // RFC 4543 (AH form)
	saltLen           = 4
	counterIVLen      = 8
)

type encKind uint8

const (
	kindNull encKind = iota
	kindCBC
	kindCTR
	kindGCM
	kindGMAC
	kindChaCha
)

// EncInfo describes an encryption transform.
type EncInfo struct {
	Name Enc
	// KeyLen is the KEYMAT length in bytes, salt or nonce included.
	KeyLen int
	// IVLen is the explicit IV carried in each packet.
	IVLen int
	// Block is the cipher block size that the plaintext must be a multiple of (1 for stream modes).
	Block int
	// Combined reports an AEAD or GMAC transform that provides its own ICV.
	Combined bool
	// Legacy transforms are refused unless explicitly allowed (RFC 8221).
	Legacy bool
	kind   encKind
	aesLen int
}

// AuthInfo describes an integrity transform.
type AuthInfo struct {
	Name Auth
	// KeyLen is the key length in bytes (for GMAC: AES key plus 4-byte salt).
	KeyLen int
	// ICVLen is the length of the truncated ICV.
	ICVLen int
	// Legacy transforms are refused unless explicitly allowed (RFC 8221).
	Legacy bool
	gmac   bool
	hash   int // 0 md5, 1 sha1, 256, 384, 512
}

var encs = []EncInfo{
	{Name: EncNull, Block: 1, kind: kindNull},
	{Name: EncDESCBC, KeyLen: 8, IVLen: 8, Block: 8, Legacy: true, kind: kindCBC},
	{Name: Enc3DESCBC, KeyLen: 24, IVLen: 8, Block: 8, Legacy: true, kind: kindCBC},
	{Name: EncAESCBC128, KeyLen: 16, IVLen: 16, Block: 16, kind: kindCBC, aesLen: 16},
	{Name: EncAESCBC192, KeyLen: 24, IVLen: 16, Block: 16, kind: kindCBC, aesLen: 24},
	{Name: EncAESCBC256, KeyLen: 32, IVLen: 16, Block: 16, kind: kindCBC, aesLen: 32},
	{Name: EncAESCTR128, KeyLen: 20, IVLen: 8, Block: 1, kind: kindCTR, aesLen: 16},
	{Name: EncAESCTR192, KeyLen: 28, IVLen: 8, Block: 1, kind: kindCTR, aesLen: 24},
	{Name: EncAESCTR256, KeyLen: 36, IVLen: 8, Block: 1, kind: kindCTR, aesLen: 32},
	{Name: EncAESGCM128, KeyLen: 20, IVLen: 8, Block: 1, Combined: true, kind: kindGCM, aesLen: 16},
	{Name: EncAESGCM192, KeyLen: 28, IVLen: 8, Block: 1, Combined: true, kind: kindGCM, aesLen: 24},
	{Name: EncAESGCM256, KeyLen: 36, IVLen: 8, Block: 1, Combined: true, kind: kindGCM, aesLen: 32},
	{Name: EncGMAC128, KeyLen: 20, IVLen: 8, Block: 1, Combined: true, kind: kindGMAC, aesLen: 16},
	{Name: EncGMAC192, KeyLen: 28, IVLen: 8, Block: 1, Combined: true, kind: kindGMAC, aesLen: 24},
	{Name: EncGMAC256, KeyLen: 36, IVLen: 8, Block: 1, Combined: true, kind: kindGMAC, aesLen: 32},
	{Name: EncChaCha, KeyLen: 36, IVLen: 8, Block: 1, Combined: true, kind: kindChaCha},
}

var auths = []AuthInfo{
	{Name: AuthNone},
	{Name: AuthMD5, KeyLen: 16, ICVLen: 12, Legacy: true, hash: 0},
	{Name: AuthSHA1, KeyLen: 20, ICVLen: 12, hash: 1},
	{Name: AuthSHA256, KeyLen: 32, ICVLen: 16, hash: 256},
	{Name: AuthSHA384, KeyLen: 48, ICVLen: 24, hash: 384},
	{Name: AuthSHA512, KeyLen: 64, ICVLen: 32, hash: 512},
	{Name: AuthGMAC128, KeyLen: 20, ICVLen: 16, gmac: true},
	{Name: AuthGMAC192, KeyLen: 28, ICVLen: 16, gmac: true},
	{Name: AuthGMAC256, KeyLen: 36, ICVLen: 16, gmac: true},
}

// Encs returns every encryption transform secnic implements.
func Encs() []EncInfo { return append([]EncInfo(nil), encs...) }

// Auths returns every integrity transform secnic implements.
func Auths() []AuthInfo { return append([]AuthInfo(nil), auths...) }

// LookupEnc returns the description of an encryption transform.
func LookupEnc(name Enc) (EncInfo, error) {
	for _, e := range encs {
		if e.Name == name {
			return e, nil
		}
	}
	return EncInfo{}, fmt.Errorf("suite: unknown encryption algorithm %q (known: %s)", name, encNames())
}

// LookupAuth returns the description of an integrity transform.
func LookupAuth(name Auth) (AuthInfo, error) {
	for _, a := range auths {
		if a.Name == name {
			return a, nil
		}
	}
	return AuthInfo{}, fmt.Errorf("suite: unknown integrity algorithm %q (known: %s)", name, authNames())
}

func encNames() string {
	s := ""
	for i, e := range encs {
		if i > 0 {
			s += ", "
		}
		s += string(e.Name)
	}
	return s
}

func authNames() string {
	s := ""
	for i, a := range auths {
		if i > 0 {
			s += ", "
		}
		s += string(a.Name)
	}
	return s
}
