package nic

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/driver/hoststack"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/saspec"
)

var cryptoScenarios = []struct {
	name   string
	layers []layer
}{
	{"esp-transport", []layer{{mode: "transport", alg: algGCM}}},
	{"esp-tunnel", []layer{{mode: "tunnel", alg: algCBC}}},
	{"ah-transport", []layer{{mode: "transport", ah: "hmac-sha256-128"}}},
	{"ah-tunnel", []layer{{mode: "tunnel", ah: "hmac-sha1-96"}}},
	{"ah+esp-transport", []layer{{mode: "transport", alg: algChaCha, ah: "hmac-sha256-128"}}},
	{"ah+esp-tunnel", []layer{{mode: "tunnel", alg: algGCM, ah: "aes-gmac-128"}}},
	{"esp-tunnel-esn", []layer{{mode: "tunnel", alg: algGCM, esn: true}}},
	{"ah+esp-transport-esn", []layer{{mode: "transport", alg: algCBC, ah: "hmac-sha256-128", esn: true}}},
	{"transport-over-tunnel", []layer{{mode: "transport", alg: algCBC}, {mode: "tunnel", alg: algGCM}}},
	{"ah+esp-transport-over-esp-tunnel", []layer{{mode: "transport", alg: algNull, ah: "hmac-sha256-128"}, {mode: "tunnel", alg: algCBC}}},
}

// TestCryptoRoundTrip sends datagrams from stack A through crypto NIC A,
// the wire and crypto NIC B to stack B, for every bundle shape, IPv4 and
// IPv6, in both status encodings.
func TestCryptoRoundTrip(t *testing.T) {
	for _, sc := range cryptoScenarios {
		for _, v6 := range []bool{false, true} {
			for _, enc := range []driver.Encoding{driver.EncodingNDIS, driver.EncodingLinux} {
				t.Run(fmt.Sprintf("%s/v6=%v/%s", sc.name, v6, enc), func(t *testing.T) {
					p := newPair(t, enc, enc, v6, sc.layers...)
					var sent [][]byte
					for i := range 5 {
						d := packettest.UDP(p.hostA, p.hostB, 1000, 2000, 100+i*37, uint32(i), false)
						sent = append(sent, d)
					}
					if err := p.a.st.Send(sent...); err != nil {
						t.Fatal(err)
					}
					wire := p.carry(t, len(sent))
					outer := sc.layers[len(sc.layers)-1]
					for i, w := range wire {
						wantProto := uint8(packet.ProtoESP)
						if outer.ah != "" {
							wantProto = packet.ProtoAH
						}
						sp, err := packet.SplitIP(w)
						if err != nil || sp.Proto != wantProto {
							t.Fatalf("wire packet %d: protocol %d (err %v), want %d", i, sp.Proto, err, wantProto)
						}
						if outer.alg.enc != "" && outer.alg.enc != "null" && bytes.Contains(w, sent[i][len(sent[i])-40:]) {
							t.Fatalf("wire packet %d carries the payload in clear", i)
						}
					}
					got := p.b.recv(t, len(sent))
					for i, d := range got {
						if d.Drop != "" {
							t.Fatalf("delivery %d dropped: %s (info %+v)", i, d.Drop, d.Info)
						}
						if !bytes.Equal(d.Packet, sent[i]) {
							t.Fatalf("delivery %d:\n got % x\nwant % x", i, d.Packet, sent[i])
						}
						want := driver.RxInfo{CryptoDone: true, NextCryptoDone: len(sc.layers) == 2, Status: driver.CryptoSuccess}
						if d.Info.CryptoDone != want.CryptoDone || d.Info.NextCryptoDone != want.NextCryptoDone || d.Info.Status != want.Status || d.Info.SaDeleteReq {
							t.Fatalf("delivery %d info %+v, want %+v", i, d.Info, want)
						}
						if hasESP := outer.alg.enc != ""; d.Info.HeaderInfoSet != hasESP {
							t.Fatalf("HeaderInfoSet %v for outer ESP %v", d.Info.HeaderInfoSet, hasESP)
						}
					}
					if st := p.a.nic.CryptoStats(); st.TxProtected != uint64(len(sent)) || st.TxFailed+st.TxBadMessage+st.TxUnknownHandle != 0 {
						t.Fatalf("A's counters: %+v", st)
					}
					// A replay is delivered by the NIC (it does no anti-replay)
					// and dropped by the stack.
					write(t, p.b.tap, wire[0])
					r := p.b.recv(t, 1)[0]
					if r.Info.Status != driver.CryptoSuccess || r.Drop != hoststack.DropReplay {
						t.Fatalf("replayed packet: info %+v drop %q, want success from the NIC and a replay drop in the stack", r.Info, r.Drop)
					}
				})
			}
		}
	}
}

// statusCase makes a packet that should produce a status: tamper turns a
// valid wire packet of the bundle layers into the bad one.
var statusCases = []struct {
	status driver.Status
	layers []layer
	tamper func(t *testing.T, w []byte) []byte
}{
	{driver.CryptoSuccess, []layer{{mode: "transport", alg: algGCM}}, func(t *testing.T, w []byte) []byte { return w }},
	{driver.CryptoGenericError, []layer{{mode: "transport", alg: algCBC}}, func(t *testing.T, w []byte) []byte {
		// The ciphertext loses 4 bytes: no longer whole AES blocks.
		icv := 16
		out := append(append([]byte(nil), w[:len(w)-icv-4]...), w[len(w)-icv:]...)
		packet.SetLength(out)
		return out
	}},
	{driver.CryptoTransportAHAuthFailed, []layer{{mode: "transport", ah: "hmac-sha256-128"}}, flipLast},
	{driver.CryptoTransportESPAuthFailed, []layer{{mode: "transport", alg: algChaCha}}, flipLast},
	{driver.CryptoTunnelAHAuthFailed, []layer{{mode: "tunnel", ah: "hmac-sha256-128"}}, flipLast},
	{driver.CryptoTunnelESPAuthFailed, []layer{{mode: "tunnel", alg: algCBC}}, flipLast},
	{driver.CryptoInvalidPacketSyntax, []layer{{mode: "transport", alg: algGCM}}, func(t *testing.T, w []byte) []byte {
		// Only the ESP header and 4 bytes: too short for IV and ICV.
		sp, _ := packet.SplitIP(w)
		out := append([]byte(nil), w[:sp.HdrLen+12]...)
		packet.SetLength(out)
		return out
	}},
	{driver.CryptoInvalidProtocol, []layer{{mode: "transport", alg: algGCM, ah: "hmac-sha256-128"}}, func(t *testing.T, w []byte) []byte {
		// The AH of the AH+ESP bundle removed: ESP alone for an AH+ESP SA.
		sp, _ := packet.SplitIP(w)
		al := (int(w[sp.HdrLen+1]) + 2) * 4
		out := append(append([]byte(nil), w[:sp.HdrLen]...), w[sp.HdrLen+al:]...)
		out[sp.NextOff] = packet.ProtoESP
		packet.SetLength(out)
		return out
	}},
}

func flipLast(t *testing.T, w []byte) []byte {
	out := bytes.Clone(w)
	out[len(out)-1] ^= 0x40
	return out
}

// TestCryptoStatus produces every CryptoStatus value with a packet that
// should produce it, in both encodings, and checks the raw flags and
// status words of each encoding.
func TestCryptoStatus(t *testing.T) {
	if len(statusCases) != len(driver.Statuses()) {
		t.Fatalf("%d cases for %d statuses", len(statusCases), len(driver.Statuses()))
	}
	for _, tc := range statusCases {
		for _, v6 := range []bool{false, true} {
			for _, enc := range []driver.Encoding{driver.EncodingNDIS, driver.EncodingLinux} {
				t.Run(fmt.Sprintf("%s/v6=%v/%s", tc.status, v6, enc), func(t *testing.T) {
					p := newPair(t, enc, enc, v6, tc.layers...)
					d := packettest.UDP(p.hostA, p.hostB, 1000, 2000, 200, 1, false)
					if err := p.a.st.Send(d); err != nil {
						t.Fatal(err)
					}
					w := readN(t, p.a.tap, 1)[0]
					write(t, p.b.tap, tc.tamper(t, w))
					msg := readMsg(t, p.b)
					h, _, err := driver.ParseReceive(msg)
					if err != nil {
						t.Fatal(err)
					}
					info, ok := h.Info(enc)
					if !ok || !info.CryptoDone || info.Status != tc.status || info.NextCryptoDone {
						t.Fatalf("info %+v ok=%v, want CryptoDone and %v", info, ok, tc.status)
					}
					f, s := h.Flags(), h.RawStatus()
					if enc == driver.EncodingNDIS {
						if f != uint32(tc.status)<<16|driver.NDISCryptoDone || s != 0 {
							t.Fatalf("NDIS words %#x %#x", f, s)
						}
					} else if f != driver.LinuxCryptoDone || s != 1<<tc.status {
						t.Fatalf("Linux words %#x %#x", f, s)
					}
					dl, err := p.b.st.Receive(msg)
					if err != nil {
						t.Fatal(err)
					}
					if (dl.Drop == "") != (tc.status == driver.CryptoSuccess) {
						t.Fatalf("stack: drop %q for %v", dl.Drop, tc.status)
					}
				})
			}
		}
	}
}

// readMsg reads one raw receive message from c's connection.
func readMsg(t testing.TB, c *cside) []byte {
	t.Helper()
	bufs := [][]byte{make([]byte, driver.MaxHeaderLen+driver.MaxPacket)}
	sizes := []int{0}
	c.conn.SetReadDeadline(timeNow().Add(watchdog))
	n, err := c.conn.Read(bufs, sizes, 0)
	if err != nil || n != 1 {
		t.Fatalf("reading a receive message: %d %v", n, err)
	}
	return bufs[0][:sizes[0]]
}

// TestCryptoUnprocessed: what the NIC has no SA for is delivered as it
// is, with CryptoDone clear; a handle of 0 sends a packet unprotected; an
// unknown handle fails the packet and counts it; a sequence number that
// is not above the last one is refused.
func TestCryptoUnprocessed(t *testing.T) {
	p := newPair(t, driver.EncodingLinux, driver.EncodingNDIS, false, layer{mode: "transport", alg: algGCM})
	plain := packettest.UDP(p.hostA, p.hostB, 1, 2, 50, 9, false)
	msg, err := p.a.st.BuildWith(plain, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.a.st.Write(msg); err != nil {
		t.Fatal(err)
	}
	if w := readN(t, p.a.tap, 1)[0]; !bytes.Equal(w, plain) {
		t.Fatal("handle 0: the packet was changed")
	}
	// Unknown handle.
	bad := bytes.Clone(msg)
	binary.LittleEndian.PutUint64(bad[4:], 999)
	// A repeated sequence number: the same protected message twice.
	good, err := p.a.st.Build(plain, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.a.st.Write(bad, good, good); err != nil {
		t.Fatal(err)
	}
	w := readN(t, p.a.tap, 1)[0]
	// A plain packet to B: delivered unprocessed (the stack's policy then
	// refuses it: B protects this flow).
	write(t, p.b.tap, plain, w)
	ds := p.b.recv(t, 2)
	if ds[0].Info.CryptoDone || ds[0].Info.Status != driver.CryptoSuccess || ds[0].Drop != hoststack.DropPolicy {
		t.Fatalf("plain packet: %+v drop %q", ds[0].Info, ds[0].Drop)
	}
	if !ds[1].Info.CryptoDone || ds[1].Drop != "" {
		t.Fatalf("protected packet: %+v drop %q", ds[1].Info, ds[1].Drop)
	}
	// The watchdog read above saw one packet only; the stats say why.
	st := waitStats(t, p.a.nic, func(s CryptoStats) bool { return s.TxFailed == 1 })
	if st.TxUnknownHandle != 1 || st.TxUnprotected != 1 || st.TxProtected != 1 {
		t.Fatalf("A's counters: %+v", st)
	}
}

// TestCryptoSaDeleteReq: an inbound SA with a soft lifetime of 3 packets
// sets SaDeleteReq from the third packet on; the stack is told.
func TestCryptoSaDeleteReq(t *testing.T) {
	for _, enc := range []driver.Encoding{driver.EncodingNDIS, driver.EncodingLinux} {
		t.Run(enc.String(), func(t *testing.T) {
			a, b := newCSide(t, enc, 0), newCSide(t, enc, 0)
			l := layer{mode: "tunnel", alg: algGCM}
			out := a.addBundle(t, l.spec("o", "out", out4A, out4B, 0x3000, 7))
			in := l.spec("i", "in", out4A, out4B, 0x3000, 7)
			in.Lifetime = saspec.LifetimeSpec{Soft: saspec.LimitSpec{Packets: 3}}
			inB := b.addBundle(t, in)
			var asked []*hoststack.Bundle
			b.st.OnDeleteRequest = func(x *hoststack.Bundle) { asked = append(asked, x) }
			b.st.AddPolicy(hoststack.Policy{In: true, Src: pfx("10.1.0.0/16"), Dst: pfx("10.2.0.0/16"), Action: hoststack.Protect, Bundles: []*hoststack.Bundle{inB}})
			var sent [][]byte
			for i := range 5 {
				m, err := a.st.BuildWith(packettest.UDP(in4A, in4B, 1, 2, 64, uint32(i), false), out, nil, 0)
				if err != nil {
					t.Fatal(err)
				}
				sent = append(sent, m)
			}
			if err := a.st.Write(sent...); err != nil {
				t.Fatal(err)
			}
			write(t, b.tap, readN(t, a.tap, 5)...)
			ds := b.recv(t, 5)
			for i, d := range ds {
				if d.Info.SaDeleteReq != (i >= 2) || d.Drop != "" {
					t.Fatalf("packet %d: SaDeleteReq %v drop %q", i, d.Info.SaDeleteReq, d.Drop)
				}
			}
			if len(asked) != 3 || asked[0] != inB {
				t.Fatalf("OnDeleteRequest calls: %d", len(asked))
			}
			// The NIC never deletes the SA itself.
			if b.table.Snapshot().Bundle(saHandle(inB)) == nil {
				t.Fatal("the NIC removed the SA")
			}
		})
	}
}

// TestCryptoStatsReported: Stats carries the crypto counters in crypto
// mode only.
func TestCryptoStatsReported(t *testing.T) {
	c := newCSide(t, driver.EncodingNDIS, 0)
	if st := c.nic.Stats(); st.Crypto == nil {
		t.Fatal("no crypto counters in a crypto NIC's Stats")
	}
	a, _ := build(t, topo{alg: algGCM})
	if a.nic.Stats().Crypto != nil {
		t.Fatal("crypto counters in a packet NIC's Stats")
	}
	// And in the Prometheus registry: a crypto NIC only.
	has := func(n *NIC) bool {
		mfs, err := n.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "secnic_crypto_tx_packets_total" && len(mf.GetMetric()) == 8 {
				return true
			}
		}
		return false
	}
	if !has(c.nic) || has(a.nic) {
		t.Fatalf("crypto metrics: crypto NIC %v, packet NIC %v", has(c.nic), has(a.nic))
	}
}
