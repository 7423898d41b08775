//go:build linux

package interop

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/testenv"
	"github.com/secnic/secnic/saspec"
)

// TestLinuxXFRM uses the Linux kernel's own IPsec (XFRM with ESP) as the
// peer of a secnic NIC on a veth link: an ICMP echo request from behind
// the NIC is encrypted by secnic, decrypted by the kernel in the other
// namespace, answered, encrypted by the kernel and decrypted by secnic.
//
// Kernels built without ESP (like the one this project is developed on)
// cannot be the peer; the test then says so and does not pretend.
func TestLinuxXFRM(t *testing.T) {
	testenv.RequireNetns(t)
	pair, err := netlab.NewPair(netlab.PairConfig{Prefix: "secnic-xfrm"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	a, b := pair.A.V4, pair.B.V4
	key := randBytes(20) // AES-128 key and 4-byte salt: rfc4106(gcm(aes)) KEYMAT
	keyB := randBytes(20)
	ipB := func(args ...string) error {
		out, err := exec.Command("ip", append([]string{"netns", "exec", pair.B.Name, "ip"}, args...)...).CombinedOutput()
		if err != nil {
			return &cmdError{strings.Join(args, " "), strings.TrimSpace(string(out)), err}
		}
		return nil
	}
	// The kernel's inbound SA (from secnic) and outbound SA (to secnic).
	err = ipB("xfrm", "state", "add", "src", a.String(), "dst", b.String(), "proto", "esp", "spi", "0x100",
		"mode", "tunnel", "reqid", "1", "replay-window", "64", "aead", "rfc4106(gcm(aes))", "0x"+hex.EncodeToString(key), "128")
	if err != nil {
		// "Requested type not found": no ESP in this kernel; "algorithm
		// not found": no rfc4106(gcm(aes)) template.
		if m := err.Error(); strings.Contains(m, "Requested type not found") || strings.Contains(m, "algorithm not found") ||
			strings.Contains(m, "Protocol not supported") {
			t.Skipf("this kernel's XFRM has no ESP (%v): the Linux XFRM interop test cannot run on this machine; run it where esp4 is available", err)
		}
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"xfrm", "state", "add", "src", b.String(), "dst", a.String(), "proto", "esp", "spi", "0x200",
			"mode", "tunnel", "reqid", "2", "aead", "rfc4106(gcm(aes))", "0x" + hex.EncodeToString(keyB), "128"},
		{"xfrm", "policy", "add", "src", "10.1.0.0/24", "dst", "10.2.0.0/24", "dir", "in",
			"tmpl", "src", a.String(), "dst", b.String(), "proto", "esp", "mode", "tunnel", "reqid", "1"},
		{"xfrm", "policy", "add", "src", "10.2.0.0/24", "dst", "10.1.0.0/24", "dir", "out",
			"tmpl", "src", b.String(), "dst", a.String(), "proto", "esp", "mode", "tunnel", "reqid", "2"},
		{"addr", "add", "10.2.0.1/32", "dev", "lo"},
		{"route", "add", "10.1.0.0/24", "via", a.String()},
	} {
		if err := ipB(args...); err != nil {
			t.Fatal(err)
		}
	}

	l := startLinkNIC(t, pair, []saspec.BundleSpec{
		{Name: "out", Dir: "out", Mode: "tunnel", Src: a.String(), Dst: b.String(), ESP: &saspec.SASpec{SPI: 0x100, Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}},
		{Name: "in", Dir: "in", Mode: "tunnel", Src: b.String(), Dst: a.String(), ESP: &saspec.SASpec{SPI: 0x200, Enc: "aes-gcm-128", EncKey: saspec.KeyOf(keyB)}},
	}, []saspec.PolicySpec{
		{Name: "o", Dir: "out", Src: "10.1.0.0/24", Dst: "10.2.0.0/24", Action: "protect", Bundles: []saspec.Ref{"out"}},
		{Name: "i", Dir: "in", Src: "10.2.0.0/24", Dst: "10.1.0.0/24", Action: "protect", Bundles: []saspec.Ref{"in"}},
	})
	n, app, got := l.nic, l.app, l.got

	src, dst := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	for seq := uint16(1); seq <= 3; seq++ {
		req := echo(src, dst, 8, seq, []byte("secnic and linux xfrm"))
		if _, err := app.Write([][]byte{req}, 0); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case d := <-got:
				if packet.Version(d) == 4 && packet.IPv4(d).Protocol() == packet.ProtoICMP &&
					packet.IPv4(d).Src() == dst && d[20] == 0 && binary.BigEndian.Uint16(d[26:]) == seq {
					if !bytes.Equal(d[28:], []byte("secnic and linux xfrm")) {
						t.Fatalf("echo reply payload %q", d[28:])
					}
					break wait
				}
			case <-timeout:
				t.Fatalf("no echo reply %d through the kernel's ESP; NIC stats %+v", seq, n.Stats())
			}
		}
	}
}

type cmdError struct {
	cmd, out string
	err      error
}

func (e *cmdError) Error() string { return "ip " + e.cmd + ": " + e.out + " (" + e.err.Error() + ")" }

// echo builds an IPv4 ICMP echo request (type 8) with identifier 0x5ec.
func echo(src, dst netip.Addr, typ uint8, seq uint16, payload []byte) []byte {
	b := make([]byte, packet.IPv4MinLen+8+len(payload))
	packet.WriteIPv4(b, packet.IPv4Fields{TotalLen: len(b), ID: seq, DF: true, TTL: 64, Protocol: packet.ProtoICMP, Src: src, Dst: dst})
	m := b[packet.IPv4MinLen:]
	m[0] = typ
	binary.BigEndian.PutUint16(m[4:], 0x5ec)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], payload)
	binary.BigEndian.PutUint16(m[2:], packet.Checksum(m, 0))
	return b
}
