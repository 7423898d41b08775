package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// Params selects the transforms and keys of one security association.
type Params struct {
	// Enc is the ESP encryption transform. Leave it empty for an AH suite.
	Enc Enc
	// Auth is the integrity transform; AuthNone with a combined-mode Enc.
	Auth Auth
	// ICVLen selects the AES-GCM ICV length (8, 12 or 16 bytes; 0 means 16).
	// For other transforms it must be 0 or the transform's ICV length.
	ICVLen int
	// EncKey is the encryption KEYMAT, salt or nonce last (RFC 4106, 3686, 4543, 7634).
	EncKey []byte
	// AuthKey is the integrity key (for AH GMAC: the AES key plus a 4-byte salt).
	AuthKey []byte
	// AllowLegacy permits DES-CBC, 3DES-CBC and HMAC-MD5-96 (RFC 8221 says not to use them).
	AllowLegacy bool
}

// Errors returned by the per-packet methods. They are values, so returning
// them allocates nothing.
var (
	// ErrAuth means the ICV did not verify.
	ErrAuth = errors.New("suite: ICV verification failed")
	// ErrLength means the protected data is too short or not block aligned.
	ErrLength = errors.New("suite: malformed length for this transform")
	// ErrRoom means the buffer lacks the tailroom the transform needs (see TailSlack).
	ErrRoom = errors.New("suite: not enough tailroom in buffer for in-place transform")
	// ErrClosed means the suite's keys have been destroyed.
	ErrClosed = errors.New("suite: security association has been deleted")
)

// Suite is an instantiated transform with its keys.
type Suite struct {
	enc    EncInfo
	auth   AuthInfo
	ah     bool
	icvLen int
	slack  int
	trunc  bool // AES-GCM with an 8-byte ICV: computed as a truncated 16-byte tag

	// aead is GCM, GMAC, ChaCha20-Poly1305, or the CTR keystream helper.
	// An AES-GCM state is about 800 bytes and most SAs of a large table
	// may never carry a packet, so for AES-GCM and GMAC it is built on
	// first use (aeadInit): ready says it is there, gcmKey is the AES key
	// it is built from and gcmTag its tag size.
	aead   cipher.AEAD
	ready  atomic.Bool
	initMu sync.Mutex // orders aeadInit against Close
	gcmKey []byte
	gcmTag int
	block  cipher.Block // CBC and CTR block cipher
	ivGen  cipher.Block // CBC IV generator under a random key
	salt   [saltLen]byte

	macPool sync.Pool // hash.Hash (HMAC under this suite's key)
	cbcPool sync.Pool // *cbcModes

	keys   [][]byte // our copies of key material, zeroed by Close
	closed atomic.Bool
}

type ivSetter interface {
	cipher.BlockMode
	SetIV([]byte)
}

type cbcModes struct {
	enc, dec ivSetter
}

// Scratch is the per-packet scratch area the per-packet methods take
// (packet.Buf.CB is one). Temporaries live there rather than on the stack,
// because a stack array handed to a cipher interface would escape and cost
// an allocation per packet. Its fields belong to the suite; callers only
// provide the storage, one Scratch per packet in flight.
type Scratch struct {
	nonce  [12]byte // salt || IV (RFC 4106 4, RFC 4543 3.1, RFC 7634 2)
	aad    [12]byte // SPI || SeqHi || SeqLo with ESN; SeqHi alone for HMAC
	ctr    [16]byte // counter block (CTR) or sequence-number block (CBC IV)
	block  [16]byte // CTR keystream block 1, CBC IV
	digest [64]byte // HMAC digest, up to SHA-512
	icv    [8]byte  // the received 8-byte GCM ICV while the tag is recomputed
}

// New builds a suite. It refuses unknown algorithms, wrong key lengths,
// encryption without integrity, and legacy algorithms unless allowed.
func New(p Params) (*Suite, error) {
	s := &Suite{}
	if p.Enc == EncNull && isGMACAuth(p.Auth) {
		// NDIS expresses ESP-GMAC as ENCR_NONE + AUTH_AES_GCM_*; RFC 4543
		// and IKEv2 as the ENCR_NULL_AUTH_AES_GMAC transform. Same thing.
		p.Enc, p.Auth = Enc(p.Auth), AuthNone
		p.EncKey, p.AuthKey = p.AuthKey, nil
	}
	if p.Auth == "" {
		p.Auth = AuthNone
	}
	a, err := LookupAuth(p.Auth)
	if err != nil {
		return nil, err
	}
	s.auth = a
	if a.Legacy && !p.AllowLegacy {
		return nil, fmt.Errorf("suite: %s is a legacy algorithm (RFC 8221 says MUST NOT); set allow_legacy to use it anyway", a.Name)
	}
	if p.Enc == "" {
		return s, s.initAH(p)
	}
	e, err := LookupEnc(p.Enc)
	if err != nil {
		return nil, err
	}
	s.enc = e
	if e.Legacy && !p.AllowLegacy {
		return nil, fmt.Errorf("suite: %s is a legacy algorithm (RFC 8221); set allow_legacy to use it anyway", e.Name)
	}
	if a.gmac {
		return nil, fmt.Errorf("suite: %s as ESP integrity goes with encryption null (or use encryption %s)", a.Name, a.Name)
	}
	if e.Combined && a.Name != AuthNone {
		return nil, fmt.Errorf("suite: %s provides its own integrity; set the integrity algorithm to none", e.Name)
	}
	if !e.Combined && a.Name == AuthNone {
		return nil, fmt.Errorf("suite: encryption %s without integrity is refused (RFC 4303 and NDIS require an ICV); choose an integrity algorithm such as %s", e.Name, AuthSHA256)
	}
	if len(p.EncKey) != e.KeyLen {
		return nil, keyLenError("encryption", string(e.Name), len(p.EncKey), e.KeyLen, e.kind == kindGCM || e.kind == kindGMAC || e.kind == kindCTR || e.kind == kindChaCha)
	}
	if !e.Combined && len(p.AuthKey) != a.KeyLen {
		return nil, keyLenError("integrity", string(a.Name), len(p.AuthKey), a.KeyLen, false)
	}
	if e.Combined && len(p.AuthKey) != 0 {
		return nil, fmt.Errorf("suite: %s takes no separate integrity key; put all KEYMAT in the encryption key", e.Name)
	}
	s.icvLen = a.ICVLen
	switch e.kind {
	case kindGCM:
		s.icvLen = 16
		if p.ICVLen != 0 {
			if p.ICVLen != 8 && p.ICVLen != 12 && p.ICVLen != 16 {
				return nil, fmt.Errorf("suite: %s ICV length must be 8, 12 or 16 bytes (RFC 4106), not %d", e.Name, p.ICVLen)
			}
			s.icvLen = p.ICVLen
		}
	case kindGMAC, kindChaCha:
		s.icvLen = 16
	}
	if p.ICVLen != 0 && p.ICVLen != s.icvLen {
		return nil, fmt.Errorf("suite: %s/%s has a %d-byte ICV; icv_len %d is not possible", e.Name, a.Name, s.icvLen, p.ICVLen)
	}
	if err := s.initEnc(p.EncKey); err != nil {
		return nil, err
	}
	if !e.Combined {
		if err := s.initHMAC(p.AuthKey); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func isGMACAuth(a Auth) bool { return a == AuthGMAC128 || a == AuthGMAC192 || a == AuthGMAC256 }

func keyLenError(what, name string, got, want int, salted bool) error {
	extra := ""
	if salted {
		extra = fmt.Sprintf(" (%d-byte key followed by the 4-byte salt/nonce)", want-saltLen)
	}
	return fmt.Errorf("suite: %s key for %s is %d bytes; it must be %d bytes%s", what, name, got, want, extra)
}

func (s *Suite) keep(k []byte) []byte {
	c := append([]byte(nil), k...)
	s.keys = append(s.keys, c)
	return c
}

func (s *Suite) initAH(p Params) error {
	s.ah = true
	a := s.auth
	if a.Name == AuthNone {
		return errors.New("suite: an AH security association needs an integrity algorithm")
	}
	if len(p.EncKey) != 0 {
		return errors.New("suite: AH takes no encryption key")
	}
	if len(p.AuthKey) != a.KeyLen {
		return keyLenError("integrity", string(a.Name), len(p.AuthKey), a.KeyLen, a.gmac)
	}
	if p.ICVLen != 0 && p.ICVLen != a.ICVLen {
		return fmt.Errorf("suite: %s has a %d-byte ICV; icv_len %d is not possible", a.Name, a.ICVLen, p.ICVLen)
	}
	s.icvLen = a.ICVLen
	if a.gmac {
		k := s.keep(p.AuthKey)
		copy(s.salt[:], k[len(k)-saltLen:])
		return s.lazyGCM(k[:len(k)-saltLen], 16)
	}
	s.ready.Store(true)
	return s.initHMAC(p.AuthKey)
}

func (s *Suite) initEnc(key []byte) error {
	e := s.enc
	k := s.keep(key)
	var err error
	if e.kind != kindGCM && e.kind != kindGMAC {
		s.ready.Store(true)
	}
	switch e.kind {
	case kindNull:
		return nil
	case kindCBC:
		switch e.Name {
		case EncDESCBC:
			s.block, err = des.NewCipher(k)
		case Enc3DESCBC:
			s.block, err = des.NewTripleDESCipher(k)
		default:
			s.block, err = aes.NewCipher(k)
		}
		if err != nil {
			return err
		}
		var ivKey [16]byte
		if _, err := rand.Read(ivKey[:]); err != nil {
			return fmt.Errorf("suite: cannot read random IV key: %w", err)
		}
		s.ivGen, err = aes.NewCipher(ivKey[:])
		clear(ivKey[:])
		if err != nil {
			return err
		}
		blk := s.block
		s.cbcPool.New = func() any {
			zero := make([]byte, blk.BlockSize())
			return &cbcModes{
				enc: cipher.NewCBCEncrypter(blk, zero).(ivSetter),
				dec: cipher.NewCBCDecrypter(blk, zero).(ivSetter),
			}
		}
		return nil
	case kindChaCha:
		copy(s.salt[:], k[32:])
		s.aead, err = chacha20poly1305.New(k[:32])
		return err
	}
	// AES-based counter modes: GCM, GMAC, CTR.
	copy(s.salt[:], k[e.aesLen:])
	if e.kind == kindCTR {
		blk, err := aes.NewCipher(k[:e.aesLen])
		if err != nil {
			return err
		}
		s.block = blk
		if s.aead, err = cipher.NewGCM(blk); err != nil {
			return err
		}
	} else {
		tag := 16
		if e.kind == kindGCM && s.icvLen == 12 {
			tag = 12
		}
		if err := s.lazyGCM(k[:e.aesLen], tag); err != nil {
			return err
		}
	}
	switch {
	case e.kind == kindGCM && s.icvLen == 8:
		// Go's GCM has no 8-byte tag; the RFC 4106 ICV is the leftmost 8
		// bytes of the 16-byte tag, which spills 8 bytes past the ICV.
		s.trunc, s.slack = true, 8
	case e.kind == kindCTR:
		// The CTR keystream from block 2 on comes from GCM (see ctrXOR),
		// which writes a discarded 16-byte tag where the ICV goes.
		s.slack = max(0, 16-s.icvLen)
	}
	return err
}

// lazyGCM prepares an AES-GCM AEAD with tag size tag under key (a kept
// copy) to be built on first use. It checks the key now, so that a bad
// key is refused when the SA is added, not when its first packet comes.
func (s *Suite) lazyGCM(key []byte, tag int) error {
	switch len(key) {
	case 16, 24, 32:
	default:
		return fmt.Errorf("suite: AES key of %d bytes; it must be 16, 24 or 32", len(key))
	}
	s.gcmKey, s.gcmTag = key, tag
	return nil
}

// aeadInit builds the lazily created AEAD (see Suite.aead) unless another
// packet did so first. It reports false if the suite was closed before:
// its key is gone. It allocates once per SA, on its first packet.
func (s *Suite) aeadInit() bool {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.ready.Load() {
		return true
	}
	if s.closed.Load() {
		return false
	}
	blk, err := aes.NewCipher(s.gcmKey)
	if err != nil {
		return false // the length was checked by lazyGCM
	}
	var a cipher.AEAD
	if s.gcmTag == 16 {
		a, err = cipher.NewGCM(blk)
	} else {
		a, err = cipher.NewGCMWithTagSize(blk, s.gcmTag)
	}
	if err != nil {
		return false
	}
	s.aead = a
	s.ready.Store(true)
	return true
}

// usable reports whether the suite can process a packet: it is not closed
// and its AEAD, if it has one, is built.
func (s *Suite) usable() bool {
	return !s.closed.Load() && (s.ready.Load() || s.aeadInit())
}

func (s *Suite) initHMAC(key []byte) error {
	var fn func() hash.Hash
	switch s.auth.hash {
	case 0:
		fn = md5.New
	case 1:
		fn = sha1.New
	case 256:
		fn = sha256.New
	case 384:
		fn = sha512.New384
	case 512:
		fn = sha512.New
	}
	// Pool entries are clones of a template, so the key copy is read only
	// here and Close can wipe it without racing a pool refill.
	tmpl := hmac.New(fn, s.keep(key))
	if _, err := tmpl.(hash.Cloner).Clone(); err != nil {
		return fmt.Errorf("suite: %s cannot be cloned: %w", s.auth.Name, err)
	}
	s.macPool.New = func() any {
		c, _ := tmpl.(hash.Cloner).Clone()
		return c
	}
	return nil
}

// Enc returns the encryption transform (empty for AH).
func (s *Suite) Enc() Enc { return s.enc.Name }

// Auth returns the integrity transform.
func (s *Suite) Auth() Auth { return s.auth.Name }

// IsAH reports a suite built for AH.
func (s *Suite) IsAH() bool { return s.ah }

// IVLen returns the explicit IV length carried in each ESP packet (or, for
// AH-GMAC, inside the AH authentication data).
func (s *Suite) IVLen() int {
	if s.ah {
		if s.auth.gmac {
			return counterIVLen
		}
		return 0
	}
	return s.enc.IVLen
}

// ICVLen returns the ICV length in bytes.
func (s *Suite) ICVLen() int { return s.icvLen }

// BlockSize returns the cipher block size the ESP plaintext must be a multiple of.
func (s *Suite) BlockSize() int { return s.enc.Block }

// Align returns the ESP plaintext alignment: the block size, at least 4 (RFC 4303 2.4).
func (s *Suite) Align() int { return max(4, s.enc.Block) }

// TailSlack returns how many bytes past the ICV the in-place transforms may
// overwrite; callers keep that much tailroom.
func (s *Suite) TailSlack() int { return s.slack }

// Close destroys the suite's copies of the key material. Packets submitted
// after Close fail with ErrClosed; a packet already in flight completes.
// The expanded key schedules inside the standard library cannot be wiped;
// they become unreachable with the suite.
func (s *Suite) Close() {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.closed.Swap(true) {
		return
	}
	for _, k := range s.keys {
		clear(k)
	}
}

// Closed reports whether Close was called.
func (s *Suite) Closed() bool { return s.closed.Load() }
