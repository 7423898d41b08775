package driver

import "testing"

func FuzzParseTransmit(f *testing.F) {
	m := make([]byte, TransmitLen+4)
	Transmit(m).Encode(TxInfo{OffloadHandle: 1, MSS: 100})
	f.Add(m)
	f.Add([]byte{1, 3, 0xff, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, pkt, err := ParseTransmit(b)
		if err != nil {
			return
		}
		i := h.Info()
		if len(h)+len(pkt) != len(b) || len(h) < TransmitLen {
			t.Fatalf("split %d+%d of %d", len(h), len(pkt), len(b))
		}
		m := make([]byte, TransmitLen)
		Transmit(m).Encode(i)
		if Transmit(m).Info() != i {
			t.Fatal("re-encode differs")
		}
	})
}

func FuzzParseReceive(f *testing.F) {
	m := make([]byte, ReceiveLen)
	Receive(m).Encode(EncodingLinux, RxInfo{CryptoDone: true, Status: CryptoInvalidPacketSyntax})
	f.Add(m, uint8(EncodingLinux))
	f.Add(m, uint8(EncodingNDIS))
	f.Fuzz(func(t *testing.T, b []byte, e uint8) {
		enc := Encoding(e)
		if !enc.Valid() {
			return
		}
		h, _, err := ParseReceive(b)
		if err != nil {
			return
		}
		i, ok := h.Info(enc)
		if !ok {
			return
		}
		m := make([]byte, ReceiveLen)
		Receive(m).Encode(enc, i)
		if j, ok := Receive(m).Info(enc); !ok || j != i {
			t.Fatalf("re-decode %+v, want %+v", j, i)
		}
	})
}

func FuzzParseHello(f *testing.F) {
	f.Add(EncodeHello(make([]byte, HelloLen), EncodingNDIS))
	f.Add(EncodeHelloAck(make([]byte, HelloAckLen), EncodingLinux, 1500, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseHello(b); err == nil && !h.Encoding().Valid() {
			t.Fatal("invalid encoding accepted")
		}
		if h, err := ParseHelloAck(b); err == nil {
			_ = h.MTU() + h.Batch()
		}
	})
}
