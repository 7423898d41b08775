package capabilities

// Canonical encryption algorithm names (ESP). The crypto suites use the same
// strings.
const (
	EncNull             = "null"
	EncDESCBC           = "des-cbc"
	Enc3DESCBC          = "3des-cbc"
	EncAESCBC128        = "aes-cbc-128"
	EncAESCBC192        = "aes-cbc-192"
	EncAESCBC256        = "aes-cbc-256"
	EncAESCTR128        = "aes-ctr-128"
	EncAESCTR192        = "aes-ctr-192"
	EncAESCTR256        = "aes-ctr-256"
	EncAESGCM128        = "aes-gcm-128"
	EncAESGCM192        = "aes-gcm-192"
	EncAESGCM256        = "aes-gcm-256"
	EncAESGMAC128       = "aes-gmac-128" // ESP integrity-only GMAC, RFC 4543
	EncAESGMAC192       = "aes-gmac-192"
	EncAESGMAC256       = "aes-gmac-256"
	EncChaCha20Poly1305 = "chacha20-poly1305"
)

// Canonical integrity algorithm names (ESP integrity and AH).
const (
	IntegNone          = "none"
	IntegHMACMD596     = "hmac-md5-96"
	IntegHMACSHA196    = "hmac-sha1-96"
	IntegHMACSHA256128 = "hmac-sha256-128"
	IntegHMACSHA384192 = "hmac-sha384-192"
	IntegHMACSHA512256 = "hmac-sha512-256"
	IntegAESGMAC128    = "aes-gmac-128" // AH GMAC, RFC 4543
	IntegAESGMAC192    = "aes-gmac-192"
	IntegAESGMAC256    = "aes-gmac-256"
)

// encKind says how an ESP encryption transform gets its integrity.
type encKind uint8

const (
	encNull   encKind = iota // NULL encryption: needs an integrity algorithm
	encCipher                // plain cipher: needs an integrity algorithm
	encAEAD                  // combined mode: integrity must be "none"
	encGMAC                  // ESP GMAC: integrity only, integrity must be "none"
)

// encAlg is one canonical encryption algorithm and its capability bits.
// Exactly one of ndis, gmacAuth (ESP GMAC) and ext is non-zero.
type encAlg struct {
	name     string
	kind     encKind
	ndis     EncryptionAlgorithms
	gmacAuth AuthenticationAlgorithms // ESP GMAC: AUTH_AES_GCM_* + ENCR_NONE
	ext      ExtEncryption
	gcm      bool // ICV length is chosen from Extensions.GCMICVLengths
	legacy   bool // DES, 3DES: needs Limits.LegacyAlgorithms
}

// integAlg is one canonical integrity algorithm and its capability bits.
type integAlg struct {
	name   string
	ndis   AuthenticationAlgorithms
	ext    ExtIntegrity
	icv    int  // ICV length in bytes
	gmac   bool // AES-GMAC: AH only (ESP uses the encryption form)
	legacy bool // MD5
}

var encAlgs = []encAlg{
	{name: EncNull, kind: encNull, ndis: EncrNone},
	{name: EncDESCBC, kind: encCipher, ndis: EncrDESCBC, legacy: true},
	{name: Enc3DESCBC, kind: encCipher, ndis: Encr3DESCBC, legacy: true},
	{name: EncAESCBC128, kind: encCipher, ndis: EncrAESCBC128},
	{name: EncAESCBC192, kind: encCipher, ndis: EncrAESCBC192},
	{name: EncAESCBC256, kind: encCipher, ndis: EncrAESCBC256},
	{name: EncAESCTR128, kind: encCipher, ext: ExtAESCTR128},
	{name: EncAESCTR192, kind: encCipher, ext: ExtAESCTR192},
	{name: EncAESCTR256, kind: encCipher, ext: ExtAESCTR256},
	{name: EncAESGCM128, kind: encAEAD, ndis: EncrAESGCM128, gcm: true},
	{name: EncAESGCM192, kind: encAEAD, ndis: EncrAESGCM192, gcm: true},
	{name: EncAESGCM256, kind: encAEAD, ndis: EncrAESGCM256, gcm: true},
	{name: EncAESGMAC128, kind: encGMAC, gmacAuth: AuthAESGCM128},
	{name: EncAESGMAC192, kind: encGMAC, gmacAuth: AuthAESGCM192},
	{name: EncAESGMAC256, kind: encGMAC, gmacAuth: AuthAESGCM256},
	{name: EncChaCha20Poly1305, kind: encAEAD, ext: ExtChaCha20Poly1305},
}

var integAlgs = []integAlg{
	{name: IntegNone},
	{name: IntegHMACMD596, ndis: AuthMD5, icv: 12, legacy: true},
	{name: IntegHMACSHA196, ndis: AuthSHA1, icv: 12},
	{name: IntegHMACSHA256128, ndis: AuthSHA256, icv: 16},
	{name: IntegHMACSHA384192, ext: ExtHMACSHA384192, icv: 24},
	{name: IntegHMACSHA512256, ext: ExtHMACSHA512256, icv: 32},
	{name: IntegAESGMAC128, ndis: AuthAESGCM128, icv: 16, gmac: true},
	{name: IntegAESGMAC192, ndis: AuthAESGCM192, icv: 16, gmac: true},
	{name: IntegAESGMAC256, ndis: AuthAESGCM256, icv: 16, gmac: true},
}

// legacyEncr and legacyAuth are the NDIS bits of the legacy algorithms.
const (
	legacyEncr = EncrDESCBC | Encr3DESCBC
	legacyAuth = AuthMD5
)

// EncryptionNames returns every canonical encryption name, in a fixed order.
func EncryptionNames() []string {
	out := make([]string, len(encAlgs))
	for i, a := range encAlgs {
		out[i] = a.name
	}
	return out
}

// IntegrityNames returns every canonical integrity name, in a fixed order,
// starting with "none".
func IntegrityNames() []string {
	out := make([]string, len(integAlgs))
	for i, a := range integAlgs {
		out[i] = a.name
	}
	return out
}

// IsLegacy reports whether the canonical algorithm name (encryption or
// integrity) is a legacy algorithm (DES, 3DES, MD5) that needs
// Limits.LegacyAlgorithms.
func IsLegacy(name string) bool {
	if a, ok := lookupEnc(name); ok && a.legacy {
		return true
	}
	if a, ok := lookupInteg(name); ok && a.legacy {
		return true
	}
	return false
}

func lookupEnc(name string) (encAlg, bool) {
	for _, a := range encAlgs {
		if a.name == name {
			return a, true
		}
	}
	return encAlg{}, false
}

func lookupInteg(name string) (integAlg, bool) {
	for _, a := range integAlgs {
		if a.name == name {
			return a, true
		}
	}
	return integAlg{}, false
}

// hasEnc reports whether the record's masks contain the algorithm (the
// legacy switch is not looked at here).
func (r *Record) hasEnc(a encAlg) bool {
	switch {
	case a.ndis != 0:
		return r.EncryptionAlgorithms.Has(a.ndis)
	case a.gmacAuth != 0:
		return r.AuthenticationAlgorithms.Has(a.gmacAuth) && r.EncryptionAlgorithms.Has(EncrNone)
	default:
		return r.Extensions.Encryption.Has(a.ext)
	}
}

// hasInteg reports whether the record's masks contain the algorithm.
func (r *Record) hasInteg(a integAlg) bool {
	switch {
	case a.ndis != 0:
		return r.AuthenticationAlgorithms.Has(a.ndis)
	case a.ext != 0:
		return r.Extensions.Integrity.Has(a.ext)
	default:
		return true // "none"
	}
}

// Algorithms lists canonical algorithm names.
type Algorithms struct {
	// Encryption holds the ESP encryption transforms (including ESP GMAC).
	Encryption []string `json:"encryption"`
	// Integrity holds the integrity algorithms; the "aes-gmac-*" entries are
	// usable by AH only ("none" is not listed).
	Integrity []string `json:"integrity"`
}

// EnabledAlgorithms returns the canonical names of the algorithms the record
// allows, NDIS and extension bits together.
func (r Record) EnabledAlgorithms() Algorithms {
	out := Algorithms{Encryption: []string{}, Integrity: []string{}}
	for _, a := range encAlgs {
		if r.hasEnc(a) && (!a.legacy || r.Limits.LegacyAlgorithms) {
			out.Encryption = append(out.Encryption, a.name)
		}
	}
	for _, a := range integAlgs {
		if a.name != IntegNone && r.hasInteg(a) && (!a.legacy || r.Limits.LegacyAlgorithms) {
			out.Integrity = append(out.Integrity, a.name)
		}
	}
	return out
}
