//go:build linux

package interop

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
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

// TestScapyLiveNIC runs a secnic NIC whose wire port is the link port on a
// veth in one network namespace, and scapy in the other namespace as the
// IPsec peer: scapy decrypts what the NIC puts on the link, and the NIC
// decrypts what scapy sends, for AEAD, cipher+HMAC and ChaCha20 SAs.
func TestScapyLiveNIC(t *testing.T) {
	testenv.RequireNetns(t)
	requireScapy(t)
	pair, err := netlab.NewPair(netlab.PairConfig{Prefix: "secnic-interop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })

	for i, a := range []struct{ enc, auth string }{
		{"aes-gcm-128", ""}, {"aes-cbc-128", "hmac-sha256-128"}, {"chacha20-poly1305", ""},
	} {
		t.Run(a.enc+"+"+orNoneAuth(a.auth), func(t *testing.T) {
			liveCase(t, pair, a.enc, a.auth, uint32(0x3000+i*2))
		})
	}
}

func liveCase(t *testing.T, pair *netlab.Pair, enc, auth string, spi uint32) {
	secnicAddr, scapyAddr := pair.A.V4, pair.B.V4
	keys := func() (saspec.Key, saspec.Key, string, string) {
		ek := randBytes(keyLen(t, enc))
		var ak []byte
		if auth != "" {
			ak = randBytes(authKeyLen(t, auth))
		}
		return saspec.KeyOf(ek), saspec.KeyOf(ak), hex.EncodeToString(ek), hex.EncodeToString(ak)
	}
	outEK, outAK, outEKh, outAKh := keys()
	inEK, inAK, inEKh, inAKh := keys()
	bundle := func(name, dir string, spi uint32, src, dst netip.Addr, ek, ak saspec.Key) saspec.BundleSpec {
		return saspec.BundleSpec{Name: name, Dir: dir, Mode: "tunnel", Src: src.String(), Dst: dst.String(),
			ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: enc, Auth: auth, EncKey: ek, AuthKey: ak}}
	}
	l := startLinkNIC(t, pair, []saspec.BundleSpec{
		bundle("out", "out", spi, secnicAddr, scapyAddr, outEK, outAK),
		bundle("in", "in", spi+1, scapyAddr, secnicAddr, inEK, inAK),
	}, []saspec.PolicySpec{
		{Name: "p-out", Dir: "out", Src: "10.1.0.0/24", Dst: "10.2.0.0/24", Action: "protect", Bundles: []saspec.Ref{"out"}},
		{Name: "p-in", Dir: "in", Src: "10.2.0.0/24", Dst: "10.1.0.0/24", Action: "protect", Bundles: []saspec.Ref{"in"}},
	})
	n, app, got := l.nic, l.app, l.got

	inner1, inner2 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1")
	var toScapy, fromScapy []string
	var toScapyRaw, fromScapyRaw [][]byte
	for i := range 3 {
		d := udpDatagram(inner1, inner2, 40+i*300)
		toScapyRaw = append(toScapyRaw, d)
		toScapy = append(toScapy, hex.EncodeToString(d))
		e := udpDatagram(inner2, inner1, 60+i*300)
		fromScapyRaw = append(fromScapyRaw, e)
		fromScapy = append(fromScapy, hex.EncodeToString(e))
	}

	// NIC → scapy: scapy sniffs on its veth and decrypts with the NIC's outbound keys.
	sniffCase := map[string]any{"spi": spi, "enc": enc, "auth": orNoneAuth(auth), "enc_key": outEKh, "auth_key": outAKh,
		"src": scapyAddr.String(), "dst": secnicAddr.String()}
	cmd, stdout := scapyInNetns(t, pair.B.Name, sniffCase, "sniff", pair.B.Veth, "3")
	bufs := make([][]byte, len(toScapyRaw))
	for i, d := range toScapyRaw {
		bufs[i] = append(make([]byte, 0, len(d)), d...)
	}
	if _, err := app.Write(bufs, 0); err != nil {
		t.Fatal(err)
	}
	var sniffed struct {
		Plain []string `json:"plain"`
	}
	line, err := stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("scapy sniffer: %v (stats %+v)", err, n.Stats())
	}
	cmd.Wait()
	if err := json.Unmarshal([]byte(line), &sniffed); err != nil {
		t.Fatalf("scapy sniffer output %q: %v", line, err)
	}
	if strings.Join(sniffed.Plain, ",") != strings.Join(toScapy, ",") {
		t.Fatalf("scapy decrypted from the wire (%s):\n%v\nwant\n%v\nNIC: %+v", line, len(sniffed.Plain), len(toScapy), n.Stats().TX)
	}

	// scapy → NIC: scapy encrypts with the NIC's inbound keys and sends.
	sendCase := map[string]any{"spi": spi + 1, "enc": enc, "auth": orNoneAuth(auth), "enc_key": inEKh, "auth_key": inAKh,
		"src": scapyAddr.String(), "dst": secnicAddr.String(), "plain": fromScapy, "first_seq": 1}
	cmd, stdout = scapyInNetns(t, pair.B.Name, sendCase, "send")
	out, _ := stdout.ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("scapy sender: %v: %s", err, out)
	}
	timeout := time.After(10 * time.Second)
	for i := 0; i < len(fromScapyRaw); {
		select {
		case d := <-got:
			if packet.Version(d) != 4 || packet.IPv4(d).Protocol() != packet.ProtoUDP {
				continue // e.g. ICMP the peer's kernel sends back; not part of the exchange
			}
			if !bytes.Equal(d, fromScapyRaw[i]) {
				t.Fatalf("NIC delivered\n%x\nwant\n%x", d, fromScapyRaw[i])
			}
			i++
		case <-timeout:
			t.Fatalf("NIC delivered %d of %d scapy packets; stats: %+v", i, len(fromScapyRaw), n.Stats())
		}
	}
}

// scapyInNetns starts the live scapy peer in the named namespace with the
// case on stdin and, for "sniff", waits until it is capturing.
func scapyInNetns(t *testing.T, ns string, c map[string]any, args ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	in, _ := json.Marshal(c)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, python, "testdata/scapy_live.py"}, args...)...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	r := bufio.NewReader(pipe)
	if args[0] == "sniff" {
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			t.Fatalf("scapy sniffer did not start: %q %v\n%s", line, err, stderr.String())
		}
		time.Sleep(200 * time.Millisecond) // let the capture socket bind
	}
	return cmd, r
}
