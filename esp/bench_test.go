package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// benchSizes are the payload sizes of the benchmarks: the bytes handed to
// Encap are an IPv4 datagram whose total length is the size (so SetBytes
// counts the same bytes for Encap, Decap and Raw).
var benchSizes = []int{64, 512, 1400, 9000}

// benchAlgs is every algorithm once: each AEAD/GMAC transform with its
// default ICV, each cipher with HMAC-SHA-256-128, and NULL encryption with
// every HMAC.
func benchAlgs() []alg {
	var out []alg
	for _, a := range allAlgs() {
		e, _ := suite.LookupEnc(a.enc)
		switch {
		case e.Combined && a.icvLen == 0:
			out = append(out, a)
		case !e.Combined && (a.auth == suite.AuthSHA256 || a.enc == suite.EncNull):
			out = append(out, a)
		}
	}
	return out
}

func benchDatagram(size int) []byte {
	return udpDatagram(false, i4a, i4b, size-packet.IPv4MinLen-packet.UDPLen)
}

// BenchmarkEncap measures tunnel-mode ESP encapsulation in place.
func BenchmarkEncap(b *testing.B) {
	for _, a := range benchAlgs() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", a.name, size), func(b *testing.B) {
				out, _ := newPair(b, a, pairOpts{mode: sa.Tunnel, esn: true})
				// Encap encrypted the previous datagram in place; only its
				// headers matter for the next round.
				packettest.BenchOp(b, size, benchDatagram(size), packet.IPv4MinLen+packet.UDPLen, func(p *packet.Buf) sa.Reason { return Encap(out, p) })
			})
		}
	}
}

// BenchmarkDecap measures tunnel-mode ESP decapsulation in place. Each
// round restores the ciphertext with a copy (included in the time; a few
// percent at these sizes), and the replay window is disabled so that one
// packet can be decapsulated repeatedly (the window is benchmarked in sa).
func BenchmarkDecap(b *testing.B) {
	for _, a := range benchAlgs() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", a.name, size), func(b *testing.B) {
				out, in := newPair(b, a, pairOpts{mode: sa.Tunnel, esn: true, window: -1})
				p := bufOf(benchDatagram(size))
				if err := Encap(out, p); err != sa.ReasonNone {
					b.Fatal(err)
				}
				prot := append([]byte(nil), p.Bytes()...)
				packettest.BenchOp(b, size, prot, len(prot), func(p *packet.Buf) sa.Reason { return LocateAndDecap(in, p) })
			})
		}
	}
}

// BenchmarkRaw measures the bare primitive on the same number of bytes:
// the AEAD seal, or the cipher plus the HMAC, with everything prepared
// outside the loop. It is the ceiling Encap is compared against.
func BenchmarkRaw(b *testing.B) {
	for _, a := range benchAlgs() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", a.name, size), func(b *testing.B) {
				p := params(a)
				buf := make([]byte, size+64)
				data := buf[:size]
				nonce := make([]byte, 12)
				aad := make([]byte, 12)
				var seal func()
				e, _ := suite.LookupEnc(a.enc)
				keyLen := e.KeyLen
				switch a.enc {
				case suite.EncChaCha:
					c, _ := chacha20poly1305.New(p.EncKey[:32])
					seal = func() { c.Seal(data[:0], nonce, data, aad) }
				case suite.EncAESGCM128, suite.EncAESGCM192, suite.EncAESGCM256:
					blk, _ := aes.NewCipher(p.EncKey[:keyLen-4])
					c, _ := cipher.NewGCM(blk)
					seal = func() { c.Seal(data[:0], nonce, data, aad) }
				case suite.EncGMAC128, suite.EncGMAC192, suite.EncGMAC256:
					blk, _ := aes.NewCipher(p.EncKey[:keyLen-4])
					c, _ := cipher.NewGCM(blk)
					seal = func() { c.Seal(buf[size:size], nonce, nil, data) }
				default:
					var mode cipher.BlockMode
					var stream cipher.Stream
					switch a.enc {
					case suite.EncAESCBC128, suite.EncAESCBC192, suite.EncAESCBC256:
						blk, _ := aes.NewCipher(p.EncKey)
						mode = cipher.NewCBCEncrypter(blk, make([]byte, 16))
					case suite.EncAESCTR128, suite.EncAESCTR192, suite.EncAESCTR256:
						blk, _ := aes.NewCipher(p.EncKey[:keyLen-4])
						stream = cipher.NewCTR(blk, make([]byte, 16))
					case suite.Enc3DESCBC:
						blk, _ := des.NewTripleDESCipher(p.EncKey)
						mode = cipher.NewCBCEncrypter(blk, make([]byte, 8))
					case suite.EncDESCBC:
						blk, _ := des.NewCipher(p.EncKey)
						mode = cipher.NewCBCEncrypter(blk, make([]byte, 8))
					}
					h := rawHMAC(a.auth, p.AuthKey)
					sum := make([]byte, 0, 64)
					blockData := data[:size/16*16]
					seal = func() {
						switch {
						case mode != nil:
							mode.CryptBlocks(blockData, blockData)
						case stream != nil:
							stream.XORKeyStream(data, data)
						}
						h.Reset()
						h.Write(data)
						sum = h.Sum(sum[:0])
					}
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					seal()
				}
			})
		}
	}
}

func rawHMAC(a suite.Auth, key []byte) hash.Hash {
	switch a {
	case suite.AuthMD5:
		return hmac.New(md5.New, key)
	case suite.AuthSHA1:
		return hmac.New(sha1.New, key)
	case suite.AuthSHA256:
		return hmac.New(sha256.New, key)
	case suite.AuthSHA384:
		return hmac.New(sha512.New384, key)
	default:
		return hmac.New(sha512.New, key)
	}
}
