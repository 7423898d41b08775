package xfrm

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/secnic/secnic/saspec"
)

// Options are what a state needs beyond its words.
type Options struct {
	// Local reports whether an address belongs to this host; it decides
	// the direction of a state given neither "dir" nor "offload ... dir".
	// Nil knows no local address.
	Local func(netip.Addr) bool
	// AllowLegacy permits DES, 3DES and HMAC-MD5 (secnic's allow_legacy;
	// the offload configuration must allow them too).
	AllowLegacy bool
}

// State is a parsed "ip xfrm state add|update" command.
type State struct {
	// Bundle is the bundle secnic installs for the state: one SA, named
	// by StateName.
	Bundle saspec.BundleSpec
	// ReqID is the state's reqid (also in the bundle's name).
	ReqID uint32
	// Sel is the state's selector, if one was given (secnic selects
	// traffic with policies; see docs/xfrm.md).
	Sel *Selector
	// Dev is the device named by "offload ... dev", if any.
	Dev string
}

// ID is an XFRM state ID: ID := [ src ADDR ] [ dst ADDR ] [ proto
// XFRM-PROTO ] [ spi SPI ]. For filters the addresses may be prefixes.
type ID struct {
	Src, Dst netip.Prefix
	Proto    string // "esp", "ah" or "" (any)
	SPI      saspec.SPI
	HasSPI   bool
}

func parseXfrmProto(v string) (string, error) {
	switch v {
	case "esp", "ah":
		return v, nil
	case "comp":
		return "", unsupported("proto comp", "IPComp is not offloaded by secnic: use proto esp or ah")
	case "route2", "hao":
		return "", unsupported("proto "+v, "Mobile IPv6 states are not supported: use proto esp or ah")
	case "ipsec-any":
		return "", unsupported("proto ipsec-any", "give proto esp or ah")
	}
	return "", fmt.Errorf("%q is not an XFRM-PROTO: give esp or ah", v)
}

// parseIDWord reads one ID word (the keyword already consumed).
func parseIDWord(id *ID, kw string, a *args) error {
	v, err := a.value(kw, "a value")
	if err != nil {
		return err
	}
	switch kw {
	case "src", "dst":
		p, err := parseAddrPrefix(kw, v)
		if err != nil {
			return err
		}
		if kw == "src" {
			id.Src = p
		} else {
			id.Dst = p
		}
	case "proto":
		if id.Proto, err = parseXfrmProto(v); err != nil {
			return err
		}
	case "spi":
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			return fmt.Errorf("spi %q is not a 32-bit number: write it in decimal or as 0x-prefixed hex", v)
		}
		id.SPI, id.HasSPI = saspec.SPI(n), true
	}
	return nil
}

func parseMode(v string) (string, error) {
	switch {
	case v != "" && strings.HasPrefix("transport", v):
		return "transport", nil
	case v != "" && strings.HasPrefix("tunnel", v):
		return "tunnel", nil
	case v != "" && strings.HasPrefix("beet", v):
		return "", unsupported("mode beet", "BEET mode is not offloaded: use mode transport or tunnel")
	case v == "ro" || v == "in_trigger":
		return "", unsupported("mode "+v, "Mobile IPv6 modes are not supported: use mode transport or tunnel")
	}
	return "", fmt.Errorf("mode %q is not a mode: give transport or tunnel", v)
}

func parseU32(kw, v string) (uint32, error) {
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a 32-bit number", kw, v)
	}
	return uint32(n), nil
}

func parseU64(kw, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number", kw, v)
	}
	return n, nil
}

// stateUnsupported are words of "ip xfrm state add" secnic refuses, and why.
var stateUnsupported = map[string]string{
	"mark":        "XFRM marks select states by skb mark, which a NIC does not see: leave mark out",
	"output-mark": "a NIC does not set skb marks: leave output-mark out",
	"if_id":       "XFRM interfaces are not supported: leave if_id out and route the traffic to the secnic device",
	"ctx":         "security contexts are not supported: leave ctx out",
	"coa":         "care-of addresses (Mobile IPv6) are not supported",
	"extra-flag":  "extra flags (dont-encap-dscp, oseq-may-wrap) are not supported: leave them out",
	"seq":         "the netlink sequence of an ACQUIRE does not apply to secnic: leave seq out",
	"pcpu-num":    "per-CPU states are not supported: leave pcpu-num out",
	"comp":        "IPComp is not supported: leave comp out",
}

// ParseState reads the words after "ip xfrm state add" (or update):
//
//	ID [ ALGO-LIST ] [ mode MODE ] [ reqid REQID ] [ dir DIR ]
//	[ replay-window SIZE ] [ replay-seq-hi SEQ ] [ replay-oseq-hi SEQ ]
//	[ flag esn ] [ sel SELECTOR ] [ LIMIT-LIST ] [ encap espinudp SPORT DPORT OADDR ]
//	[ offload [ crypto | packet ] dev DEV dir DIR ] [ tfcpad LENGTH ]
//
// and returns the bundle secnic installs for it.
func ParseState(words []string, o Options) (State, error) {
	a := &args{w: words}
	var (
		st                State
		id                ID
		mode              = "transport"
		dir, offDir       string
		packet, crypto    bool
		window            *int
		seqHigh           uint32
		esn               bool
		lt                saspec.LifetimeSpec
		encap             *saspec.UDPEncapSpec
		tfcpad            int
		aead, enc, auth   string // secnic names
		encKey, authKey   []byte
		icvBits           int
		aeadWord, encWord string
		authWord          string
		legacy            bool
		seen              = map[string]bool{}
	)
	once := func(kw string) error {
		if seen[kw] {
			return fmt.Errorf("%q is given twice", kw)
		}
		seen[kw] = true
		return nil
	}
	for a.more() {
		kw := a.next()
		if why, ok := stateUnsupported[kw]; ok {
			return st, unsupported(kw, why)
		}
		switch kw {
		case "src", "dst", "proto", "spi":
			if err := once(kw); err != nil {
				return st, err
			}
			if err := parseIDWord(&id, kw, a); err != nil {
				return st, err
			}
		case "mode":
			v, err := a.value(kw, "transport or tunnel")
			if err != nil {
				return st, err
			}
			if mode, err = parseMode(v); err != nil {
				return st, err
			}
		case "reqid":
			v, err := a.value(kw, "a number")
			if err != nil {
				return st, err
			}
			if st.ReqID, err = parseU32(kw, v); err != nil {
				return st, err
			}
		case "dir":
			v, err := a.value(kw, "in or out")
			if err != nil {
				return st, err
			}
			if v != "in" && v != "out" {
				return st, fmt.Errorf("dir %q is not \"in\" or \"out\"", v)
			}
			dir = v
		case "replay-window":
			v, err := a.value(kw, "a size")
			if err != nil {
				return st, err
			}
			n, err := parseU32(kw, v)
			if err != nil {
				return st, err
			}
			w := int(n)
			window = &w
		case "replay-seq", "replay-oseq":
			v, err := a.value(kw, "a sequence number")
			if err != nil {
				return st, err
			}
			if n, err := parseU32(kw, v); err != nil || n != 0 {
				return st, unsupported(kw, "secnic starts the low 32 bits of the sequence number at 0 (the high bits can be set with "+kw+"-hi and flag esn)")
			}
		case "replay-seq-hi", "replay-oseq-hi":
			v, err := a.value(kw, "a sequence number")
			if err != nil {
				return st, err
			}
			if seqHigh, err = parseU32(kw, v); err != nil {
				return st, err
			}
		case "flag":
			if !a.more() {
				return st, fmt.Errorf("%q needs a flag after it", kw)
			}
			for a.more() {
				f := a.peek()
				if strings.HasPrefix(f, "0x") {
					a.next()
					n, err := strconv.ParseUint(f, 0, 8)
					if err != nil {
						return st, fmt.Errorf("flag %q is not a flag value", f)
					}
					if n&^0x80 != 0 {
						return st, unsupported(fmt.Sprintf("flag 0x%x", n), "secnic supports only esn (0x80)")
					}
					esn = esn || n&0x80 != 0
					continue
				}
				switch f {
				case "esn":
					esn = true
				case "noecn", "decap-dscp", "nopmtudisc", "wildrecv", "icmp", "af-unspec", "align4":
					return st, unsupported("flag "+f, "secnic supports only flag esn")
				default:
					f = ""
				}
				if f == "" {
					break
				}
				a.next()
			}
		case "sel":
			if err := once(kw); err != nil {
				return st, err
			}
			s, err := parseSelector(a, "sel")
			if err != nil {
				return st, err
			}
			st.Sel = &s
		case "limit":
			v, err := a.value(kw, "a limit (byte-soft, byte-hard, packet-soft, packet-hard, time-soft, time-hard)")
			if err != nil {
				return st, err
			}
			n, err := a.value(v, "a number")
			if err != nil {
				return st, err
			}
			val, err := parseU64(v, n)
			if err != nil {
				return st, err
			}
			switch v {
			case "byte-soft":
				lt.Soft.Bytes = val
			case "byte-hard":
				lt.Hard.Bytes = val
			case "packet-soft":
				lt.Soft.Packets = val
			case "packet-hard":
				lt.Hard.Packets = val
			case "time-soft":
				lt.Soft.Seconds = val
			case "time-hard":
				lt.Hard.Seconds = val
			case "time-use-soft", "time-use-hard":
				return st, unsupported("limit "+v, "secnic's time limits count from when the SA was added: use time-soft or time-hard")
			default:
				return st, fmt.Errorf("limit %q is not a limit: give byte-soft, byte-hard, packet-soft, packet-hard, time-soft or time-hard", v)
			}
		case "encap":
			if err := once(kw); err != nil {
				return st, err
			}
			t, err := a.value(kw, "espinudp SPORT DPORT OADDR")
			if err != nil {
				return st, err
			}
			switch t {
			case "espinudp":
			case "espinudp-nonike", "espintcp":
				return st, unsupported("encap "+t, "secnic supports RFC 3948 encapsulation only: use encap espinudp SPORT DPORT OADDR")
			default:
				return st, fmt.Errorf("encap type %q is invalid: give espinudp", t)
			}
			var ports [2]uint16
			for i, what := range []string{"SPORT", "DPORT"} {
				v, err := a.value("encap", what)
				if err != nil {
					return st, err
				}
				n, err := strconv.ParseUint(v, 0, 16)
				if err != nil || n == 0 {
					return st, fmt.Errorf("encap %s %q is not a port number (1-65535)", what, v)
				}
				ports[i] = uint16(n)
			}
			oa, err := a.value("encap", "OADDR (the original address, e.g. 0.0.0.0)")
			if err != nil {
				return st, err
			}
			if _, err := netip.ParseAddr(oa); err != nil {
				return st, fmt.Errorf("encap OADDR %q is not an address", oa)
			}
			encap = &saspec.UDPEncapSpec{SrcPort: ports[0], DstPort: ports[1]}
		case "offload":
			if err := once(kw); err != nil {
				return st, err
			}
			v, err := a.value(kw, "[crypto|packet] dev DEV dir DIR")
			if err != nil {
				return st, err
			}
			switch v {
			case "crypto":
				crypto = true
				v, err = a.value("offload crypto", "dev DEV")
			case "packet":
				packet = true
				v, err = a.value("offload packet", "dev DEV")
			}
			if err != nil {
				return st, err
			}
			if v != "dev" {
				return st, fmt.Errorf("offload: %q where dev was expected: write offload [crypto|packet] dev DEV dir in|out", v)
			}
			if st.Dev, err = a.value("dev", "a device name"); err != nil {
				return st, err
			}
			if v, err = a.value("offload", "dir in|out"); err != nil {
				return st, err
			}
			if v != "dir" {
				return st, fmt.Errorf("offload: %q where dir was expected: write offload [crypto|packet] dev DEV dir in|out", v)
			}
			if offDir, err = a.value("dir", "in or out"); err != nil {
				return st, err
			}
			if offDir != "in" && offDir != "out" {
				return st, fmt.Errorf("offload dir %q is not \"in\" or \"out\"", offDir)
			}
		case "tfcpad":
			v, err := a.value(kw, "a length")
			if err != nil {
				return st, err
			}
			n, err := parseU32(kw, v)
			if err != nil {
				return st, err
			}
			if n > 65535 {
				return st, fmt.Errorf("tfcpad %d is out of range: give 0 to 65535 bytes", n)
			}
			tfcpad = int(n)
		case "aead", "enc", "auth", "auth-trunc":
			switch {
			case kw == "aead" && (aeadWord != "" || encWord != "" || authWord != ""),
				kw == "enc" && (encWord != "" || aeadWord != ""),
				(kw == "auth" || kw == "auth-trunc") && (authWord != "" || aeadWord != ""):
				return st, fmt.Errorf("%q conflicts with an algorithm given before: give aead alone, or enc with auth or auth-trunc", kw)
			}
			name, err := a.value(kw, "ALGO-NAME")
			if err != nil {
				return st, err
			}
			keyText, err := a.value(kw+" "+name, "ALGO-KEYMAT")
			if err != nil {
				return st, err
			}
			key, err := parseKeymat(kw, keyText)
			if err != nil {
				return st, err
			}
			bits := 0
			if kw == "aead" || kw == "auth-trunc" {
				what := "ALGO-ICV-LEN"
				if kw == "auth-trunc" {
					what = "ALGO-TRUNC-LEN"
				}
				v, err := a.value(kw+" "+name, what)
				if err != nil {
					return st, err
				}
				n, err := parseU32(what, v)
				if err != nil {
					return st, err
				}
				if n == 0 {
					return st, fmt.Errorf("%s %s: %s 0 is invalid", kw, name, what)
				}
				bits = int(n)
			}
			var lg bool
			switch kw {
			case "aead":
				aeadWord = name
				if aead, lg, err = lookupAEAD(name, len(key)); err != nil {
					return st, err
				}
				encKey, icvBits = key, bits
			case "enc":
				encWord = name
				if enc, lg, err = lookupEnc(name, len(key)); err != nil {
					return st, err
				}
				encKey = key
			default:
				authWord = name
				if auth, lg, err = lookupAuth(kw, name, bits); err != nil {
					return st, err
				}
				authKey = key
			}
			legacy = legacy || lg
		default:
			return st, fmt.Errorf("%q is not a word of ip xfrm state add: see ip-xfrm(8) and docs/xfrm.md for what secnic supports", kw)
		}
	}

	// The ID.
	if id.Proto == "" {
		return st, fmt.Errorf("proto is missing: give proto esp or proto ah")
	}
	if !id.Dst.IsValid() || id.Dst.Bits() != id.Dst.Addr().BitLen() {
		return st, fmt.Errorf("dst is missing or is a prefix: give the destination address of the state (dst ADDR)")
	}
	if id.Src.IsValid() && id.Src.Bits() != id.Src.Addr().BitLen() {
		return st, fmt.Errorf("src %s is a prefix: give the source address of the state", id.Src)
	}
	if !id.HasSPI {
		return st, fmt.Errorf("spi is missing: give spi SPI (secnic does not allocate SPIs; ip xfrm state allocspi is not supported)")
	}
	if id.Src.IsValid() && id.Src.Addr().Is4() != id.Dst.Addr().Is4() {
		return st, fmt.Errorf("src %s and dst %s are of different families", id.Src.Addr(), id.Dst.Addr())
	}
	dst := id.Dst.Addr()
	var src netip.Addr
	if id.Src.IsValid() {
		src = id.Src.Addr()
	}

	// The direction.
	if dir != "" && offDir != "" && dir != offDir {
		return st, fmt.Errorf("dir %s and offload dir %s disagree: give one direction", dir, offDir)
	}
	if dir == "" {
		dir = offDir
	}
	if dir == "" && o.Local != nil {
		dl, sl := o.Local(dst), src.IsValid() && o.Local(src)
		switch {
		case dl && !sl:
			dir = "in"
		case sl && !dl:
			dir = "out"
		}
	}
	if dir == "" {
		return st, fmt.Errorf("cannot tell whether the state to %s is inbound or outbound: add \"dir in\" or \"dir out\" (ip-xfrm(8), Linux 6.10), or \"offload dev DEV dir in|out\", or run on the host that owns src or dst (or give --local ADDR)", dst)
	}

	// Algorithms.
	b := saspec.BundleSpec{
		Name: StateName(dir, id.Proto, id.SPI, dst, st.ReqID),
		Dir:  dir, Mode: mode, ESN: esn, SeqHigh: seqHigh,
		UDPEncap: encap, TFCPad: tfcpad, Lifetime: lt,
	}
	if src.IsValid() {
		b.Src = src.String()
	}
	b.Dst = dst.String()
	switch {
	case packet:
		b.Offload = "packet"
	case crypto:
		b.Offload = "crypto"
	}
	if legacy {
		if !o.AllowLegacy {
			return st, fmt.Errorf("DES, 3DES and HMAC-MD5 are legacy algorithms (RFC 8221): secnic refuses them unless asked; add --allow-legacy")
		}
		b.AllowLegacy = true
	}
	if esn && dir == "in" && window == nil {
		return st, fmt.Errorf("flag esn on an inbound state needs replay-window SIZE (ip refuses it too: \"esn flag set without replay-window\")")
	}
	if seqHigh != 0 && !esn {
		return st, fmt.Errorf("replay-seq-hi and replay-oseq-hi need flag esn")
	}
	// Linux's default replay window is 0 (no anti-replay), and outbound
	// states ignore it.
	if dir == "in" {
		w := 0
		if window != nil {
			w = *window
		}
		b.ReplayWindow = &w
	}
	s := &saspec.SASpec{SPI: id.SPI}
	switch id.Proto {
	case "esp":
		switch {
		case aeadWord != "":
			s.Enc, s.Auth, s.EncKey = aead, "none", saspec.KeyOf(encKey)
			if strings.HasPrefix(aead, "aes-gcm-") {
				switch icvBits {
				case 64, 96, 128:
					s.ICVLen = icvBits / 8
				default:
					return st, fmt.Errorf("aead %s: an ICV of %d bits is not supported: give 64, 96 or 128", aeadWord, icvBits)
				}
			} else if icvBits != 128 {
				return st, fmt.Errorf("aead %s: an ICV of %d bits is not supported: give 128", aeadWord, icvBits)
			}
		case encWord != "":
			if authWord == "" && enc != "null" {
				return st, fmt.Errorf("enc %s without auth or auth-trunc: ESP without integrity is refused by secnic (NDIS, RFC 4303); add auth-trunc 'hmac(sha256)' KEY 128", encWord)
			}
			s.Enc, s.EncKey = enc, saspec.KeyOf(encKey)
			if authWord != "" {
				s.Auth, s.AuthKey = auth, saspec.KeyOf(authKey)
			} else {
				return st, fmt.Errorf("enc %s without auth or auth-trunc: ESP without integrity is refused by secnic; add auth-trunc 'hmac(sha256)' KEY 128", encWord)
			}
		default:
			return st, fmt.Errorf("proto esp needs aead, or enc with auth or auth-trunc")
		}
		b.ESP = s
	case "ah":
		if aeadWord != "" || encWord != "" {
			return st, fmt.Errorf("proto ah takes no aead or enc: AH only authenticates; give auth-trunc ALGO KEY BITS")
		}
		if authWord == "" {
			return st, fmt.Errorf("proto ah needs auth or auth-trunc, e.g. auth-trunc 'hmac(sha256)' KEY 128")
		}
		if encap != nil {
			return st, fmt.Errorf("encap needs proto esp: AH cannot be UDP-encapsulated (RFC 3948)")
		}
		s.Auth, s.AuthKey = auth, saspec.KeyOf(authKey)
		b.AH = s
	}
	clear(encKey)
	clear(authKey)
	st.Bundle = b
	if st.Sel != nil && (st.Sel.Src.IsValid() && st.Sel.Src.Addr().Is4() != dst.Is4() && mode == "transport") {
		return st, fmt.Errorf("sel src %s is of another family than the transport-mode state to %s", st.Sel.Src, dst)
	}
	return st, nil
}

// ParseID reads the words of "ip xfrm state get|delete": ID [ mark ... ]
// (mark is refused). All of dst, proto and spi are needed.
func ParseID(words []string) (ID, error) {
	id, err := parseStateFilter(words, false)
	if err != nil {
		return ID{}, err
	}
	if !id.Dst.IsValid() || id.Proto == "" || !id.HasSPI {
		return ID{}, fmt.Errorf("a state ID needs dst ADDR, proto esp|ah and spi SPI")
	}
	return id.ID, nil
}

// StateFilter selects states for list, deleteall and flush.
type StateFilter struct {
	ID
	Mode     string
	ReqID    uint32
	HasReqID bool
	// NoKeys is the "nokeys" word of ip xfrm state list.
	NoKeys bool
}

// ParseStateFilter reads the words of "ip xfrm state list|deleteall":
// [ nokeys ] [ ID ] [ mode MODE ] [ reqid REQID ].
func ParseStateFilter(words []string) (StateFilter, error) { return parseStateFilter(words, true) }

func parseStateFilter(words []string, filter bool) (StateFilter, error) {
	a := &args{w: words}
	var f StateFilter
	for a.more() {
		kw := a.next()
		switch kw {
		case "src", "dst", "proto", "spi":
			if err := parseIDWord(&f.ID, kw, a); err != nil {
				return f, err
			}
		case "mode", "reqid", "nokeys":
			if !filter {
				return f, fmt.Errorf("%q is not part of a state ID: give dst ADDR proto esp|ah spi SPI", kw)
			}
			if kw == "nokeys" {
				f.NoKeys = true
				continue
			}
			v, err := a.value(kw, "a value")
			if err != nil {
				return f, err
			}
			if kw == "mode" {
				if f.Mode, err = parseMode(v); err != nil {
					return f, err
				}
			} else {
				if f.ReqID, err = parseU32(kw, v); err != nil {
					return f, err
				}
				f.HasReqID = true
			}
		case "mark":
			return f, unsupported(kw, stateUnsupported[kw])
		case "flag":
			return f, unsupported("flag", "secnic filters states by ID, mode and reqid")
		default:
			return f, fmt.Errorf("%q is not a word of a state filter: give src, dst, proto, spi, mode, reqid or nokeys", kw)
		}
	}
	return f, nil
}
