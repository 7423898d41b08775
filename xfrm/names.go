package xfrm

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"

	"github.com/secnic/secnic/saspec"
)

// Bundle and policy names carry what XFRM has and secnic's schema has not.
//
//	state:  xfrm-DIR-PROTO-SPI-DSTHASH-rREQID   e.g. xfrm-out-esp-00000009-5f0c1a2b-r42
//	policy: xfrm-DIR-SELHASH                     e.g. xfrm-fwd-0a1b2c3d
//
// DSTHASH is the FNV-1a hash of the destination address, SELHASH that of
// the selector; they keep names unique within secnic's 64-character limit.

// StateName names the bundle of one XFRM state.
func StateName(dir, proto string, spi saspec.SPI, dst netip.Addr, reqid uint32) string {
	return fmt.Sprintf("xfrm-%s-%s-%08x-%08x-r%d", dir, proto, uint32(spi), hashString(dst.Unmap().String()), reqid)
}

// StateNameInfo is what a bundle name made by StateName says.
type StateNameInfo struct {
	Dir, Proto string
	SPI        saspec.SPI
	DstHash    uint32
	ReqID      uint32
}

// ParseStateName reads a name made by StateName.
func ParseStateName(name string) (StateNameInfo, bool) {
	p := strings.Split(name, "-")
	if len(p) != 6 || p[0] != "xfrm" || !strings.HasPrefix(p[5], "r") {
		return StateNameInfo{}, false
	}
	if p[1] != "in" && p[1] != "out" {
		return StateNameInfo{}, false
	}
	if p[2] != "esp" && p[2] != "ah" {
		return StateNameInfo{}, false
	}
	spi, err1 := strconv.ParseUint(p[3], 16, 32)
	h, err2 := strconv.ParseUint(p[4], 16, 32)
	r, err3 := strconv.ParseUint(p[5][1:], 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || len(p[3]) != 8 || len(p[4]) != 8 {
		return StateNameInfo{}, false
	}
	return StateNameInfo{Dir: p[1], Proto: p[2], SPI: saspec.SPI(spi), DstHash: uint32(h), ReqID: uint32(r)}, true
}

// ReqID returns the reqid of a bundle name (0 for bundles not made by
// secnic xfrm, as for states without reqid).
func ReqID(name string) uint32 {
	if n, ok := ParseStateName(name); ok {
		return n.ReqID
	}
	return 0
}

// PolicyName names the secnic policy of an XFRM policy: XFRM identifies a
// policy by its direction and selector.
func PolicyName(dir string, sel Selector) string {
	return fmt.Sprintf("xfrm-%s-%08x", dir, hashString(sel.key()))
}

// PolicyDir returns the XFRM direction of a secnic policy: "fwd" for the
// inbound policies made from "dir fwd", else its own direction.
func PolicyDir(p saspec.PolicySpec) string {
	if strings.HasPrefix(p.Name, "xfrm-fwd-") {
		return "fwd"
	}
	return p.Dir
}

func hashString(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
