package suite

import (
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// ESP region layout handed to SealESP and OpenESP, starting at pkt[off]:
//
//	SPI(4) | Seq(4) | IV(IVLen) | plaintext or ciphertext | ICV(ICVLen)
//
// The plaintext is payload, TFC padding, padding, pad length and next header,
// already laid out by the ESP engine. pkt ends with the ICV.
const espHdrLen = 8

// SealESP writes the IV, encrypts the plaintext in place and writes the ICV.
// seq is the full 64-bit sequence number whose low half is already in the
// header; with esn its high half is authenticated too (RFC 4303 2.2.1).
// Counter-mode IVs are the sequence number, so they never repeat under one
// key; CBC IVs are unpredictable (AES of the sequence number under a random
// per-SA key). off must be at least 4 (an IP header precedes ESP), and
// cap(pkt) must leave TailSlack bytes after len(pkt).
func (s *Suite) SealESP(pkt []byte, off int, seq uint64, esn bool, sc *Scratch) error {
	return s.seal(pkt, off, seq, esn, nil, sc)
}

// SealESPWithIV is SealESP with an explicit IV, for reproducing published
// test vectors and for the offline packet tool. The caller is responsible
// for never repeating an IV under one key (for CBC: for its unpredictability).
func (s *Suite) SealESPWithIV(pkt []byte, off int, seq uint64, esn bool, iv []byte, sc *Scratch) error {
	if len(iv) != s.enc.IVLen {
		return ErrLength
	}
	return s.seal(pkt, off, seq, esn, iv, sc)
}

func (s *Suite) seal(pkt []byte, off int, seq uint64, esn bool, explicitIV []byte, sc *Scratch) error {
	if !s.usable() {
		return ErrClosed
	}
	ivEnd := off + espHdrLen + s.enc.IVLen
	icvStart := len(pkt) - s.icvLen
	if off < 4 || icvStart < ivEnd || cap(pkt)-len(pkt) < s.slack {
		return ErrRoom
	}
	if (icvStart-ivEnd)%s.Align() != 0 {
		return ErrLength
	}
	iv := pkt[ivEnd-s.enc.IVLen : ivEnd]
	pt := pkt[ivEnd:icvStart]
	if explicitIV != nil {
		copy(iv, explicitIV)
	}

	switch s.enc.kind {
	case kindGCM, kindChaCha:
		s.counterIV(iv, seq, explicitIV)
		nonce := s.nonce(sc, iv)
		aad := s.aeadAAD(sc, pkt[off:], seq, esn)
		// With an 8-byte ICV the 16-byte tag spills into TailSlack;
		// the ICV is its leftmost 8 bytes (RFC 4106 6).
		s.aead.Seal(pt[:0], nonce, pt, aad)
		return nil
	case kindGMAC:
		s.counterIV(iv, seq, explicitIV)
		nonce := s.nonce(sc, iv)
		s.gmacESP(sc, pkt, off, icvStart, nonce, seq, esn, true)
		return nil
	case kindCTR:
		s.counterIV(iv, seq, explicitIV)
		s.ctrXOR(sc, iv, pt)
	case kindCBC:
		if explicitIV == nil {
			s.cbcIV(sc, iv, seq)
		}
		m := s.cbcPool.Get().(*cbcModes)
		m.enc.SetIV(iv)
		m.enc.CryptBlocks(pt, pt)
		s.cbcPool.Put(m)
	case kindNull:
	}
	sum := s.hmacESP(sc, pkt[off:icvStart], seq, esn)
	copy(pkt[icvStart:], sum)
	return nil
}

// OpenESP verifies the ICV in constant time and, only if it verifies,
// decrypts the ciphertext in place. The arguments are as for SealESP, with
// seq the reconstructed 64-bit sequence number. On error the buffer contents
// between the IV and the ICV are unspecified and the packet must be dropped.
func (s *Suite) OpenESP(pkt []byte, off int, seq uint64, esn bool, sc *Scratch) error {
	if !s.usable() {
		return ErrClosed
	}
	ivEnd := off + espHdrLen + s.enc.IVLen
	icvStart := len(pkt) - s.icvLen
	if off < 4 || icvStart < ivEnd || (icvStart-ivEnd)%s.enc.Block != 0 {
		return ErrLength
	}
	if cap(pkt)-len(pkt) < s.slack {
		return ErrRoom
	}
	iv := pkt[ivEnd-s.enc.IVLen : ivEnd]
	ct := pkt[ivEnd:icvStart]

	switch s.enc.kind {
	case kindGCM, kindChaCha:
		nonce := s.nonce(sc, iv)
		aad := s.aeadAAD(sc, pkt[off:], seq, esn)
		if s.trunc {
			return s.openTruncGCM(sc, pkt[ivEnd:], nonce, aad)
		}
		if _, err := s.aead.Open(ct[:0], nonce, pkt[ivEnd:], aad); err != nil {
			return ErrAuth
		}
		return nil
	case kindGMAC:
		nonce := s.nonce(sc, iv)
		if !s.gmacESP(sc, pkt, off, icvStart, nonce, seq, esn, false) {
			return ErrAuth
		}
		return nil
	}
	sum := s.hmacESP(sc, pkt[off:icvStart], seq, esn)
	if subtle.ConstantTimeCompare(sum, pkt[icvStart:]) != 1 {
		return ErrAuth
	}
	switch s.enc.kind {
	case kindCTR:
		s.ctrXOR(sc, iv, ct)
	case kindCBC:
		m := s.cbcPool.Get().(*cbcModes)
		m.dec.SetIV(iv)
		m.dec.CryptBlocks(ct, ct)
		s.cbcPool.Put(m)
	}
	return nil
}

// counterIV writes the sequence number as the IV of a counter-mode
// transform (RFC 4106 3.1) unless an explicit IV was given.
func (s *Suite) counterIV(iv []byte, seq uint64, explicit []byte) {
	if explicit == nil {
		binary.BigEndian.PutUint64(iv, seq)
	}
}

// nonce builds salt || IV (RFC 4106 4, RFC 4543 3.1, RFC 7634 2).
func (s *Suite) nonce(sc *Scratch, iv []byte) []byte {
	copy(sc.nonce[:4], s.salt[:])
	copy(sc.nonce[4:], iv)
	return sc.nonce[:]
}

// aeadAAD returns SPI || Seq (8 bytes) or, with ESN, SPI || SeqHi || SeqLo
// (12 bytes) (RFC 4106 5, RFC 7634 2.1).
func (s *Suite) aeadAAD(sc *Scratch, esp []byte, seq uint64, esn bool) []byte {
	if !esn {
		return esp[:espHdrLen]
	}
	copy(sc.aad[:4], esp[:4])
	binary.BigEndian.PutUint64(sc.aad[4:], seq)
	return sc.aad[:]
}

// openTruncGCM verifies and decrypts AES-GCM with an 8-byte ICV. Go's GCM
// only checks full tags, so the expected tag is recomputed by re-encrypting:
// seal(C) gives P, seal(P) gives C and the true tag over C, seal(C) gives P.
// ctICV is the ciphertext followed by the received 8-byte ICV.
func (s *Suite) openTruncGCM(sc *Scratch, ctICV []byte, nonce, aad []byte) error {
	n := len(ctICV) - 8
	ct := ctICV[:n]
	saved := sc.icv[:]
	copy(saved, ctICV[n:])
	s.aead.Seal(ct[:0], nonce, ct, aad) // now P (tag discarded)
	s.aead.Seal(ct[:0], nonce, ct, aad) // back to C, tag over C at ctICV[n:n+16]
	ok := subtle.ConstantTimeCompare(ctICV[n:n+8], saved) == 1
	s.aead.Seal(ct[:0], nonce, ct, aad) // P again
	copy(ctICV[n:n+8], saved)
	clear(ctICV[n+8 : n+16])
	if !ok {
		clear(ct)
		return ErrAuth
	}
	return nil
}

// gmacESP computes (seal) or verifies (open) the RFC 4543 ESP ICV: GMAC over
// SPI, sequence number (with ESN: SPI || SeqHi || SeqLo), IV and the whole
// unencrypted payload through Next Header. With ESN the AAD must be
// contiguous, so the SPI is moved four bytes down over the end of the
// preceding header for the computation and everything is restored after.
func (s *Suite) gmacESP(sc *Scratch, pkt []byte, off, icvStart int, nonce []byte, seq uint64, esn, seal bool) bool {
	start := off
	var saved [8]byte
	if esn {
		start = off - 4
		copy(saved[:], pkt[start:start+8])
		copy(pkt[start:start+4], saved[4:8]) // SPI
		binary.BigEndian.PutUint32(pkt[off:], uint32(seq>>32))
	}
	aad := pkt[start:icvStart]
	ok := true
	if seal {
		s.aead.Seal(pkt[icvStart:icvStart], nonce, nil, aad)
	} else {
		_, err := s.aead.Open(pkt[icvStart:icvStart], nonce, pkt[icvStart:icvStart+16], aad)
		ok = err == nil
	}
	if esn {
		copy(pkt[start:start+8], saved[:])
	}
	return ok
}

// ctrXOR applies the RFC 3686 keystream for counter blocks nonce || IV || 1,
// 2, 3, ... to b. Go's crypto/cipher CTR stream cannot be re-keyed with a new
// IV without allocating, so block 1 is encrypted directly and blocks 2 on come
// from GCM, whose keystream for the 96-bit nonce "nonce || IV" starts at
// counter 2 (NIST SP 800-38D 7.1). GCM's tag lands in the 16 bytes after b,
// inside the ICV area and TailSlack, and is overwritten by the caller.
func (s *Suite) ctrXOR(sc *Scratch, iv, b []byte) {
	copy(sc.ctr[:4], s.salt[:])
	copy(sc.ctr[4:12], iv)
	binary.BigEndian.PutUint32(sc.ctr[12:], 1)
	ks := sc.block[:]
	s.block.Encrypt(ks, sc.ctr[:])
	n := min(16, len(b))
	subtle.XORBytes(b[:n], b[:n], ks[:n])
	if len(b) > 16 {
		rest := b[16:]
		s.aead.Seal(rest[:0], sc.ctr[:12], rest, nil)
	}
}

// cbcIV derives an unpredictable CBC IV: AES under a random per-SA key of
// the sequence number (unique per packet, so IVs never repeat).
func (s *Suite) cbcIV(sc *Scratch, iv []byte, seq uint64) {
	clear(sc.ctr[:8])
	binary.BigEndian.PutUint64(sc.ctr[8:], seq)
	out := sc.block[:]
	s.ivGen.Encrypt(out, sc.ctr[:])
	copy(iv, out)
}

// hmacESP returns the truncated HMAC over the ESP header, IV and ciphertext,
// followed by the implicit ESN high half (RFC 4303 2.2.1). The result lives
// in sc.digest.
func (s *Suite) hmacESP(sc *Scratch, data []byte, seq uint64, esn bool) []byte {
	h := s.macPool.Get().(hash.Hash)
	h.Reset()
	h.Write(data)
	if esn {
		binary.BigEndian.PutUint32(sc.aad[:4], uint32(seq>>32))
		h.Write(sc.aad[:4])
	}
	sum := h.Sum(sc.digest[:0])
	s.macPool.Put(h)
	return sum[:s.icvLen]
}
