// Package hoststack plays the host IP stack of a crypto-offload NIC over
// the driver interface (package driver), as an NDIS TCP/IP stack drives an
// IPsecOV2 NIC and as Linux drives an XFRM_DEV_OFFLOAD_CRYPTO device: it
// builds the ESP and AH headers, the padding and the trailer, leaves room
// for the IV and the ICV, assigns sequence numbers and passes the handles
// and header offsets with each packet; on receive it reads the NIC's
// flags and status, does anti-replay, strips the headers and trailers the
// NIC left in place and checks the inbound policy.
//
// It knows the SAs by the handles the control plane got when it added the
// bundles to the NIC (the control API, or sadb.Table.Add); it never holds
// keys. It is for tests and stack simulations, not for speed: it
// allocates per packet.
//
// UDP encapsulation, IPv4 options and IPv6 extension headers are not
// built.
package hoststack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// SAConfig describes one SA of a bundle as the stack needs it: the SPI and
// the algorithms (for the IV, ICV and block lengths), never the keys.
type SAConfig struct {
	SPI uint32
	// Enc is the ESP transform ("aes-gcm-128", "aes-cbc-256", ...); empty
	// for AH.
	Enc string
	// Auth is the integrity transform ("hmac-sha256-128", ...; "none" or
	// empty with a combined-mode Enc).
	Auth string
	// ICVLen is the AES-GCM ICV length (0 means 16).
	ICVLen int
	// FirstSeq is the first outbound sequence number (0 means 1).
	FirstSeq uint64
}

// BundleConfig describes a bundle the control plane added to the NIC.
type BundleConfig struct {
	// Handle is the NIC's handle of the bundle (from SA add).
	Handle uint64
	// In: an inbound bundle; else outbound.
	In bool
	// Tunnel: tunnel mode, with Src and Dst the tunnel endpoints; else
	// transport mode.
	Tunnel   bool
	Src, Dst netip.Addr
	// ESN: 64-bit sequence numbers.
	ESN bool
	// ReplayWindow is the inbound anti-replay window (0 means 64; negative
	// disables anti-replay).
	ReplayWindow int
	ESP, AH      *SAConfig
}

// Bundle is a bundle the stack uses.
type Bundle struct {
	BundleConfig
	esp, ah *stackSA
}

type stackSA struct {
	cfg    SAConfig
	ah     bool
	iv     int
	icv    int
	align  int
	seq    uint64 // last sent
	replay sa.ReplayWindow
}

// Handle returns the bundle's NIC handle.
func (b *Bundle) Handle() uint64 { return b.BundleConfig.Handle }

// LastSeq returns the last sequence number sent on the bundle's ESP SA
// (or its AH SA for an AH-only bundle).
func (b *Bundle) LastSeq() uint64 {
	if b.esp != nil {
		return b.esp.seq
	}
	return b.ah.seq
}

// Action is a policy action.
type Action uint8

// Policy actions.
const (
	Bypass Action = iota
	Discard
	Protect
)

// Policy is a stack-side policy: traffic between Src and Dst (and of
// Proto, if not 0) is bypassed, discarded or protected. Outbound, Protect
// applies Bundles: one bundle, or for transport over tunnel the transport
// bundle then the tunnel bundle. Inbound, Protect requires exactly the
// bundles listed (in either order) to have been removed.
type Policy struct {
	In       bool
	Src, Dst netip.Prefix
	Proto    uint8
	Action   Action
	Bundles  []*Bundle
}

func (p *Policy) match(f sa.Flow) bool {
	return p.Src.Contains(f.Src) && p.Dst.Contains(f.Dst) && (p.Proto == 0 || p.Proto == f.Proto)
}

// Conn is the stack's side of the driver socket; *driver.Conn implements it.
type Conn interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	Encoding() driver.Encoding
}

// Stats counts what the stack did.
type Stats struct {
	Sent, Received, Delivered uint64
	// Dropped counts received packets dropped, by reason.
	Dropped map[string]uint64
}

// Stack is a simulated host stack. Its methods are safe for concurrent use.
type Stack struct {
	conn Conn

	mu       sync.Mutex
	out      []*Bundle
	in       map[inKey]*Bundle
	policies []Policy
	stats    Stats
	// OnDeleteRequest, if set, is called for every received packet with
	// SaDeleteReq, with the inbound bundle it arrived on: the stack should
	// delete it and its outbound partner (NDIS: DELETE_SA twice).
	OnDeleteRequest func(in *Bundle)
}

type inKey struct {
	ah  bool
	spi uint32
}

// New returns a stack talking over conn.
func New(conn Conn) *Stack {
	return &Stack{conn: conn, in: map[inKey]*Bundle{}, stats: Stats{Dropped: map[string]uint64{}}}
}

// AddBundle makes a bundle known to the stack.
func (s *Stack) AddBundle(c BundleConfig) (*Bundle, error) {
	if c.Handle == 0 {
		return nil, errors.New("hoststack: a bundle needs the NIC's handle (from SA add)")
	}
	if c.ESP == nil && c.AH == nil {
		return nil, errors.New("hoststack: a bundle needs ESP, AH or both")
	}
	if c.Tunnel && (!c.Src.IsValid() || !c.Dst.IsValid() || c.Src.Is4() != c.Dst.Is4()) {
		return nil, errors.New("hoststack: a tunnel bundle needs Src and Dst of one family")
	}
	b := &Bundle{BundleConfig: c}
	var err error
	if c.ESP != nil {
		if b.esp, err = newSA(*c.ESP, false, c); err != nil {
			return nil, err
		}
	}
	if c.AH != nil {
		if b.ah, err = newSA(*c.AH, true, c); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.In {
		for _, k := range b.keys() {
			if _, dup := s.in[k]; dup {
				return nil, fmt.Errorf("hoststack: inbound SPI %#x is used already", k.spi)
			}
		}
		for _, k := range b.keys() {
			s.in[k] = b
		}
	} else {
		s.out = append(s.out, b)
	}
	return b, nil
}

func (b *Bundle) keys() []inKey {
	var ks []inKey
	if b.esp != nil {
		ks = append(ks, inKey{false, b.esp.cfg.SPI})
	}
	if b.ah != nil {
		ks = append(ks, inKey{true, b.ah.cfg.SPI})
	}
	return ks
}

func newSA(c SAConfig, isAH bool, bc BundleConfig) (*stackSA, error) {
	x := &stackSA{cfg: c, ah: isAH, seq: c.FirstSeq}
	if x.seq > 0 {
		x.seq--
	}
	auth := suite.Auth(c.Auth)
	if c.Auth == "" {
		auth = suite.AuthNone
	}
	if isAH {
		ai, err := suite.LookupAuth(auth)
		if err != nil {
			return nil, fmt.Errorf("hoststack: AH: %w", err)
		}
		x.icv = ai.ICVLen
		if strings.HasPrefix(c.Auth, "aes-gmac") {
			x.iv = 8
		}
	} else {
		ei, err := suite.LookupEnc(suite.Enc(c.Enc))
		if err != nil {
			return nil, fmt.Errorf("hoststack: ESP: %w", err)
		}
		x.iv, x.align = ei.IVLen, max(4, ei.Block)
		if ei.Combined {
			x.icv = 16
			if c.ICVLen != 0 {
				x.icv = c.ICVLen
			}
		} else {
			ai, err := suite.LookupAuth(auth)
			if err != nil {
				return nil, fmt.Errorf("hoststack: ESP: %w", err)
			}
			x.icv = ai.ICVLen
		}
	}
	if bc.In {
		w := bc.ReplayWindow
		if w == 0 {
			w = 64
		}
		if w < 0 {
			w = 0
		}
		if err := x.replay.Init(w); err != nil {
			return nil, fmt.Errorf("hoststack: replay window: %w", err)
		}
	}
	return x, nil
}

// ahLen is the AH header length in front of which sits an IPv6 (v6) or
// IPv4 header.
func (x *stackSA) ahLen(v6 bool) int {
	n := 12 + x.iv + x.icv
	if v6 {
		return (n + 7) &^ 7
	}
	return (n + 3) &^ 3
}

// AddPolicy adds a policy; the first matching one applies.
func (s *Stack) AddPolicy(p Policy) {
	s.mu.Lock()
	s.policies = append(s.policies, p)
	s.mu.Unlock()
}

// Stats returns a copy of the counters.
func (s *Stack) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Dropped = map[string]uint64{}
	for k, v := range s.stats.Dropped {
		st.Dropped[k] = v
	}
	return st
}

func (s *Stack) lookup(in bool, f sa.Flow) *Policy {
	for i := range s.policies {
		if p := &s.policies[i]; p.In == in && p.match(f) {
			return p
		}
	}
	return nil
}

// ErrDiscard is returned for a packet an outbound policy discards.
var ErrDiscard = errors.New("hoststack: discarded by policy")

// Build turns the IP datagram pkt into a transmit message as the outbound
// policy says: bypass (handle 0), discard (ErrDiscard) or protect with its
// bundles. With mss > 0 the datagram (TCP) is sent for LSO: the NIC
// segments it and adds each segment's trailer.
func (s *Stack) Build(pkt []byte, mss int) ([]byte, error) {
	f, ok := sa.FlowOf(pkt)
	if !ok {
		return nil, errors.New("hoststack: not a valid IP datagram")
	}
	s.mu.Lock()
	p := s.lookup(false, f)
	s.mu.Unlock()
	if p == nil || p.Action == Bypass {
		return s.BuildWith(pkt, nil, nil, 0)
	}
	if p.Action == Discard {
		return nil, ErrDiscard
	}
	switch len(p.Bundles) {
	case 1:
		return s.BuildWith(pkt, p.Bundles[0], nil, mss)
	case 2:
		return s.BuildWith(pkt, p.Bundles[0], p.Bundles[1], mss)
	}
	return nil, errors.New("hoststack: a protect policy needs one bundle, or a transport bundle and a tunnel bundle")
}

// BuildWith builds a transmit message for pkt protected by bundle b (nil:
// unprotected) and, for transport over tunnel, then by the tunnel bundle
// tun. mss > 0 asks the NIC for LSO (ESP-only bundles, TCP).
func (s *Stack) BuildWith(pkt []byte, b, tun *Bundle, mss int) ([]byte, error) {
	var info driver.TxInfo
	d := append([]byte(nil), pkt...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b != nil {
		if b.In {
			return nil, errors.New("hoststack: an inbound bundle cannot send")
		}
		if tun != nil && b.Tunnel {
			return nil, errors.New("hoststack: transport over tunnel needs a transport bundle first")
		}
		var err error
		if d, err = apply(d, b, &info, mss > 0 && tun == nil, mss); err != nil {
			return nil, err
		}
		info.OffloadHandle = b.Handle()
	}
	if tun != nil {
		if !tun.Tunnel || tun.In {
			return nil, errors.New("hoststack: the second bundle must be an outbound tunnel bundle")
		}
		if mss > 0 {
			return nil, errors.New("hoststack: LSO of transport over tunnel is not offered")
		}
		var err error
		if d, err = apply(d, tun, &info, false, 0); err != nil {
			return nil, err
		}
		info.TunnelHandle = tun.Handle()
	}
	info.MSS = uint16(mss)
	msg := make([]byte, driver.TransmitLen+len(d))
	driver.Transmit(msg).Encode(info)
	copy(msg[driver.TransmitLen:], d)
	return msg, nil
}

// apply wraps datagram d in bundle b (ESP, then AH) and records the
// header info of b in info (the last bundle applied is the outer one, so
// its info stays). With lso the ESP trailer is left to the NIC and the
// sequence number advances by the number of segments.
func apply(d []byte, b *Bundle, info *driver.TxInfo, lso bool, mss int) ([]byte, error) {
	sp, err := packet.SplitIP(d)
	if err != nil || sp.Len != len(d) || sp.Fragment {
		return nil, errors.New("hoststack: not a whole IP datagram")
	}
	if lso && (b.ah != nil || b.esp == nil) {
		return nil, errors.New("hoststack: LSO needs an ESP-only bundle")
	}
	v6 := packet.Version(d) == 6
	var hdr []byte // the IP header in front of IPsec
	var payload []byte
	var next uint8
	if b.Tunnel {
		v6 = b.Dst.Is6()
		next = packet.ProtoIPv4
		if packet.Version(d) == 6 {
			next = packet.ProtoIPv6
		}
		hl := packet.IPv4MinLen
		if v6 {
			hl = packet.IPv6Len
		}
		hdr = make([]byte, hl)
		tos, df := packet.TOS(d)
		if v6 {
			packet.WriteIPv6(hdr, packet.IPv6Fields{TrafficClass: tos &^ 3, HopLimit: 64, Src: b.Src, Dst: b.Dst})
		} else {
			packet.WriteIPv4(hdr, packet.IPv4Fields{TOS: tos &^ 3, DF: df || packet.Version(d) == 6, TTL: 64, Src: b.Src, Dst: b.Dst, ID: uint16(b.LastSeq() + 1)})
		}
		payload = d
	} else {
		hdr = append([]byte(nil), d[:sp.HdrLen]...)
		next = sp.Proto
		payload = d[sp.HdrLen:]
	}
	nextOff := sp.NextOff
	if b.Tunnel {
		nextOff = 9
		if v6 {
			nextOff = 6
		}
	}
	var body []byte
	espOff, ahOff := 0, 0
	if e := b.esp; e != nil {
		segs := 1
		if lso {
			tcp := payload
			if b.Tunnel {
				isp, err := packet.SplitIP(payload)
				if err != nil || isp.Proto != packet.ProtoTCP {
					return nil, errors.New("hoststack: LSO needs a TCP datagram")
				}
				tcp = payload[isp.HdrLen:]
			} else if next != packet.ProtoTCP {
				return nil, errors.New("hoststack: LSO needs a TCP datagram")
			}
			if len(tcp) < packet.TCPMinLen {
				return nil, errors.New("hoststack: LSO needs a TCP datagram")
			}
			data := len(tcp) - packet.TCP(tcp).DataOffset()
			segs = max((data+mss-1)/mss, 1)
		}
		seq := e.seq + 1
		e.seq += uint64(segs)
		h := make([]byte, 8+e.iv)
		binary.BigEndian.PutUint32(h, e.cfg.SPI)
		binary.BigEndian.PutUint32(h[4:], uint32(seq))
		body = append(h, payload...)
		padLen := (e.align - (len(payload)+2)%e.align) % e.align
		if !lso {
			for i := range padLen {
				body = append(body, byte(i+1))
			}
			body = append(body, byte(padLen), next)
			body = append(body, make([]byte, e.icv)...)
		}
		info.NextHeader, info.PadLength = next, uint8(padLen)
		next = packet.ProtoESP
	} else {
		body = payload
	}
	if a := b.ah; a != nil {
		al := a.ahLen(v6)
		a.seq++
		h := make([]byte, al)
		h[0], h[1] = next, byte(al/4-2)
		binary.BigEndian.PutUint32(h[4:], a.cfg.SPI)
		binary.BigEndian.PutUint32(h[8:], uint32(a.seq))
		body = append(h, body...)
		ahOff = len(hdr)
		next = packet.ProtoAH
	}
	if b.esp != nil {
		espOff = len(hdr)
		if b.ah != nil {
			espOff += b.ah.ahLen(v6)
		}
	}
	out := append(hdr, body...)
	out[nextOff] = next
	packet.SetLength(out)
	if espOff%4 != 0 || ahOff%4 != 0 || espOff/4 > 255 || ahOff/4 > 255 {
		return nil, errors.New("hoststack: header offsets do not fit the NDIS header info")
	}
	info.EspHeaderOffset, info.AhHeaderOffset = uint8(espOff/4), uint8(ahOff/4)
	return out, nil
}

// Send builds a message for each datagram (see Build) and writes them in
// one batch.
func (s *Stack) Send(pkts ...[]byte) error {
	msgs := make([][]byte, 0, len(pkts))
	for _, p := range pkts {
		m, err := s.Build(p, 0)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return s.Write(msgs...)
}

// Write writes prebuilt messages in one batch.
func (s *Stack) Write(msgs ...[]byte) error {
	n, err := s.conn.Write(msgs, 0)
	s.mu.Lock()
	s.stats.Sent += uint64(n)
	s.mu.Unlock()
	if err == nil && n < len(msgs) {
		err = fmt.Errorf("hoststack: %d of %d messages sent", n, len(msgs))
	}
	return err
}

// Bundles returns the stack's inbound (in) or outbound bundles.
func (s *Stack) Bundles(in bool) []*Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !in {
		return append([]*Bundle(nil), s.out...)
	}
	var out []*Bundle
	seen := map[*Bundle]bool{}
	for _, b := range s.in {
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}
