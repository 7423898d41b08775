package nic

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/secnic/secnic/bundle"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sadb"
)

// tcpDatagram builds an IPv4 or IPv6 TCP datagram with payload and flags,
// with valid checksums.
func tcpDatagram(src, dst netip.Addr, seq uint32, flags byte, payload []byte) []byte {
	hl := packet.IPv4MinLen
	if src.Is6() {
		hl = packet.IPv6Len
	}
	d := make([]byte, hl+20+len(payload))
	if src.Is6() {
		packet.WriteIPv6(d, packet.IPv6Fields{PayloadLen: 20 + len(payload), NextHeader: packet.ProtoTCP, HopLimit: 64, Src: src, Dst: dst})
	} else {
		packet.WriteIPv4(d, packet.IPv4Fields{TotalLen: len(d), ID: 0x4000, DF: true, TTL: 64, Protocol: packet.ProtoTCP, Src: src, Dst: dst})
	}
	t := d[hl:]
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 443)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], 77)
	t[12], t[13] = 5<<4, flags
	binary.BigEndian.PutUint16(t[14:], 65535)
	copy(t[20:], payload)
	packet.TCP(t).SetChecksum(packet.TransportChecksum(src, dst, packet.ProtoTCP, t))
	return d
}

// TestCryptoLSO sends one large TCP packet with an MSS through the
// crypto NIC and checks the segments three ways: the packet-offload
// receive path (bundle.Decap over a packet-mode table with the same SA),
// scapy, and the crypto NIC and stack on the far side.
func TestCryptoLSO(t *testing.T) {
	requireScapy(t)
	for _, tc := range []struct {
		mode string
		alg  alg
	}{{"transport", algGCM}, {"tunnel", algCBC}} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v6=%v", tc.mode, v6), func(t *testing.T) {
				p := newPair(t, driver.EncodingNDIS, driver.EncodingLinux, v6, layer{mode: tc.mode, alg: tc.alg})
				payload := make([]byte, 4500)
				for i := range payload {
					payload[i] = byte(i*13 + i>>8)
				}
				const mss, seq0 = 1000, 123456
				const flags = 0x80 | 0x10 | 0x08 | 0x01 // CWR ACK PSH FIN
				big := tcpDatagram(p.hostA, p.hostB, seq0, flags, payload)
				msg, err := p.a.st.Build(big, mss)
				if err != nil {
					t.Fatal(err)
				}
				if err := p.a.st.Write(msg); err != nil {
					t.Fatal(err)
				}
				const segs = 5
				wire := readN(t, p.a.tap, segs)
				st := p.a.nic.CryptoStats()
				if st.TxLSO != 1 || st.TxSegments != segs {
					t.Fatalf("counters %+v", st)
				}
				if p.outA[0].LastSeq() != segs {
					t.Fatalf("the stack advanced its sequence number to %d, want %d (one per segment)", p.outA[0].LastSeq(), segs)
				}
				check := func(who string, i int, tseq uint32, tflags byte, data []byte) {
					t.Helper()
					want := payload[i*mss : min((i+1)*mss, len(payload))]
					if tseq != seq0+uint32(i*mss) || !bytes.Equal(data, want) {
						t.Fatalf("%s: segment %d: seq %d, %d bytes; want seq %d, %d bytes", who, i, tseq, len(data), seq0+uint32(i*mss), len(want))
					}
					wf := byte(0x10)
					if i == 0 {
						wf |= 0x80
					}
					if i == segs-1 {
						wf |= 0x08 | 0x01
					}
					if tflags != wf {
						t.Fatalf("%s: segment %d: flags %#x, want %#x", who, i, tflags, wf)
					}
				}

				// 1. The packet-offload receive path.
				spec := layer{mode: tc.mode, alg: tc.alg}.spec("l0", "in", p.tunA, p.tunB, 0x1000, 1)
				if tc.mode == "transport" {
					spec = layer{mode: tc.mode, alg: tc.alg}.spec("l0", "in", p.hostA, p.hostB, 0x1000, 1)
				}
				pt, err := sadb.NewTable(sadb.TableConfig{Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				defer pt.Close()
				if _, err := pt.Add(spec); err != nil {
					t.Fatal(err)
				}
				for i, w := range wire {
					if len(w) > 1500 {
						t.Fatalf("segment %d is %d bytes, above the wire MTU", i, len(w))
					}
					b := packet.NewBuf(2048)
					if err := b.SetBytes(w); err != nil {
						t.Fatal(err)
					}
					loc, err := packet.Locate(b.Bytes(), 4500)
					if err != nil {
						t.Fatal(err)
					}
					if _, r := bundle.Decap(pt.Snapshot(), b, &loc, 4500); r != 0 {
						t.Fatalf("segment %d: packet-offload decap: %v", i, r)
					}
					d := b.Bytes()
					sp, err := packet.SplitIP(d)
					if err != nil || sp.Proto != packet.ProtoTCP || sp.Len != len(d) {
						t.Fatalf("segment %d: decapsulated datagram: %+v %v", i, sp, err)
					}
					if packet.Version(d) == 4 && !packet.IPv4(d).ChecksumValid() {
						t.Fatalf("segment %d: bad inner IPv4 checksum", i)
					}
					tcp := d[sp.HdrLen:]
					src, dst := ipAddrs(d)
					if packet.TransportChecksum(src, dst, packet.ProtoTCP, tcp) != 0 {
						t.Fatalf("segment %d: bad TCP checksum", i)
					}
					check("bundle.Decap", i, binary.BigEndian.Uint32(tcp[4:]), tcp[13], tcp[20:])
				}

				// 2. scapy.
				in := map[string]any{"mode": tc.mode, "v6": v6, "src": p.tunA.String(), "dst": p.tunB.String(), "spi": 0x1000,
					"enc": tc.alg.enc, "enc_key": hex.EncodeToString(spec.ESP.EncKey.Bytes()), "auth": orNone(tc.alg.auth),
					"auth_key": hex.EncodeToString(spec.ESP.AuthKey.Bytes())}
				var hexes []string
				for _, w := range wire {
					hexes = append(hexes, hex.EncodeToString(w))
				}
				in["packets"] = hexes
				var res struct {
					OK       bool
					Error    string
					Segments []struct {
						Seq     uint32
						Flags   byte
						Payload string
					}
				}
				runScapy(t, "testdata/scapy_lso.py", in, &res)
				if !res.OK || len(res.Segments) != segs {
					t.Fatalf("scapy: %s (%d segments)", res.Error, len(res.Segments))
				}
				for i, s := range res.Segments {
					data, _ := hex.DecodeString(s.Payload)
					check("scapy", i, s.Seq, s.Flags, data)
				}

				// 3. The crypto NIC and stack on the far side.
				write(t, p.b.tap, wire...)
				for i, d := range p.b.recv(t, segs) {
					if d.Drop != "" || d.Info.Status != driver.CryptoSuccess {
						t.Fatalf("segment %d at B: %+v drop %q", i, d.Info, d.Drop)
					}
					sp, _ := packet.SplitIP(d.Packet)
					tcp := d.Packet[sp.HdrLen:]
					check("stack B", i, binary.BigEndian.Uint32(tcp[4:]), tcp[13], tcp[20:])
				}
			})
		}
	}
}

const python = "/usr/bin/python3"

// requireScapy skips without scapy, except under CI=true.
func requireScapy(t *testing.T) {
	t.Helper()
	err := exec.Command(python, "-c", "import scapy.layers.ipsec").Run()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("scapy is required in CI (apt-get install python3-scapy): %v", err)
	}
	t.Skipf("scapy not available: %v", err)
}

func runScapy(t *testing.T, script string, in, out any) {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	o, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	if err := json.Unmarshal(o, out); err != nil {
		t.Fatalf("%s output %q: %v", script, o, err)
	}
}
