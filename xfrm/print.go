package xfrm

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// PrintOptions control the output of WriteState and WritePolicy.
type PrintOptions struct {
	// Stats is ip's -s: decimal SPIs and reqids, lifetimes and counters.
	Stats bool
	// Keys prints key material (the bundles must have been listed with
	// keys); otherwise keys print as "<<Keys hidden>>" (ip's nokeys).
	Keys bool
	// Dev is the device named in "crypto offload parameters" (the secnic
	// host interface; default secnic0).
	Dev string
	// Loc is the time zone of lifetime timestamps (default time.Local,
	// as ip prints local time).
	Loc *time.Location
}

func (o PrintOptions) dev() string {
	if o.Dev == "" {
		return "secnic0"
	}
	return o.Dev
}

func (o PrintOptions) time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	loc := o.Loc
	if loc == nil {
		loc = time.Local
	}
	return t.In(loc).Format("2006-01-02 15:04:05")
}

func zeroAddr(v6 bool) string {
	if v6 {
		return "::"
	}
	return "0.0.0.0"
}

func (v StateView) v6() bool { return v.Bundle.Spec.Family == "ipv6" }

func addrOr(a netip.Addr, v6 bool) string {
	if a.IsValid() {
		return a.String()
	}
	return zeroAddr(v6)
}

// mask8 is iproute2's strxf_mask8: the bits of a byte, high first.
func mask8(b uint8) string { return fmt.Sprintf("%08b", b) }

// WriteState prints one state as `ip xfrm state` does. sel is the
// selector shown on its "sel" line: that of the policy the state serves
// (secnic keeps selectors in policies), or nil for the all-zero selector.
func WriteState(w io.Writer, v StateView, sel *Selector, o PrintOptions) {
	var b strings.Builder
	spec, s := v.Bundle.Spec, v.Spec
	v6 := v.v6()
	fmt.Fprintf(&b, "src %s dst %s\n", addrOr(v.Src(), v6), addrOr(v.Dst(), v6))
	if o.Stats {
		fmt.Fprintf(&b, "\tproto %s spi 0x%08x(%d) reqid %d(0x%08x) mode %s\n", v.Proto, uint32(s.SPI), uint32(s.SPI), v.ReqID, v.ReqID, v.Mode())
	} else {
		fmt.Fprintf(&b, "\tproto %s spi 0x%08x reqid %d mode %s\n", v.Proto, uint32(s.SPI), v.ReqID, v.Mode())
	}

	// Replay window and flags. As in Linux, windows over 32 packets and
	// ESN use the "esn" replay state, whose window is not in this line.
	window := v.SA.ReplayWindow
	esnState := spec.ESN || window > 32
	shown := window
	if esnState {
		shown = 0
	}
	fmt.Fprintf(&b, "\treplay-window %d ", shown)
	var flags uint8
	if spec.ESN {
		flags = 0x80
	}
	if o.Stats {
		b.WriteString("seq 0x00000000 ")
	}
	if o.Stats || flags != 0 {
		b.WriteString("flag ")
		if spec.ESN {
			b.WriteString("esn")
		}
	}
	if o.Stats {
		fmt.Fprintf(&b, " (0x%s)", mask8(flags))
	}
	b.WriteString("\n")

	// Algorithms: auth-trunc, then aead or enc, as ip orders them.
	if s.Auth != "" && s.Auth != "none" {
		name, bits := linuxAuth(s.Auth)
		fmt.Fprintf(&b, "\tauth-trunc %s %s %d\n", name, keyText(s.AuthKey, s.KeysRedacted, o), bits)
	}
	if s.Enc != "" {
		kind, name := linuxEnc(s.Enc)
		if kind == "aead" {
			icv := 16
			if s.ICVLen != 0 {
				icv = s.ICVLen
			}
			fmt.Fprintf(&b, "\taead %s %s %d\n", name, keyText(s.EncKey, s.KeysRedacted, o), icv*8)
		} else {
			fmt.Fprintf(&b, "\tenc %s %s\n", name, keyText(s.EncKey, s.KeysRedacted, o))
		}
	}
	if u := spec.UDPEncap; u != nil && v.Proto == "esp" && u.Type != saspec.EncapNone {
		fmt.Fprintf(&b, "\tencap type espinudp sport %d dport %d addr %s\n", u.SrcPort, u.DstPort, zeroAddr(v6))
	}

	// Replay state.
	seq := v.SA.Seq
	var in, out uint64
	if spec.Dir == "out" {
		out = seq
	} else {
		in = seq
	}
	if esnState {
		bmp := (window + 31) / 32
		fmt.Fprintf(&b, "\tanti-replay esn context:\n\t seq-hi 0x%x, seq 0x%x, oseq-hi 0x%x, oseq 0x%x\n", uint32(in>>32), uint32(in), uint32(out>>32), uint32(out))
		fmt.Fprintf(&b, "\t replay_window %d, bitmap-length %d", window, bmp)
		for j := 0; j < bmp; j++ {
			if j%8 == 0 {
				b.WriteString("\n\t ")
			}
			b.WriteString("00000000 ")
		}
		b.WriteString("\n")
	} else {
		fmt.Fprintf(&b, "\tanti-replay context: seq 0x%x, oseq 0x%x, bitmap 0x%08x\n", uint32(in), uint32(out), 0)
	}
	mode := "crypto"
	if spec.Offload == "packet" {
		mode = "packet"
	}
	fmt.Fprintf(&b, "\tcrypto offload parameters: dev %s dir %s mode %s\n", o.dev(), spec.Dir, mode)
	if spec.TFCPad != 0 {
		fmt.Fprintf(&b, "\ttfcpad %d\n", spec.TFCPad)
	}
	fmt.Fprintf(&b, "\tdir %s\n", spec.Dir)
	var zs Selector
	if sel == nil {
		sel = &zs
	}
	writeSelector(&b, "\tsel ", *sel, v6, o)

	if o.Stats {
		l := spec.Lifetime
		fmt.Fprintf(&b, "\tlifetime config:\n")
		fmt.Fprintf(&b, "\t  limit: soft %s(bytes), hard %s(bytes)\n", limit(l.Soft.Bytes), limit(l.Hard.Bytes))
		fmt.Fprintf(&b, "\t  limit: soft %s(packets), hard %s(packets)\n", limit(l.Soft.Packets), limit(l.Hard.Packets))
		fmt.Fprintf(&b, "\t  expire add: soft %d(sec), hard %d(sec)\n", l.Soft.Seconds, l.Hard.Seconds)
		fmt.Fprintf(&b, "\t  expire use: soft 0(sec), hard 0(sec)\n")
		fmt.Fprintf(&b, "\tlifetime current:\n")
		fmt.Fprintf(&b, "\t  %d(bytes), %d(packets)\n", v.SA.Counters.Bytes, v.SA.Counters.Packets)
		fmt.Fprintf(&b, "\t  add %s use %s\n", o.time(v.Bundle.Created), "-")
		fmt.Fprintf(&b, "\tstats:\n")
		d := v.SA.Counters.Drops
		fmt.Fprintf(&b, "\t  replay-window 0 replay %d failed %d\n", d["XfrmInStateSeqError"], d["XfrmInStateProtoError"])
	}
	io.WriteString(w, b.String())
}

func limit(n uint64) string {
	if n == 0 {
		return "(INF)"
	}
	return fmt.Sprint(n)
}

func keyText(k saspec.Key, redacted bool, o PrintOptions) string {
	if !o.Keys || redacted {
		return "<<Keys hidden>>"
	}
	if k.Len() == 0 {
		return ""
	}
	s := "0x" + hex.EncodeToString(k.Bytes())
	if o.Stats {
		s += fmt.Sprintf(" (%d bits)", k.Len()*8)
	}
	return s
}

// writeSelector prints a selector as xfrm_selector_print does, after
// prefix.
func writeSelector(b *strings.Builder, prefix string, s Selector, v6 bool, o PrintOptions) {
	if s.v6() {
		v6 = true
	}
	pfx := func(p netip.Prefix) string {
		if !p.IsValid() {
			return zeroAddr(v6) + "/0"
		}
		return fmt.Sprintf("%s/%d", p.Addr(), p.Bits())
	}
	fmt.Fprintf(b, "%ssrc %s dst %s ", prefix, pfx(s.Src), pfx(s.Dst))
	if s.Proto != 0 {
		fmt.Fprintf(b, "proto %s ", protoName(s.Proto))
	}
	switch s.Proto {
	case 1, 58:
		if s.SrcPort != 0 {
			fmt.Fprintf(b, "type %d ", s.SrcPort)
		}
		if s.DstPort != 0 {
			fmt.Fprintf(b, "code %d ", s.DstPort)
		}
	default:
		if s.SrcPort != 0 {
			fmt.Fprintf(b, "sport %d ", s.SrcPort)
		}
		if s.DstPort != 0 {
			fmt.Fprintf(b, "dport %d ", s.DstPort)
		}
	}
	if o.Stats {
		b.WriteString("uid 0")
	}
	b.WriteString("\n")
}

// WritePolicy prints one policy as `ip xfrm policy` does. states are the
// installed states (for the templates of linked bundles).
func WritePolicy(w io.Writer, p sadb.PolicyInfo, states []StateView, o PrintOptions) {
	var b strings.Builder
	sel := selectorOf(p.Spec)
	writeSelector(&b, "", sel, false, o)
	fmt.Fprintf(&b, "\tdir %s ", PolicyDir(p.Spec))
	switch {
	case p.Spec.Action == "discard":
		b.WriteString("action block ")
	case o.Stats:
		b.WriteString("action allow ")
	}
	if o.Stats {
		fmt.Fprintf(&b, "index %d ", p.ID)
	}
	fmt.Fprintf(&b, "priority %d ptype main ", p.Spec.Priority)
	if o.Stats {
		b.WriteString("share any flag  (0x00000000)")
	}
	b.WriteString("\n")
	if o.Stats {
		b.WriteString("\tlifetime config:\n")
		b.WriteString("\t  limit: soft (INF)(bytes), hard (INF)(bytes)\n")
		b.WriteString("\t  limit: soft (INF)(packets), hard (INF)(packets)\n")
		b.WriteString("\t  expire add: soft 0(sec), hard 0(sec)\n")
		b.WriteString("\t  expire use: soft 0(sec), hard 0(sec)\n")
		b.WriteString("\tlifetime current:\n")
		b.WriteString("\t  0(bytes), 0(packets)\n")
		fmt.Fprintf(&b, "\t  add %s use %s\n", o.time(p.Created), "-")
	}
	if p.Spec.Action == "protect" {
		byRef := map[saspec.Ref][]StateView{}
		for _, v := range states {
			byRef[v.Ref()] = append(byRef[v.Ref()], v)
		}
		for _, r := range p.Spec.Bundles {
			vs := byRef[r]
			if len(vs) == 0 {
				writeMissingTmpl(&b, r, sel.v6(), o)
				continue
			}
			for _, v := range vs {
				writeTmpl(&b, addrOr(v.Src(), v.v6()), addrOr(v.Dst(), v.v6()), v.Proto, 0, v.ReqID, v.Mode(), o)
			}
		}
	}
	io.WriteString(w, b.String())
}

func writeTmpl(b *strings.Builder, src, dst, proto string, spi saspec.SPI, reqid uint32, mode string, o PrintOptions) {
	fmt.Fprintf(b, "\ttmpl src %s dst %s\n", src, dst)
	b.WriteString("\t\tproto " + proto + " ")
	switch {
	case o.Stats:
		fmt.Fprintf(b, "spi 0x%08x(%d) ", uint32(spi), uint32(spi))
	case spi != 0:
		fmt.Fprintf(b, "spi 0x%08x ", uint32(spi))
	}
	if o.Stats {
		fmt.Fprintf(b, "reqid %d(0x%08x) mode %s\n", reqid, reqid, mode)
		b.WriteString("\t\tlevel required share any \n")
		b.WriteString("\t\tenc-mask ffffffff auth-mask ffffffff comp-mask ffffffff\n")
		return
	}
	fmt.Fprintf(b, "reqid %d mode %s\n", reqid, mode)
}

// writeMissingTmpl prints the template of a linked bundle that does not
// exist (yet): what its name says.
func writeMissingTmpl(b *strings.Builder, r saspec.Ref, v6 bool, o PrintOptions) {
	n, ok := ParseStateName(string(r))
	if !ok {
		return
	}
	writeTmpl(b, zeroAddr(v6), zeroAddr(v6), n.Proto, n.SPI, n.ReqID, "transport", o)
}

// SelectorFor returns the selector shown on a state's "sel" line: that of
// the first policy linking the state's bundle, or nil.
func SelectorFor(v StateView, policies []sadb.PolicyInfo) *Selector {
	for _, p := range policies {
		for _, h := range p.Bundles {
			if h == v.Bundle.Handle {
				s := selectorOf(p.Spec)
				return &s
			}
		}
	}
	return nil
}

// WriteCount prints `ip xfrm state count`.
func WriteCount(w io.Writer, states []StateView) {
	fmt.Fprintf(w, "\t SAD count %d\n", len(states))
}

// WritePolicyCount prints `ip xfrm policy count`.
func WritePolicyCount(w io.Writer, policies []sadb.PolicyInfo) {
	var in, out, fwd int
	for _, p := range policies {
		switch PolicyDir(p.Spec) {
		case "in":
			in++
		case "out":
			out++
		case "fwd":
			fwd++
		}
	}
	fmt.Fprintf(w, "\t SPD IN  %d OUT %d FWD %d\n", in, out, fwd)
}
