package hoststack

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
)

type nopConn struct{}

func (nopConn) Read([][]byte, []int, int) (int, error) { return 0, os.ErrClosed }
func (nopConn) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (nopConn) Encoding() driver.Encoding              { return driver.EncodingNDIS }

// TestBuildLayout checks the headers, trailer and header info the stack
// builds, byte by byte where the RFCs fix them.
func TestBuildLayout(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	d := packettest.UDP(a, b, 1, 2, 30, 0, false) // 58 bytes
	st := New(nopConn{})
	esp, err := st.AddBundle(BundleConfig{Handle: 7, ESP: &SAConfig{SPI: 0x1234, Enc: "aes-cbc-128", Auth: "hmac-sha256-128"}, AH: &SAConfig{SPI: 0x99, Auth: "hmac-sha256-128"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.BuildWith(d, esp, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, pkt, err := driver.ParseTransmit(msg)
	if err != nil {
		t.Fatal(err)
	}
	i := h.Info()
	// IPv4 20 | AH 12+16=28 | ESP 8 | IV 16 | UDP 38 + pad + 2 | ICV 16
	if i.OffloadHandle != 7 || i.AhHeaderOffset != 5 || i.EspHeaderOffset != 12 || i.NextHeader != packet.ProtoUDP {
		t.Fatalf("info %+v", i)
	}
	padLen := (16 - (38+2)%16) % 16
	if int(i.PadLength) != padLen || len(pkt) != 20+28+8+16+38+padLen+2+16 || packet.IPv4(pkt).TotalLen() != len(pkt) {
		t.Fatalf("length %d, pad %d", len(pkt), i.PadLength)
	}
	if pkt[9] != packet.ProtoAH || pkt[20] != packet.ProtoESP || pkt[21] != 28/4-2 || binary.BigEndian.Uint32(pkt[24:]) != 0x99 || binary.BigEndian.Uint32(pkt[28:]) != 1 {
		t.Fatalf("AH header % x", pkt[:48])
	}
	if binary.BigEndian.Uint32(pkt[48:]) != 0x1234 || binary.BigEndian.Uint32(pkt[52:]) != 1 {
		t.Fatalf("ESP header % x", pkt[48:56])
	}
	tr := pkt[len(pkt)-16-2-padLen:]
	for k := range padLen {
		if tr[k] != byte(k+1) {
			t.Fatalf("padding % x", tr)
		}
	}
	if tr[padLen] != byte(padLen) || tr[padLen+1] != packet.ProtoUDP {
		t.Fatalf("trailer % x", tr)
	}
	// The next packet takes the next sequence numbers.
	msg, _ = st.BuildWith(d, esp, nil, 0)
	if pkt := msg[driver.TransmitLen:]; binary.BigEndian.Uint32(pkt[28:]) != 2 || binary.BigEndian.Uint32(pkt[52:]) != 2 {
		t.Fatal("sequence numbers did not advance")
	}
	// Inbound bundles cannot send; LSO needs ESP alone.
	in, _ := st.AddBundle(BundleConfig{Handle: 8, In: true, ESP: &SAConfig{SPI: 5, Enc: "aes-gcm-128"}})
	if _, err := st.BuildWith(d, in, nil, 0); err == nil {
		t.Error("an inbound bundle sent")
	}
	if _, err := st.BuildWith(d, esp, nil, 1000); err == nil {
		t.Error("LSO over AH+ESP accepted")
	}
}
