package nic

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/driver/hoststack"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/tun"
)

// fakeDriver is a DriverPort that is never read or written: the
// benchmarks and fuzz tests call the per-packet functions directly.
type fakeDriver struct{ enc driver.Encoding }

func (f *fakeDriver) Read([][]byte, []int, int) (int, error) { return 0, os.ErrClosed }
func (f *fakeDriver) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (f *fakeDriver) BatchSize() int                         { return 8 }
func (f *fakeDriver) MTU() int                               { return driver.MaxHeaderLen + driver.MaxPacket }
func (f *fakeDriver) Name() string                           { return "fake-driver" }
func (f *fakeDriver) Close() error                           { return nil }
func (f *fakeDriver) Encoding() driver.Encoding              { return f.enc }

// fakeConn gives a hoststack a connection that only reports its encoding.
type fakeConn struct{ enc driver.Encoding }

func (f fakeConn) Read([][]byte, []int, int) (int, error) { return 0, os.ErrClosed }
func (f fakeConn) Write(b [][]byte, _ int) (int, error)   { return len(b), nil }
func (f fakeConn) Encoding() driver.Encoding              { return f.enc }

// offlineCrypto is a crypto NIC that is not running, with one layer's
// outbound and inbound bundles (the inbound one with the outbound one's
// SPI and keys, so the NIC opens what it sealed) and a stack that knows
// the outbound one.
func offlineCrypto(tb testing.TB, l layer) (*NIC, *hoststack.Stack, *hoststack.Bundle) {
	tb.Helper()
	caps, err := capabilities.NewManagerFromConfig(capabilities.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	caps.SetOffloadMode(capabilities.OffloadCrypto)
	table, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { table.Close() })
	wire, _ := tun.NewMemPair(8, 1500)
	n, err := New(Config{Offload: OffloadCrypto}, table, &fakeDriver{enc: driver.EncodingLinux}, wire, quietLogger())
	if err != nil {
		tb.Fatal(err)
	}
	src, dst := out4A, out4B
	out := l.spec("o", "out", src, dst, 0x5000, 3)
	in := l.spec("i", "in", src, dst, 0x5000, 3)
	h, err := table.Add(out)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := table.Add(in); err != nil {
		tb.Fatal(err)
	}
	st := hoststack.New(fakeConn{driver.EncodingLinux})
	bc := hoststack.BundleConfig{Handle: uint64(h), Tunnel: l.mode == "tunnel", Src: src, Dst: dst}
	if out.ESP != nil {
		bc.ESP = &hoststack.SAConfig{SPI: 0x5000, Enc: out.ESP.Enc, Auth: out.ESP.Auth}
	}
	if out.AH != nil {
		bc.AH = &hoststack.SAConfig{SPI: 0x5001, Auth: out.AH.Auth}
	}
	b, err := st.AddBundle(bc)
	if err != nil {
		tb.Fatal(err)
	}
	return n, st, b
}

// BenchmarkCryptoNIC measures the NIC side of crypto offload per packet:
// transmit (parse the message, look up the handle, seal in place) and
// receive (look up the SA, open in place, encode the flags). The stack's
// work (building the message) is outside the timed loop but for a copy
// and the sequence number. It must report 0 allocs/op.
func BenchmarkCryptoNIC(b *testing.B) {
	for _, l := range []layer{{mode: "tunnel", alg: algGCM}, {mode: "transport", alg: algCBC, ah: "hmac-sha256-128"}} {
		name := l.mode + "/" + l.alg.name
		if l.ah != "" {
			name += "+ah"
		}
		b.Run(name, func(b *testing.B) {
			n, st, ob := offlineCrypto(b, l)
			d := packettest.UDP(in4A, in4B, 1, 2, 1000, 1, false)
			if l.mode == "transport" {
				d = packettest.UDP(out4A, out4B, 1, 2, 1000, 1, false)
			}
			msg, err := st.BuildWith(d, ob, nil, 0)
			if err != nil {
				b.Fatal(err)
			}
			t := n.crypto.tx
			p := t.bufs[0]
			espOff := int(msg[23]) * 4
			ahOff := int(msg[22]) * 4
			rx := packet.NewBuf(2048)
			snap := n.table.Snapshot()
			b.SetBytes(int64(len(d)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				copy(p.B[cryptoReadOff:], msg)
				pkt := p.B[cryptoReadOff+driver.TransmitLen:]
				seq := uint32(i + 1)
				if espOff != 0 {
					binary.BigEndian.PutUint32(pkt[espOff+4:], seq)
				}
				if ahOff != 0 {
					binary.BigEndian.PutUint32(pkt[ahOff+8:], seq)
				}
				n.cryptoTransmit(t, snap, p, len(msg))
				if len(t.out) != 1 {
					b.Fatalf("packet %d not sent: %+v", i, n.CryptoStats())
				}
				t.out = t.out[:0]
				// Receive what was sent.
				rx.Off, rx.Len = packet.Headroom, p.Len
				copy(rx.B[rx.Off:], p.Bytes())
				info := n.cryptoReceive(snap, rx)
				if info.Status != driver.CryptoSuccess || !info.CryptoDone {
					b.Fatalf("packet %d: %+v", i, info)
				}
				driver.Receive(rx.B[rx.Off-driver.ReceiveLen:rx.Off]).Encode(driver.EncodingLinux, info)
			}
		})
	}
}

// FuzzCryptoTransmit feeds arbitrary transmit messages to the NIC's
// transmit path (any handle, offsets and packet): it must never crash.
func FuzzCryptoTransmit(f *testing.F) {
	n, st, ob := offlineCrypto(f, layer{mode: "transport", alg: algGCM, ah: "hmac-sha256-128"})
	d := packettest.UDP(out4A, out4B, 1, 2, 100, 1, false)
	msg, err := st.BuildWith(d, ob, nil, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(msg)
	lso := append([]byte(nil), msg...)
	binary.LittleEndian.PutUint16(lso[24:], 40)
	f.Add(lso)
	f.Fuzz(func(t *testing.T, m []byte) {
		if len(m) > len(n.crypto.tx.raw[0])-cryptoReadOff {
			return
		}
		tx := n.crypto.tx
		p := tx.bufs[0]
		copy(p.B[cryptoReadOff:], m)
		n.cryptoTransmit(tx, n.table.Snapshot(), p, len(m))
		tx.out = tx.out[:0]
		tx.segs.reset()
	})
}

// FuzzCryptoReceive feeds arbitrary datagrams from the wire to the NIC's
// receive path: it must never crash, and what it reports must encode.
func FuzzCryptoReceive(f *testing.F) {
	n, st, ob := offlineCrypto(f, layer{mode: "tunnel", alg: algCBC, ah: "hmac-sha1-96"})
	d := packettest.UDP(in4A, in4B, 1, 2, 100, 1, false)
	msg, err := st.BuildWith(d, ob, nil, 0)
	if err != nil {
		f.Fatal(err)
	}
	tx := n.crypto.tx
	p := tx.bufs[0]
	copy(p.B[cryptoReadOff:], msg)
	n.cryptoTransmit(tx, n.table.Snapshot(), p, len(msg))
	if len(tx.out) != 1 {
		f.Fatal("seed packet not sealed")
	}
	f.Add(append([]byte(nil), p.Bytes()...))
	tx.out = tx.out[:0]
	rx := packet.NewBuf(2048)
	f.Fuzz(func(t *testing.T, w []byte) {
		if len(w) > 2048 {
			return
		}
		rx.Off, rx.Len = packet.Headroom, len(w)
		copy(rx.B[rx.Off:], w)
		info := n.cryptoReceive(n.table.Snapshot(), rx)
		if info.NextCryptoDone && !info.CryptoDone {
			t.Fatal("NextCryptoDone without CryptoDone")
		}
		driver.Receive(rx.B[rx.Off-driver.ReceiveLen:rx.Off]).Encode(driver.EncodingNDIS, info)
	})
}
