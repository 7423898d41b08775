package hoststack_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/driver/hoststack"
	"github.com/secnic/secnic/internal/packettest"
	"github.com/secnic/secnic/nic"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
	"github.com/secnic/secnic/tun"
)

// A host stack drives a crypto-offload NIC: the control plane adds an
// outbound tunnel bundle (and, because the NIC's wire is looped back to
// itself here, the matching inbound one) and hands the handles to the
// stack; the stack builds ESP, the NIC encrypts it, and on the way back
// the NIC decrypts and reports, the stack does anti-replay and policy.
func Example() {
	quiet := slog.New(slog.DiscardHandler)
	caps, _ := capabilities.NewManagerFromConfig(capabilities.Config{})
	caps.SetOffloadMode(capabilities.OffloadCrypto)
	table, _ := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: quiet})
	defer table.Close()

	key := saspec.KeyOf([]byte("0123456789abcdefSALT")) // AES-128 key and 4-byte salt
	bundle := func(dir string) saspec.BundleSpec {
		return saspec.BundleSpec{Name: dir, Dir: dir, Mode: "tunnel", Src: "192.0.2.1", Dst: "192.0.2.2",
			ESP: &saspec.SASpec{SPI: 0x100, Enc: "aes-gcm-128", EncKey: key}}
	}
	outH, _ := table.Add(bundle("out"))
	inH, _ := table.Add(bundle("in"))

	dir, _ := os.MkdirTemp("", "secnic-example")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "driver.sock")
	port, _ := driver.Listen(sock, driver.PortConfig{MTU: 1500, Logger: quiet})
	wire, loop := tun.NewMemPair(64, 1500)
	n, err := nic.New(nic.Config{Offload: nic.OffloadCrypto}, table, port, wire, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)
	go func() { // the far end of the wire sends everything back
		bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
		for {
			if _, err := loop.Read(bufs, sizes, 0); err != nil {
				return
			}
			loop.Write([][]byte{bufs[0][:sizes[0]]}, 0)
		}
	}()

	conn, err := driver.Dial(sock, driver.EncodingLinux, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	st := hoststack.New(conn)
	ends := func(in bool, h uint64) hoststack.BundleConfig {
		return hoststack.BundleConfig{Handle: h, In: in, Tunnel: true,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"),
			ESP: &hoststack.SAConfig{SPI: 0x100, Enc: "aes-gcm-128"}}
	}
	out, _ := st.AddBundle(ends(false, uint64(outH)))
	in, _ := st.AddBundle(ends(true, uint64(inH)))
	nets := [2]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")}
	st.AddPolicy(hoststack.Policy{Src: nets[0], Dst: nets[1], Action: hoststack.Protect, Bundles: []*hoststack.Bundle{out}})
	st.AddPolicy(hoststack.Policy{In: true, Src: nets[0], Dst: nets[1], Action: hoststack.Protect, Bundles: []*hoststack.Bundle{in}})

	pkt := packettest.UDP(netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.2.0.1"), 1000, 2000, 64, 1, false)
	for port.Encoding() == 0 { // the NIC takes the stack
		time.Sleep(time.Millisecond)
	}
	if err := st.Send(pkt); err != nil {
		fmt.Println(err)
		return
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ds, err := st.Recv(1)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := ds[0]
	fmt.Println("status:", d.Info.Status, "crypto done:", d.Info.CryptoDone, "next header:", d.Info.NextHeader)
	fmt.Println("delivered the datagram sent:", string(d.Packet) == string(pkt), "sequence number:", out.LastSeq())
	// Output:
	// status: CRYPTO_SUCCESS crypto done: true next header: 4
	// delivered the datagram sent: true sequence number: 1
}
