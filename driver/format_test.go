package driver

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"
)

func TestTransmitRoundTrip(t *testing.T) {
	in := TxInfo{OffloadHandle: 0x0102030405060708, TunnelHandle: 9, NextHeader: 6, PadLength: 3, AhHeaderOffset: 5, EspHeaderOffset: 11, MSS: 1400}
	msg := make([]byte, TransmitLen+3)
	Transmit(msg).Encode(in)
	copy(msg[TransmitLen:], "pkt")
	h, pkt, err := ParseTransmit(msg)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Info(); got != in {
		t.Fatalf("got %+v, want %+v", got, in)
	}
	if string(pkt) != "pkt" {
		t.Fatalf("packet %q", pkt)
	}
	// Known bytes: the prefix and the little-endian handle.
	want := []byte{1, 3, 32, 0, 8, 7, 6, 5, 4, 3, 2, 1}
	if !bytes.Equal(msg[:12], want) {
		t.Fatalf("bytes % x, want % x", msg[:12], want)
	}
}

func TestReceiveEncodings(t *testing.T) {
	for _, enc := range []Encoding{EncodingNDIS, EncodingLinux} {
		for _, st := range Statuses() {
			for _, flags := range []RxInfo{{CryptoDone: true}, {CryptoDone: true, NextCryptoDone: true, SaDeleteReq: true}} {
				in := flags
				in.Status, in.NextHeader, in.PadLength, in.HeaderInfoSet = st, 4, 2, true
				msg := make([]byte, ReceiveLen)
				Receive(msg).Encode(enc, in)
				h, _, err := ParseReceive(msg)
				if err != nil {
					t.Fatal(err)
				}
				got, ok := h.Info(enc)
				if !ok || got != in {
					t.Fatalf("%v %v: got %+v ok=%v, want %+v", enc, st, got, ok, in)
				}
			}
		}
	}
	// Known values: NDIS puts the status in bits 16-31, Linux uses bits.
	msg := make([]byte, ReceiveLen)
	Receive(msg).Encode(EncodingNDIS, RxInfo{CryptoDone: true, Status: CryptoTunnelESPAuthFailed})
	if f := Receive(msg).Flags(); f != 5<<16|2 {
		t.Fatalf("NDIS word %#x", f)
	}
	Receive(msg).Encode(EncodingLinux, RxInfo{CryptoDone: true, SaDeleteReq: true, Status: CryptoInvalidProtocol})
	if f, s := Receive(msg).Flags(), Receive(msg).RawStatus(); f != 3 || s != 128 {
		t.Fatalf("Linux flags %#x status %#x", f, s)
	}
}

func TestParseErrors(t *testing.T) {
	msg := make([]byte, TransmitLen)
	Transmit(msg).Encode(TxInfo{})
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		want error
	}{
		{"short", func(b []byte) []byte { return b[:2] }, ErrShort},
		{"version", func(b []byte) []byte { b[0] = 2; return b }, ErrVersion},
		{"type", func(b []byte) []byte { b[1] = byte(TypeReceive); return b }, ErrType},
		{"header too short", func(b []byte) []byte { b[2] = 8; return b }, ErrHeader},
		{"header beyond message", func(b []byte) []byte { return b[:20] }, ErrShort},
	} {
		b := tc.mut(append([]byte(nil), msg...))
		if _, _, err := ParseTransmit(b); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := ParseHello(EncodeHello(make([]byte, HelloLen), 7)); err != ErrEncode {
		t.Errorf("hello with encoding 7: %v", err)
	}
}

func TestSocketHandshakeAndBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drv.sock")
	p, err := Listen(path, PortConfig{MTU: 1500, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := Dial(path, EncodingLinux, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Encoding() != EncodingLinux || c.MTU() != 1500 {
		t.Fatalf("ack: %v %d", c.Encoding(), c.MTU())
	}
	msgs := make([][]byte, 20)
	for i := range msgs {
		msgs[i] = make([]byte, TransmitLen+1)
		Transmit(msgs[i]).Encode(TxInfo{OffloadHandle: uint64(i)})
	}
	if n, err := c.Write(msgs, 0); n != 20 || err != nil {
		t.Fatalf("write: %d %v", n, err)
	}
	bufs, sizes := make([][]byte, 8), make([]int, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	got := 0
	for got < 20 {
		n, err := p.Read(bufs, sizes, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			h, _, err := ParseTransmit(bufs[i][16 : 16+sizes[i]])
			if err != nil || h.OffloadHandle() != uint64(got) {
				t.Fatalf("message %d: %v handle %d", got, err, h.OffloadHandle())
			}
			got++
		}
	}
	if p.Encoding() != EncodingLinux {
		t.Fatal("port encoding")
	}
	// And back.
	out := make([]byte, ReceiveLen)
	Receive(out).Encode(EncodingLinux, RxInfo{CryptoDone: true})
	if n, err := p.Write([][]byte{out}, 0); n != 1 || err != nil {
		t.Fatalf("port write: %d %v", n, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(bufs, sizes, 0)
	if err != nil || n != 1 || sizes[0] != ReceiveLen {
		t.Fatalf("client read: %d %v", n, err)
	}
	// A second stack is refused while one is connected.
	if c2, err := Dial(path, EncodingNDIS, 1); err == nil {
		c2.Close()
		t.Fatal("second stack accepted")
	}
	// After the first leaves, another may connect.
	c.Close()
	rb, rs := [][]byte{make([]byte, 64)}, []int{0}
	go p.Read(rb, rs, 0) // notices the disconnect, then waits for the next stack
	deadline := time.Now().Add(5 * time.Second)
	for {
		c3, err := Dial(path, EncodingNDIS, 1)
		if err == nil {
			if c3.Encoding() != EncodingNDIS {
				t.Fatal("reconnected with the wrong encoding")
			}
			c3.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect after the first stack left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
