// Package ah implements the IP Authentication Header (RFC 4302) on one
// packet buffer and one security association, in place: the AH header is
// written into the buffer's headroom (the IP header moves forward to make
// room in transport mode), the payload is never copied, and nothing on the
// per-packet path allocates.
//
// The ICV covers the IP header with its mutable fields zeroed and its
// mutable-but-predictable fields set to their values at the destination
// (RFC 4302 3.3.3.1 and appendix A), the AH header with the ICV zeroed,
// everything after AH, and with ESN the high 32 bits of the sequence number
// (never sent). To make the input contiguous the mutable fields are zeroed
// in place, the ICV computed, and the original bytes put back; the saved
// bytes live in the buffer's tailroom, which Encap and Decap use as scratch
// space (see TailScratch) without ever extending the datagram into it.
//
// Integrity transforms: HMAC-SHA1-96, HMAC-SHA-256-128, HMAC-SHA-384-192,
// HMAC-SHA-512-256, HMAC-MD5-96 (legacy; the suite refuses it unless
// allowed) and AES-GMAC (RFC 4543, AH form: the Authentication Data is an
// 8-byte IV, here the 64-bit sequence number, followed by the 16-byte tag;
// the AAD is the whole packet prepared as for an HMAC ICV, IV and tag
// zeroed, then the ESN high half).
//
// The Authentication Data is padded so that the AH header is a multiple of
// 4 bytes behind an IPv4 header and of 8 bytes behind an IPv6 header; the
// padding is zero. With AES-GMAC over IPv6 that is 4 bytes after the tag
// (RFC 4543 erratum 3643).
//
// Sequence numbers, extended sequence numbers, the no-wrap rule and
// anti-replay are exactly as for ESP (RFC 4302 3.3.2 and 3.4.3): the window
// is checked before the ICV and advanced only after it verified. IP
// fragments are refused in both directions.
package ah

import (
	"encoding/binary"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// HeaderLen is the length of the fixed part of the AH header: next header,
// payload length, reserved, SPI and sequence number. The Authentication
// Data (ICV, and for AES-GMAC the IV) follows.
const HeaderLen = 12

// Layout of the scratch area at the start of the tailroom.
const (
	tailESN = 0  // 4 bytes: ESN high half, appended to the ICV input
	tailIV  = 4  // 8 bytes: AES-GMAC IV
	tailTag = 12 // 16 bytes: AES-GMAC tag
	tailLog = 28 // the save log of the mutable fields (see mutable)
)

// TailScratch is the tailroom Encap and Decap need for a datagram without
// IPv4 options or mutable IPv6 options. Each mutable option needs its
// length plus 4 bytes more, a source route whose destination Encap
// predicts 8 bytes more, an IPv6 routing header whose destination it
// predicts 25 bytes more. Buffers from packet.NewBuf have packet.Tailroom
// bytes, which is plenty for any common datagram; if the scratch does not
// fit, the packet is dropped with a buffer error.
const TailScratch = tailLog + 22

// Len returns the length of the AH header for SA s in front of which sits
// an IPv6 header (v6) or an IPv4 header: HeaderLen plus the Authentication
// Data, padded to a multiple of 8 or 4 bytes.
func Len(s *sa.SA, v6 bool) int {
	n := HeaderLen + s.Suite.IVLen() + s.Suite.ICVLen()
	if v6 {
		return (n + 7) &^ 7
	}
	return (n + 3) &^ 3
}

// Overhead returns the number of bytes Encap adds to a datagram of innerLen
// bytes for SA s (used for MTU computations). For a transport-mode SA
// without a destination address it assumes IPv6, the larger AH header.
func Overhead(s *sa.SA, innerLen int) int {
	if s.Mode == sa.Tunnel {
		return s.OuterLen() + Len(s, !s.Dst.Is4())
	}
	return Len(s, !s.Dst.Is4())
}

// Encap protects the IP datagram in p with the outbound AH SA s. On success
// p holds the protected datagram, ready for the wire, and Encap returns
// sa.ReasonNone; otherwise it returns why (also counted on the SA) and p
// must be dropped.
func Encap(s *sa.SA, p *packet.Buf) sa.Reason {
	return s.Outcome(encap(s, p, s.Mode))
}

// EncapTransport is Encap in transport mode whatever s.Mode says: AH goes
// right behind the datagram's IP header. It is for an AH+ESP bundle in
// tunnel mode (NDIS SA bundle order: ESP first, then AH), where the ESP SA
// built the outer header and the AH SA, tunnel mode like the whole bundle,
// protects that outer header without adding one of its own.
func EncapTransport(s *sa.SA, p *packet.Buf) sa.Reason {
	return s.Outcome(encap(s, p, sa.Transport))
}

func encap(s *sa.SA, p *packet.Buf, mode sa.Mode) sa.Reason {
	if s.Expired() {
		return sa.OutStateExpired
	}
	if s.Proto != sa.AH || !s.Suite.IsAH() {
		return sa.OutError
	}
	in := p.Bytes()
	sp, err := packet.SplitIP(in)
	if err != nil || sp.Len != len(in) {
		return sa.OutError
	}
	var (
		hdrLen int   // bytes in front of AH: the IP header (and extension headers) or the outer header
		next   uint8 // AH next header
		v6     bool  // the header in front of AH is IPv6
	)
	if mode == sa.Transport {
		if sp.Fragment {
			return sa.OutFragment
		}
		hdrLen, next, v6 = sp.HdrLen, sp.Proto, packet.Version(in) == 6
	} else {
		next = packet.ProtoIPv4
		if packet.Version(in) == 6 {
			next = packet.ProtoIPv6
		}
		hdrLen, v6 = s.OuterLen(), !s.Dst.Is4()
	}
	ahLen := Len(s, v6)
	front := ahLen
	if mode == sa.Tunnel {
		front += hdrLen
	}
	if p.HeadroomLen() < front || p.TailroomLen() < TailScratch {
		return sa.OutBufferError
	}
	if len(in)+front > packet.MaxPacket {
		return sa.OutError
	}
	seq, r := s.TakeSeq()
	if r != sa.ReasonNone {
		return r // OutStateSeqError or OutSeqReserve
	}

	var tos uint8
	var df bool
	if mode == sa.Transport {
		// Move the IP header (and kept extension headers) to the front;
		// the payload stays where it is.
		old := p.Off
		p.Prepend(front)
		copy(p.B[p.Off:p.Off+hdrLen], p.B[old:old+hdrLen])
	} else {
		tos, df = packet.TOS(in)
		switch s.DF {
		case sa.DFSet:
			df = true
		case sa.DFClear:
			df = false
		}
		p.Prepend(front)
	}
	pkt := p.Data()
	h := pkt[hdrLen : hdrLen+ahLen]
	h[0], h[1], h[2], h[3] = next, byte(ahLen/4-2), 0, 0
	binary.BigEndian.PutUint32(h[4:], s.SPI)
	binary.BigEndian.PutUint32(h[8:], uint32(seq))
	clear(h[HeaderLen:])
	if mode == sa.Transport {
		pkt[sp.NextOff] = packet.ProtoAH
		packet.SetLength(pkt)
	} else {
		// As for ESP, the IPv4 ID is the low half of the sequence number:
		// unique among the SA's recent datagrams (RFC 6864).
		s.WriteOuter(pkt, len(pkt), tos, df, uint16(seq))
	}
	if r := authenticate(s, pkt, &p.CB, hdrLen, seq, true).outReason(); r != sa.ReasonNone {
		return r
	}
	if !s.Account(len(pkt)) {
		return sa.OutStateExpired
	}
	return sa.ReasonNone
}

// Decap verifies the AH datagram in p with the inbound SA s (found by the
// caller from the SPI) and removes AH. loc is where packet.Locate found the
// AH header in p.Bytes() (the caller located it to find s from the SPI;
// Decap does not walk the headers to find it again, as esp.Decap does not).
// On success p holds the original datagram: the inner datagram in tunnel
// mode (with an outer CE mark propagated, RFC 6040), the datagram without
// AH in transport mode (its IP header as received: the mutable fields were
// zeroed only to compute the ICV), and Decap returns sa.ReasonNone; loc is
// stale. Otherwise it returns why (also counted on the SA) and p is
// unchanged apart from link-layer padding past the IP length.
func Decap(s *sa.SA, p *packet.Buf, loc *packet.Loc) sa.Reason {
	return s.Outcome(decap(s, p, loc, s.Mode))
}

// DecapTransport is Decap in transport mode whatever s.Mode says: it
// removes AH from behind the IP header and keeps that header. It is the
// inbound half of EncapTransport (AH+ESP bundle in tunnel mode: AH is
// verified on the outer header first, then ESP removes the tunnel).
func DecapTransport(s *sa.SA, p *packet.Buf, loc *packet.Loc) sa.Reason {
	return s.Outcome(decap(s, p, loc, sa.Transport))
}

// LocateAndDecap finds the AH header of p, as a receive path does before
// Decap, and decapsulates with s in its mode. A fragment is InFragment and
// a malformed datagram InHdrError; each is counted on s.
func LocateAndDecap(s *sa.SA, p *packet.Buf) sa.Reason {
	return s.Outcome(locateAndDecap(s, p, s.Mode))
}

// LocateAndDecapTransport is LocateAndDecap in transport mode, the
// located form of DecapTransport.
func LocateAndDecapTransport(s *sa.SA, p *packet.Buf) sa.Reason {
	return s.Outcome(locateAndDecap(s, p, sa.Transport))
}

func locateAndDecap(s *sa.SA, p *packet.Buf, mode sa.Mode) sa.Reason {
	loc, err := packet.Locate(p.Bytes(), 0)
	if err == nil {
		return decap(s, p, &loc, mode)
	}
	// The checks decap makes before it looks at the headers, in its order.
	if r := usable(s); r != sa.ReasonNone {
		return r
	}
	if err == packet.ErrFragment && checksumOK(p.Data()) {
		return sa.InFragment
	}
	return sa.InHdrError
}

// usable refuses an SA that cannot verify AH packets.
func usable(s *sa.SA) sa.Reason {
	if s.Expired() {
		return sa.InStateExpired
	}
	if s.Proto != sa.AH || !s.Suite.IsAH() {
		return sa.InStateMismatch
	}
	return sa.ReasonNone
}

// checksumOK reports whether pkt is not IPv4 or has a valid IPv4 header
// checksum.
func checksumOK(pkt []byte) bool {
	return packet.Version(pkt) != 4 || packet.IPv4(pkt).ChecksumValid()
}

func decap(s *sa.SA, p *packet.Buf, loc *packet.Loc, mode sa.Mode) sa.Reason {
	if r := usable(s); r != sa.ReasonNone {
		return r
	}
	pkt := p.Data()
	// Locate checked the IP header's lengths (a Loc without a datagram,
	// e.g. the zero Loc, is refused here); the checksum is AH's to check.
	if loc.Len < packet.IPv4MinLen || loc.Len > len(pkt) || !checksumOK(pkt) {
		return sa.InHdrError
	}
	pkt = pkt[:loc.Len] // drop link-layer padding; the capacity stays
	ahOff, nextOff, r := located(pkt, loc)
	if r != sa.ReasonNone {
		return r
	}
	if loc.SPI != s.SPI {
		return sa.InStateMismatch
	}
	v6 := packet.Version(pkt) == 6
	ahLen := (int(pkt[ahOff+1]) + 2) * 4
	if !lenOK(s, ahLen, v6) || ahOff+ahLen > len(pkt) {
		return sa.InHdrError
	}

	// Anti-replay before any cryptography (RFC 4302 3.4.3).
	seq := s.Replay.Infer(binary.BigEndian.Uint32(pkt[ahOff+8:]), s.ESN)
	if !s.Replay.Check(seq) {
		return sa.InStateSeqError
	}
	switch authenticate(s, pkt, &p.CB, ahOff, seq, false) {
	case authOK:
	case authNoRoom:
		return sa.InBufferError
	case authMalformed:
		return sa.InHdrError
	default:
		return sa.InStateProtoError
	}
	// Window update only after the ICV verified.
	if r := s.AcceptSeq(seq); r != sa.ReasonNone {
		return r
	}

	next := pkt[ahOff]
	if mode == sa.Tunnel {
		if next != packet.ProtoIPv4 && next != packet.ProtoIPv6 {
			return sa.InStateModeError
		}
		inner := pkt[ahOff+ahLen:]
		isp, err := packet.SplitIP(inner)
		// AH has no TFC padding: the inner datagram fills the rest exactly.
		if err != nil || isp.Len != len(inner) || (next == packet.ProtoIPv4) != (packet.Version(inner) == 4) {
			return sa.InStateModeError
		}
		outerTOS, _ := packet.TOS(pkt)
		if !packet.DecapECN(outerTOS, inner) {
			return sa.InStateModeError
		}
		if !s.Account(len(pkt)) {
			return sa.InStateExpired
		}
		p.Off += ahOff + ahLen
		p.Len = len(inner)
		return sa.ReasonNone
	}

	// Transport: the IP header moves up over AH to meet the payload.
	if !s.Account(len(pkt)) {
		return sa.InStateExpired
	}
	pkt[nextOff] = next
	copy(pkt[ahLen:ahLen+ahOff], pkt[:ahOff])
	p.Off += ahLen
	p.Len = len(pkt) - ahLen
	packet.SetLength(p.Bytes())
	return sa.ReasonNone
}

// located returns the offset of the AH header in pkt (cut to its IP
// length) and of the byte that names it, from where packet.Locate found
// them, and refuses what the header walk of the ICV computation would
// refuse before it: ESP offered to an AH SA, a fragment, anything but AH,
// malformed IPv4 or IPv6 options (Locate does not read them).
func located(pkt []byte, loc *packet.Loc) (ahOff, nextOff int, r sa.Reason) {
	switch loc.Kind {
	case packet.AH:
	case packet.ESP:
		return 0, 0, sa.InStateMismatch
	default:
		if loc.Proto == packet.ProtoFragment {
			return 0, 0, sa.InFragment // behind final destination options
		}
		return 0, 0, sa.InHdrError
	}
	fixed := packet.IPv4MinLen
	if packet.Version(pkt) == 6 {
		fixed = packet.IPv6Len
	}
	if loc.Off > fixed {
		// IPv4 options or IPv6 extension headers in front of AH: the walk
		// checks their options, which Locate steps over unread.
		if _, _, wr := walk(pkt, nil, false); wr != walkOK {
			return 0, 0, sa.InHdrError
		}
	}
	if loc.Off+HeaderLen > len(pkt) {
		return 0, 0, sa.InHdrError
	}
	return loc.Off, loc.NextOff, sa.ReasonNone
}

// lenOK reports whether an AH header of ahLen bytes fits SA s: the
// Authentication Data plus the padding the IP version needs (4-byte
// alignment for IPv4, 8 for IPv6). Like Linux, an IPv4 receiver also
// accepts 8-byte-aligned AH.
func lenOK(s *sa.SA, ahLen int, v6 bool) bool {
	min := HeaderLen + s.Suite.IVLen() + s.Suite.ICVLen()
	if ahLen < min || ahLen > (min+7)&^7 {
		return false
	}
	if v6 {
		return ahLen%8 == 0
	}
	return ahLen%4 == 0
}

type authResult uint8

const (
	authOK        authResult = iota
	authFailed               // the ICV did not verify
	authMalformed            // the headers in front of AH are malformed
	authNoRoom               // too little tailroom for the scratch area
	authClosed               // the SA's keys were destroyed
)

// outReason is the outbound drop reason for r (ReasonNone for authOK).
func (r authResult) outReason() sa.Reason {
	switch r {
	case authOK:
		return sa.ReasonNone
	case authNoRoom:
		return sa.OutBufferError
	case authClosed:
		return sa.OutStateExpired
	}
	// Malformed options or an unpredictable routing header.
	return sa.OutError
}

// authenticate computes the ICV of the AH datagram pkt (AH at ahOff, IP
// length len(pkt), tailroom in cap(pkt)) for sequence number seq. Sending,
// it writes the ICV (for AES-GMAC the IV and the tag) into the AH header;
// receiving, it verifies it. pkt is unchanged on return apart from the ICV
// written when sending and the scratch area in the tailroom.
func authenticate(s *sa.SA, pkt []byte, sc *suite.Scratch, ahOff int, seq uint64, sending bool) authResult {
	su := s.Suite
	end := len(pkt)
	tail := pkt[end:cap(pkt)]
	if len(tail) < tailLog {
		return authNoRoom
	}
	ext := end // end of the ICV input, ESN high half included
	if s.ESN {
		binary.BigEndian.PutUint32(tail[tailESN:], uint32(seq>>32))
		ext += 4
	}
	m := mutable{save: tail[tailLog:]}
	authOff := ahOff + HeaderLen
	off, _, wr := walk(pkt, &m, sending)
	if wr != walkOK || off != ahOff {
		m.restore(pkt)
		if wr == walkNoRoom {
			return authNoRoom
		}
		return authMalformed
	}

	if su.IsGMAC() {
		// The AAD must be contiguous: the IV and the tag are zeroed in
		// place like the rest of the Authentication Data.
		iv, tag := tail[tailIV:tailIV+8], tail[tailTag:tailTag+16]
		auth := pkt[authOff : authOff+24]
		var ok bool
		if sending {
			binary.BigEndian.PutUint64(iv, seq)
			ok = su.GMACSeal(tag, iv, pkt[:ext], sc) == nil
		} else {
			copy(iv, auth[:8])
			copy(tag, auth[8:])
			clear(auth)
			ok = su.GMACVerify(tag, iv, pkt[:ext], sc)
		}
		m.restore(pkt)
		copy(auth[:8], iv)
		copy(auth[8:], tag)
		switch {
		case ok:
			return authOK
		case su.Closed():
			return authClosed
		}
		return authFailed
	}

	mac, err := su.AcquireMAC()
	if err != nil {
		m.restore(pkt)
		return authClosed
	}
	icvLen := su.ICVLen()
	mac.Write(pkt[:authOff])
	mac.WriteZeros(icvLen)
	mac.Write(pkt[authOff+icvLen : ext]) // ICV padding as received, the rest, ESN
	m.restore(pkt)
	r := authOK
	if sending {
		copy(pkt[authOff:authOff+icvLen], mac.Sum())
	} else if !mac.Verify(pkt[authOff : authOff+icvLen]) {
		r = authFailed
	}
	mac.Release()
	return r
}
