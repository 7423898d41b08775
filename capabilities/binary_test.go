package capabilities

import (
	"bytes"
	"encoding"
	"testing"
)

// Compile-time checks that Record has the standard encoding interfaces.
var (
	_ encoding.BinaryMarshaler   = Record{}
	_ encoding.BinaryAppender    = Record{}
	_ encoding.BinaryUnmarshaler = (*Record)(nil)
)

func TestMarshalBinaryLayout(t *testing.T) {
	tests := []struct {
		name string
		r    Record
		want []byte
	}{
		{
			name: "every field distinct",
			r: Record{
				Encapsulation:                EncapsulationIEEE8023 | EncapsulationIEEE8023PAndQ, // 0x06
				IPv6Supported:                true,                                               // 4
				IPv4Options:                  false,                                              // 5
				IPv6NonIPsecExtensionHeaders: true,                                               // 6
				Ah:                           false,                                              // 7
				Esp:                          true,                                               // 8
				AhEspCombined:                false,                                              // 9
				Transport:                    true,                                               // 10
				Tunnel:                       true,                                               // 11
				TransportTunnelCombined:      false,                                              // 12
				LsoSupported:                 false,                                              // 13
				ExtendedSequenceNumbers:      true,                                               // 14
				UdpEsp:                       UDPESPTransport | UDPESPUDPTransportOverTunnel,     // 0x09
				AuthenticationAlgorithms:     AuthSHA256 | AuthAESGCM256,                         // 0x24
				EncryptionAlgorithms:         EncrAESGCM128 | EncrAESCBC256,                      // 0x108
				SaOffloadCapacity:            0x01020304,
				// Not part of NDIS_IPSEC_OFFLOAD_V2: must not show up.
				OffloadFlags: FlagTCPChecksumCoexistence,
				Extensions:   Extensions{Encryption: ExtChaCha20Poly1305, GCMICVLengths: ICV16},
				Limits:       Limits{MaxReplayWindow: 99, PacketOffload: true},
			},
			want: []byte{
				0x06, 0x00, 0x00, 0x00, // 0  Encapsulation
				0x01,                   // 4  IPv6Supported
				0x00,                   // 5  IPv4Options
				0x01,                   // 6  IPv6NonIPsecExtensionHeaders
				0x00,                   // 7  Ah
				0x01,                   // 8  Esp
				0x00,                   // 9  AhEspCombined
				0x01,                   // 10 Transport
				0x01,                   // 11 Tunnel
				0x00,                   // 12 TransportTunnelCombined
				0x00,                   // 13 LsoSupported
				0x01,                   // 14 ExtendedSequenceNumbers
				0x00,                   // 15 padding
				0x09, 0x00, 0x00, 0x00, // 16 UdpEsp
				0x24, 0x00, 0x00, 0x00, // 20 AuthenticationAlgorithms
				0x08, 0x01, 0x00, 0x00, // 24 EncryptionAlgorithms
				0x04, 0x03, 0x02, 0x01, // 28 SaOffloadCapacity
			},
		},
		{
			name: "zero",
			r:    Record{},
			want: make([]byte, 32),
		},
		{
			name: "full profile",
			r:    fullRecord(),
			want: []byte{
				0x02, 0x00, 0x00, 0x00,
				0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x01,
				0x00,
				0x0f, 0x00, 0x00, 0x00,
				0x3f, 0x00, 0x00, 0x00,
				0xff, 0x01, 0x00, 0x00,
				0x00, 0x10, 0x00, 0x00, // 4096
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != BinarySize || !bytes.Equal(got, tt.want) {
				t.Fatalf("MarshalBinary() =\n% x\nwant\n% x", got, tt.want)
			}
			appended, err := tt.r.AppendBinary([]byte{0xaa})
			if err != nil || !bytes.Equal(appended, append([]byte{0xaa}, tt.want...)) {
				t.Errorf("AppendBinary = % x, %v", appended, err)
			}

			var back Record
			if err := back.UnmarshalBinary(tt.want); err != nil {
				t.Fatal(err)
			}
			want := tt.r
			want.OffloadFlags, want.Extensions, want.Limits = 0, Extensions{}, Limits{}
			if back != want {
				t.Errorf("UnmarshalBinary =\n%+v\nwant\n%+v", back, want)
			}
		})
	}
}

func TestBinaryRoundTripProfiles(t *testing.T) {
	for _, p := range Profiles() {
		for _, r := range []Record{p.Hardware, DefaultConfig(p.Hardware)} {
			b, err := r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			// Decoding into a copy keeps the non-NDIS parts.
			back := r
			back.Esp = !back.Esp
			back.SaOffloadCapacity++
			if err := back.UnmarshalBinary(b); err != nil {
				t.Fatalf("%s: %v", p.Name, err)
			}
			if back != r {
				t.Errorf("%s: round trip =\n%+v\nwant\n%+v", p.Name, back, r)
			}
		}
	}
}

func TestUnmarshalBinaryErrors(t *testing.T) {
	valid, _ := fullRecord().MarshalBinary()
	with := func(off int, v byte) []byte {
		b := bytes.Clone(valid)
		b[off] = v
		return b
	}
	tests := []struct {
		name string
		data []byte
		text string
	}{
		{"empty", nil, "has 0 bytes"},
		{"short", valid[:31], "has 31 bytes"},
		{"long", append(bytes.Clone(valid), 0), "has 33 bytes"},
		{"boolean 2 at IPv6Supported", with(4, 2), "IPv6Supported is 0x02 at offset 4"},
		{"boolean 0xff at ExtendedSequenceNumbers", with(14, 0xff), "ExtendedSequenceNumbers is 0xff at offset 14"},
		{"padding", with(15, 1), "padding is 0x01 at offset 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullRecord()
			err := r.UnmarshalBinary(tt.data)
			checkErr(t, err, ErrInvalid, tt.text)
			if r != fullRecord() {
				t.Error("record changed on error")
			}
		})
	}
	// Unknown mask bits decode as they are; Validate reports them.
	var r Record
	if err := r.UnmarshalBinary(with(25, 0xff)); err != nil {
		t.Fatal(err)
	}
	checkErr(t, r.Validate(), ErrInvalid, "encryption_algorithms has unknown bits")
}

func FuzzUnmarshalBinary(f *testing.F) {
	for _, p := range Profiles() {
		b, _ := p.Hardware.MarshalBinary()
		f.Add(b)
	}
	f.Add(make([]byte, 32))
	f.Add([]byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Record
		if err := r.UnmarshalBinary(data); err != nil {
			if r != (Record{}) {
				t.Fatal("record changed on error")
			}
			return
		}
		// Accepted input is canonical: encoding it again gives the same bytes.
		out, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", data, out)
		}
		_ = r.Validate()
		_ = r.NDISView()
	})
}
