package suite

import (
	"bytes"
	"sync"
	"testing"
)

// TestLazyAEAD checks the AES-GCM state built on first use: many packets
// sealing at once under a fresh suite all round-trip (one state is built;
// -race checks the publication), the state is there only after a packet
// needed it, and a suite closed before its first packet refuses it.
func TestLazyAEAD(t *testing.T) {
	for _, enc := range []Enc{EncAESGCM128, EncAESGCM256, EncGMAC128} {
		t.Run(string(enc), func(t *testing.T) {
			info, _ := LookupEnc(enc)
			key := bytes.Repeat([]byte{0x42}, info.KeyLen)
			s, err := New(Params{Enc: enc, EncKey: key})
			if err != nil {
				t.Fatal(err)
			}
			if s.ready.Load() || s.aead != nil {
				t.Fatal("the AEAD was built before any packet needed it")
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for w := range 8 {
				wg.Go(func() {
					cb := new(Scratch)
					seq := uint64(w + 1)
					pt := []byte("sixteen byte msg\x01\x02\x02\x04")
					pkt := espBuf([]byte{1, 2, 3, 4}, uint32(seq), s.IVLen(), pt, s.ICVLen())
					if err := s.SealESP(pkt, katOff, seq, false, cb); err != nil {
						errs <- err
						return
					}
					if err := s.OpenESP(pkt, katOff, seq, false, cb); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(pkt[katOff+16:len(pkt)-s.ICVLen()], pt) {
						errs <- ErrAuth
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if !s.ready.Load() {
				t.Fatal("no AEAD after the first packets")
			}

			closed, err := New(Params{Enc: enc, EncKey: key})
			if err != nil {
				t.Fatal(err)
			}
			closed.Close()
			pkt := espBuf([]byte{1, 2, 3, 4}, 1, closed.IVLen(), []byte("sixteen byte msg\x01\x02\x02\x04"), closed.ICVLen())
			if err := closed.SealESP(pkt, katOff, 1, false, new(Scratch)); err != ErrClosed {
				t.Fatalf("seal after Close before the first packet: %v, want ErrClosed", err)
			}
			if closed.aead != nil {
				t.Fatal("a closed suite built its AEAD from its wiped key")
			}
		})
	}
}
