package xfrm

import (
	"bytes"
	"strings"
	"testing"
)

// selftestDebugfs is what kci_test_ipsec_offload expects in netdevsim's
// debugfs ipsec file after its two states and three pings (older kernels,
// four-word addresses).
const selftestDebugfs = `SA count=2 tx=3
sa[0] tx ipaddr=0x00000000 00000000 00000000 00000000
sa[0]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1
sa[0]    key=0x34333231 38373635 32313039 36353433
sa[1] rx ipaddr=0x00000000 00000000 00000000 037ba8c0
sa[1]    spi=0x00000009 proto=0x32 salt=0x61626364 crypt=1
sa[1]    key=0x34333231 38373635 32313039 36353433
`

// TestNetdevsimSelftest: the netdevsim view of the selftest's states is
// the selftest's expected text, with secnic's two differences: spi 0x109
// for the reserved spi 9, and tx=0 as no packet was sent here (the
// end-to-end test sends them).
func TestNetdevsimSelftest(t *testing.T) {
	g := newRig(t)
	g.run(selftestLines[2], selftestLines[3])
	want := strings.NewReplacer("tx=3", "tx=0", "spi=0x00000009", "spi=0x00000109").Replace(selftestDebugfs)
	var b bytes.Buffer
	if err := WriteNetdevsim(&b, g.tb.List(true), NetdevsimHex); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Errorf("netdevsim hex view:\n%s\nwant:\n%s", b.String(), want)
	}
	// Current kernels print the address itself.
	b.Reset()
	if err := WriteNetdevsim(&b, g.tb.List(true), NetdevsimAddr); err != nil {
		t.Fatal(err)
	}
	wantAddr := strings.NewReplacer(
		"ipaddr=0x00000000 00000000 00000000 00000000", "ipaddr=0.0.0.0",
		"ipaddr=0x00000000 00000000 00000000 037ba8c0", "ipaddr=192.168.123.3").Replace(want)
	if b.String() != wantAddr {
		t.Errorf("netdevsim view:\n%s\nwant:\n%s", b.String(), wantAddr)
	}
	// Without keys there is nothing to print but an error saying so.
	if err := WriteNetdevsim(&b, g.tb.List(false), NetdevsimAddr); err == nil || !strings.Contains(err.Error(), "--keys") {
		t.Errorf("redacted: %v", err)
	}
	// After a flush, as the selftest checks.
	g.run("ip x s flush")
	b.Reset()
	if err := WriteNetdevsim(&b, g.tb.List(true), NetdevsimHex); err != nil || b.String() != "SA count=0 tx=0\n" {
		t.Errorf("after flush: %q %v", b.String(), err)
	}
}

// TestNetdevsimIPv6AndAH covers an IPv6 inbound SA (%pI6c, and four words)
// and an AH SA (no encryption: crypt=0), and a key without salt.
func TestNetdevsimIPv6AndAH(t *testing.T) {
	g := newRig(t)
	g.run(
		`ip x s add src 2001:db8::2 dst 2001:db8::1 proto esp spi 0x300 aead 'rfc4106(gcm(aes))' 0x000102030405060708090a0b0c0d0e0f10111213 128 dir in`,
		`ip x s add src 10.0.0.1 dst 10.0.0.2 proto ah spi 0x301 auth-trunc 'hmac(sha256)' `+k32c+` 128 dir out`,
	)
	var b bytes.Buffer
	if err := WriteNetdevsim(&b, g.tb.List(true), NetdevsimAddr); err != nil {
		t.Fatal(err)
	}
	want := "SA count=2 tx=0\n" +
		"sa[0] rx ipaddr=2001:db8::1\n" +
		"sa[0]    spi=0x00000300 proto=0x32 salt=0x13121110 crypt=1\n" +
		"sa[0]    key=0x03020100 07060504 0b0a0908 0f0e0d0c\n" +
		"sa[1] tx ipaddr=0.0.0.0\n" +
		"sa[1]    spi=0x00000301 proto=0x33 salt=0x" + leWord(k32c[2+32:2+40]) + " crypt=0\n" +
		"sa[1]    key=0x" + leWord(k32c[2:10]) + " " + leWord(k32c[10:18]) + " " + leWord(k32c[18:26]) + " " + leWord(k32c[26:34]) + "\n"
	if b.String() != want {
		t.Errorf("netdevsim view:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteNetdevsim(&b, g.tb.List(true), NetdevsimHex); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "sa[0] rx ipaddr=0xb80d0120 00000000 00000000 01000000\n") {
		t.Errorf("IPv6 hex words:\n%s", b.String())
	}
}

// leWord reads 8 hex digits (4 bytes) as a little-endian 32-bit word.
func leWord(h string) string { return h[6:8] + h[4:6] + h[2:4] + h[0:2] }
