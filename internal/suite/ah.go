package suite

import (
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"sync"
)

// MAC computes an HMAC ICV incrementally, for AH, whose ICV input is the IP
// header with mutable fields zeroed, the AH header with the ICV zeroed, the
// payload and the implicit ESN high half. It is pooled: Release it after use.
// Slices passed to Write must not be retained by the caller's stack (they
// are not copied).
type MAC struct {
	s   *Suite
	h   hash.Hash
	sum [64]byte
	u32 [4]byte
}

var macObjPool = sync.Pool{New: func() any { return new(MAC) }}

var zeros [256]byte

// IsGMAC reports an AES-GMAC integrity suite (AH form of RFC 4543).
func (s *Suite) IsGMAC() bool { return s.auth.gmac }

// AcquireMAC returns a reset HMAC computation under this suite's key. It
// fails with ErrClosed after Close. Not for GMAC suites (see GMACSeal).
func (s *Suite) AcquireMAC() (*MAC, error) {
	if s.closed.Load() || s.auth.gmac || s.macPool.New == nil {
		return nil, ErrClosed
	}
	m := macObjPool.Get().(*MAC)
	m.s = s
	m.h = s.macPool.Get().(hash.Hash)
	m.h.Reset()
	return m, nil
}

// Write adds b to the ICV input.
func (m *MAC) Write(b []byte) { m.h.Write(b) }

// WriteZeros adds n zero bytes to the ICV input.
func (m *MAC) WriteZeros(n int) {
	for n > 0 {
		k := min(n, len(zeros))
		m.h.Write(zeros[:k])
		n -= k
	}
}

// WriteUint32 adds v in network byte order (the ESN high half).
func (m *MAC) WriteUint32(v uint32) {
	binary.BigEndian.PutUint32(m.u32[:], v)
	m.h.Write(m.u32[:])
}

// Sum returns the truncated ICV. The slice is valid until Release.
func (m *MAC) Sum() []byte {
	return m.h.Sum(m.sum[:0])[:m.s.icvLen]
}

// Verify reports in constant time whether icv equals the computed ICV.
func (m *MAC) Verify(icv []byte) bool {
	return subtle.ConstantTimeCompare(m.Sum(), icv) == 1
}

// Release returns the computation to its pools.
func (m *MAC) Release() {
	s := m.s
	s.macPool.Put(m.h)
	m.h, m.s = nil, nil
	clear(m.sum[:])
	macObjPool.Put(m)
}

// GMACSeal computes the AES-GMAC tag (16 bytes) over aad with nonce
// salt || iv (RFC 4543) and writes it to tag[:16]; tag must have capacity 16.
// sc is the packet's scratch area.
func (s *Suite) GMACSeal(tag, iv, aad []byte, sc *Scratch) error {
	if !s.auth.gmac || !s.usable() {
		return ErrClosed
	}
	s.aead.Seal(tag[:0], s.nonce(sc, iv), nil, aad)
	return nil
}

// GMACVerify checks a 16-byte AES-GMAC tag over aad with nonce salt || iv in
// constant time. sc is the packet's scratch area.
func (s *Suite) GMACVerify(tag, iv, aad []byte, sc *Scratch) bool {
	if !s.auth.gmac || len(tag) != 16 || !s.usable() {
		return false
	}
	_, err := s.aead.Open(tag[:0:0], s.nonce(sc, iv), tag, aad)
	return err == nil
}
