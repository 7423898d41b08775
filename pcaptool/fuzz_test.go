package pcaptool

import (
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// FuzzFrame feeds arbitrary capture frames through the link-layer parser
// and the decap path of the tool: never a panic, and a datagram only when
// the frame held one.
func FuzzFrame(f *testing.F) {
	dir := f.TempDir()
	file := roundTripFile(f, dir)
	tool, err := New(file, Options{Op: Decap, Dir: "out"})
	if err != nil {
		f.Fatal(err)
	}
	defer tool.Close()
	enc, err := New(file, Options{Op: Encap})
	if err != nil {
		f.Fatal(err)
	}
	defer enc.Close()
	for _, n := range []int{0, 17, 300} {
		r := enc.Process(1, udp4(n))
		if r.Reason != "" {
			f.Fatal(r.Reason)
		}
		f.Add(uint8(0), append([]byte(nil), r.Out...))
		f.Add(uint8(1), append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0}, r.Out...))
		f.Add(uint8(2), append([]byte{0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0}, r.Out...))
	}
	lts := []layers.LinkType{layers.LinkTypeRaw, layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL}
	f.Fuzz(func(t *testing.T, lt uint8, frame []byte) {
		d, err := linkPayload(lts[int(lt)%len(lts)], frame)
		if err != nil {
			return
		}
		if len(d) > len(frame) {
			t.Fatalf("payload longer than the frame")
		}
		r := tool.Process(1, d)
		if r.Reason == "" && len(r.Out) > len(d) {
			t.Fatalf("decap grew the datagram from %d to %d bytes", len(d), len(r.Out))
		}
	})
}
