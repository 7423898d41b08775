package ah

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash"
	"testing"

	"github.com/secnic/secnic/internal/suite"
)

// This file is a deliberately simple, independent model of the AH ICV
// (RFC 4302 3.3.3, RFC 4543 4): copy the datagram as it is at the
// destination, zero the mutable fields in the copy, zero the
// Authentication Data, append the ESN high half, and MAC the copy with the
// standard library. It shares no code with the engine.

var refImmutable4 = map[byte]bool{0x82: true, 0x85: true, 0x86: true, 0x94: true, 0x95: true}

// refICV returns the ICV the reference computes for the AH datagram pkt
// (as received at its destination) and the ICV found in pkt.
func refICV(t testing.TB, a suite.Auth, key, pkt []byte, seq uint64, esn bool) (want, got []byte) {
	t.Helper()
	b := clone(pkt)
	var ahOff int
	if b[0]>>4 == 4 {
		hl := int(b[0]&15) * 4
		b[1], b[6], b[7], b[8], b[10], b[11] = 0, 0, 0, 0, 0, 0
	opts:
		for i := 20; i < hl; {
			switch b[i] {
			case 0:
				break opts
			case 1:
				i++
			default:
				l := int(b[i+1])
				if !refImmutable4[b[i]] {
					clear(b[i : i+l])
				}
				i += l
			}
		}
		ahOff = hl
	} else {
		b[0] &= 0xf0
		b[1], b[2], b[3], b[7] = 0, 0, 0, 0
		next, off := b[6], 40
		for next == 0 || next == 43 || next == 60 {
			l := (int(b[off+1]) + 1) * 8
			if next != 43 {
				for i := off + 2; i < off+l; {
					if b[i] == 0 {
						i++
						continue
					}
					if b[i]&0x20 != 0 {
						clear(b[i+2 : i+2+int(b[i+1])])
					}
					i += 2 + int(b[i+1])
				}
			}
			next, off = b[off], off+l
		}
		if next != 51 {
			t.Fatalf("reference: no AH in %x", pkt)
		}
		ahOff = off
	}
	ai, err := suite.LookupAuth(a)
	if err != nil {
		t.Fatal(err)
	}
	ivLen := 0
	if a == suite.AuthGMAC128 || a == suite.AuthGMAC192 || a == suite.AuthGMAC256 {
		ivLen = 8
	}
	authOff := ahOff + 12
	got = pkt[authOff+ivLen : authOff+ivLen+ai.ICVLen]
	iv := clone(pkt[authOff : authOff+ivLen])
	clear(b[authOff : authOff+ivLen+ai.ICVLen])
	if esn {
		b = binary.BigEndian.AppendUint32(b, uint32(seq>>32))
	}
	if ivLen != 0 {
		blk, err := aes.NewCipher(key[:len(key)-4])
		if err != nil {
			t.Fatal(err)
		}
		g, err := cipher.NewGCM(blk)
		if err != nil {
			t.Fatal(err)
		}
		nonce := append(clone(key[len(key)-4:]), iv...)
		return g.Seal(nil, nonce, nil, b), got
	}
	var h func() hash.Hash
	switch a {
	case suite.AuthMD5:
		h = md5.New
	case suite.AuthSHA1:
		h = sha1.New
	case suite.AuthSHA256:
		h = sha256.New
	case suite.AuthSHA384:
		h = sha512.New384
	case suite.AuthSHA512:
		h = sha512.New
	default:
		t.Fatalf("reference: no model for %s", a)
	}
	m := hmac.New(h, key)
	m.Write(b)
	return m.Sum(nil)[:ai.ICVLen], got
}
