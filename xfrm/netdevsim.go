package xfrm

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"

	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// NetdevsimFormat selects the debugfs layout of WriteNetdevsim.
type NetdevsimFormat int

const (
	// NetdevsimAddr is the layout of current kernels: "ipaddr=" then the
	// address (%pI4, %pI6c).
	NetdevsimAddr NetdevsimFormat = iota
	// NetdevsimHex is the layout of older kernels, which the
	// kci_test_ipsec_offload selftest expects: four 32-bit words.
	NetdevsimHex
)

// WriteNetdevsim prints the SAs of bundles as netdevsim's debugfs "ipsec"
// file (drivers/net/netdevsim/ipsec.c) does for the same SAs: a line
// "SA count=N tx=M", then three lines per SA in slot order. Slots are the
// SAs in handle order (netdevsim takes the first free slot, which is the
// same order while nothing is deleted). tx counts the packets sent through
// outbound SAs. As netdevsim, it prints the first 16 bytes of the key
// (and the 4 bytes after them as the salt) as 32-bit words in
// little-endian (x86) byte order, so the bundles must carry their keys.
func WriteNetdevsim(w io.Writer, bundles []sadb.BundleInfo, f NetdevsimFormat) error {
	bs := append([]sadb.BundleInfo(nil), bundles...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Handle < bs[j].Handle })
	var b strings.Builder
	var count int
	var tx uint64
	for _, bi := range bs {
		for _, s := range bi.SAs {
			count++
			if bi.Spec.Dir == "out" {
				tx += s.Counters.Packets
			}
		}
	}
	fmt.Fprintf(&b, "SA count=%d tx=%d\n", count, tx)
	i := 0
	for _, bi := range bs {
		for _, s := range bi.SAs {
			spec := bi.Spec.ESP
			proto := 0x32
			key := saspec.Key{}
			if s.Proto == "ah" {
				spec, proto = bi.Spec.AH, 0x33
			}
			if spec == nil {
				continue
			}
			if spec.KeysRedacted {
				return fmt.Errorf("the netdevsim view prints key material, as netdevsim's debugfs file does: list the SAs with keys (--keys)")
			}
			crypt := 0
			if proto == 0x32 {
				key, crypt = spec.EncKey, 1
			} else {
				key = spec.AuthKey
			}
			rx := bi.Spec.Dir == "in"
			v6 := bi.Spec.Family == "ipv6"
			var ip [16]byte
			if rx {
				if a, err := netip.ParseAddr(bi.Spec.Dst); err == nil {
					if a.Is4() {
						a4 := a.As4()
						copy(ip[12:], a4[:])
					} else {
						ip = a.As16()
					}
				}
			}
			dirc := 't'
			if rx {
				dirc = 'r'
			}
			switch {
			case f == NetdevsimHex:
				fmt.Fprintf(&b, "sa[%d] %cx ipaddr=0x%08x %08x %08x %08x\n", i, dirc,
					binary.LittleEndian.Uint32(ip[0:]), binary.LittleEndian.Uint32(ip[4:]),
					binary.LittleEndian.Uint32(ip[8:]), binary.LittleEndian.Uint32(ip[12:]))
			case v6:
				fmt.Fprintf(&b, "sa[%d] %cx ipaddr=%s\n", i, dirc, netip.AddrFrom16(ip))
			default:
				fmt.Fprintf(&b, "sa[%d] %cx ipaddr=%s\n", i, dirc, netip.AddrFrom4([4]byte(ip[12:])))
			}
			var k [20]byte
			kb := key.Bytes()
			copy(k[:], kb)
			var salt uint32
			if len(kb) > 16 {
				salt = binary.LittleEndian.Uint32(k[16:])
			}
			fmt.Fprintf(&b, "sa[%d]    spi=0x%08x proto=0x%x salt=0x%08x crypt=%d\n", i, uint32(spec.SPI), proto, salt, crypt)
			fmt.Fprintf(&b, "sa[%d]    key=0x%08x %08x %08x %08x\n", i,
				binary.LittleEndian.Uint32(k[0:]), binary.LittleEndian.Uint32(k[4:]),
				binary.LittleEndian.Uint32(k[8:]), binary.LittleEndian.Uint32(k[12:]))
			clear(k[:])
			i++
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
