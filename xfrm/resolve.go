package xfrm

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// StateView is one XFRM state as secnic holds it: one SA of a bundle.
type StateView struct {
	Bundle sadb.BundleInfo
	// SA is the SA's state; Spec its part of the bundle's spec.
	SA    sadb.SAInfo
	Spec  *saspec.SASpec
	Proto string // esp or ah
	ReqID uint32
}

// States lists the XFRM states of bundles: one per SA, ESP before AH, in
// handle order.
func States(bundles []sadb.BundleInfo) []StateView {
	bs := append([]sadb.BundleInfo(nil), bundles...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Handle < bs[j].Handle })
	var out []StateView
	for _, b := range bs {
		for _, s := range b.SAs {
			v := StateView{Bundle: b, SA: s, Proto: s.Proto, ReqID: ReqID(b.Spec.Name)}
			switch s.Proto {
			case "esp":
				v.Spec = b.Spec.ESP
			case "ah":
				v.Spec = b.Spec.AH
			}
			if v.Spec == nil {
				continue
			}
			out = append(out, v)
		}
	}
	return out
}

// Ref returns how a policy refers to the state's bundle: its name, or its
// handle when it has none.
func (v StateView) Ref() saspec.Ref {
	if v.Bundle.Spec.Name != "" {
		return saspec.Ref(v.Bundle.Spec.Name)
	}
	return saspec.Ref(strconv.FormatUint(uint64(v.Bundle.Handle), 10))
}

func endpoint(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// Src and Dst are the state's addresses (invalid for wildcards).
func (v StateView) Src() netip.Addr { return endpoint(v.Bundle.Spec.Src) }

// Dst is the state's destination address (invalid for a wildcard).
func (v StateView) Dst() netip.Addr { return endpoint(v.Bundle.Spec.Dst) }

// Mode is transport or tunnel.
func (v StateView) Mode() string {
	if v.Bundle.Spec.Mode == "" {
		return "transport"
	}
	return v.Bundle.Spec.Mode
}

// MatchesID reports whether the state is selected by an ID or filter.
func (v StateView) MatchesID(id ID) bool {
	if id.Proto != "" && v.Proto != id.Proto {
		return false
	}
	if id.HasSPI && v.Spec.SPI != id.SPI {
		return false
	}
	if id.Src.IsValid() && !(v.Src().IsValid() && id.Src.Contains(v.Src())) {
		return false
	}
	if id.Dst.IsValid() && !(v.Dst().IsValid() && id.Dst.Contains(v.Dst())) {
		return false
	}
	return true
}

// Matches reports whether the state is selected by the filter.
func (f StateFilter) Matches(v StateView) bool {
	if !v.MatchesID(f.ID) {
		return false
	}
	if f.Mode != "" && v.Mode() != f.Mode {
		return false
	}
	if f.HasReqID && v.ReqID != f.ReqID {
		return false
	}
	return true
}

// Matches reports whether state v can serve template t of a policy in
// direction dir (in, out or fwd), as XFRM's template resolution decides:
// proto, mode, and reqid, SPI and addresses where the template gives them.
func (t Template) Matches(v StateView, dir string) bool {
	want := "in"
	if dir == "out" {
		want = "out"
	}
	if v.Bundle.Spec.Dir != want || v.Proto != t.Proto || v.Mode() != t.Mode {
		return false
	}
	if t.ReqID != 0 && v.ReqID != t.ReqID {
		return false
	}
	if t.SPI != 0 && v.Spec.SPI != t.SPI {
		return false
	}
	if t.Src.IsValid() && v.Src() != t.Src {
		return false
	}
	if t.Dst.IsValid() && v.Dst() != t.Dst {
		return false
	}
	return true
}

// ErrNoState is returned (wrapped) by ResolveTemplates when a template
// matches no installed state.
var ErrNoState = errors.New("no state matches the template")

// ResolveTemplates finds the bundles that serve the policy's templates.
// An outbound template takes the newest matching state (the highest
// handle, as XFRM prefers the newest state after a rekey); an inbound one
// accepts every matching state. secnic links policies to bundles that
// exist, so a template that matches no state is an error wrapping
// ErrNoState (RunScript retries such policies after later state adds).
func ResolveTemplates(p Policy, states []StateView) ([]saspec.Ref, error) {
	var refs []saspec.Ref
	seen := map[saspec.Ref]bool{}
	for i, t := range p.Tmpls {
		var match []StateView
		for _, v := range states {
			if t.Matches(v, p.Dir) {
				match = append(match, v)
			}
		}
		if len(match) == 0 {
			d := "inbound"
			if p.Dir == "out" {
				d = "outbound"
			}
			return nil, fmt.Errorf("tmpl %d (%s) of the dir %s policy matches no %s state: secnic links a policy to states that exist, so add the state first (in a script run with secnic xfrm -b, the policy waits for later state adds): %w", i+1, t, p.Dir, d, ErrNoState)
		}
		if p.Dir == "out" {
			match = match[len(match)-1:]
		}
		for _, v := range match {
			if r := v.Ref(); !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	return refs, nil
}

// String describes the template in ip's words.
func (t Template) String() string {
	var b strings.Builder
	if t.Src.IsValid() {
		fmt.Fprintf(&b, "src %s ", t.Src)
	}
	if t.Dst.IsValid() {
		fmt.Fprintf(&b, "dst %s ", t.Dst)
	}
	fmt.Fprintf(&b, "proto %s ", t.Proto)
	if t.SPI != 0 {
		fmt.Fprintf(&b, "spi 0x%08x ", uint32(t.SPI))
	}
	fmt.Fprintf(&b, "reqid %d mode %s", t.ReqID, t.Mode)
	return b.String()
}
