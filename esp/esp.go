// Package esp implements the Encapsulating Security Payload (RFC 4303) on
// one packet buffer and one security association, in place: headers are
// written into the buffer's headroom, the trailer into its tailroom, and
// the payload is encrypted and decrypted where it lies. Nothing on the
// per-packet path allocates.
//
// Outbound, Encap turns an IP datagram into an ESP-protected datagram in
// transport or tunnel mode, IPv4 or IPv6 inside and outside, optionally
// UDP-encapsulated (RFC 3948). Inbound, Decap follows RFC 4303 3.4: the
// anti-replay check runs before any cryptography, the ICV is compared in
// constant time, the window moves only after the ICV verified, then the
// payload is decrypted, the padding checked, dummy packets discarded and
// the original datagram rebuilt.
package esp

import (
	"encoding/binary"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// HeaderLen is the length of the ESP header (SPI and sequence number).
const HeaderLen = 8

// Overhead returns the worst-case number of bytes Encap adds to a datagram
// of innerLen bytes for SA s (used for MTU computations).
func Overhead(s *sa.SA, innerLen int) int {
	su := s.Suite
	n := HeaderLen + su.IVLen() + su.ICVLen() + 2 + su.Align() - 1
	if s.Mode == sa.Tunnel {
		n += outerLen(s)
		if s.TFCPad > innerLen {
			n += s.TFCPad - innerLen
		}
	}
	if s.Encap != nil {
		n += packet.UDPLen
	}
	return n
}

func outerLen(s *sa.SA) int { return s.OuterLen() }

// Encap protects the IP datagram in p with the outbound SA s. On success p
// holds the protected datagram, ready for the wire, and Encap returns
// sa.ReasonNone. Otherwise it returns why (also counted on the SA) and p
// must be dropped.
func Encap(s *sa.SA, p *packet.Buf) sa.Reason {
	return s.Outcome(encap(s, p, nil))
}

// EncapWithIV is Encap with an explicit IV instead of the one the suite
// derives, for reproducing published test vectors (the offline packet tool).
// Never use it for live traffic: the caller must not repeat an IV under a key.
func EncapWithIV(s *sa.SA, p *packet.Buf, iv []byte) sa.Reason {
	if len(iv) != s.Suite.IVLen() {
		return s.Outcome(sa.OutError)
	}
	return s.Outcome(encap(s, p, iv))
}

func encap(s *sa.SA, p *packet.Buf, iv []byte) sa.Reason {
	if s.Expired() {
		return sa.OutStateExpired
	}
	in := p.Bytes()
	var sp packet.Split
	if s.Mode == sa.Tunnel {
		// Tunnel mode carries the datagram whole; it only has to be one.
		if !packet.WholeDatagram(in) {
			return sa.OutError
		}
	} else {
		var err error
		if sp, err = packet.SplitIP(in); err != nil || sp.Len != len(in) {
			return sa.OutError
		}
	}
	su := s.Suite
	ivLen, icvLen := su.IVLen(), su.ICVLen()

	var (
		hdrLen  int   // bytes kept in front of ESP (transport) or outer header (tunnel)
		next    uint8 // ESP next header
		payload int   // bytes protected (after hdrLen in the input)
		tfc     int
	)
	if s.Mode == sa.Transport {
		if sp.Fragment {
			return sa.OutFragment
		}
		hdrLen, next, payload = sp.HdrLen, sp.Proto, len(in)-sp.HdrLen
	} else {
		next = packet.ProtoIPv4
		if packet.Version(in) == 6 {
			next = packet.ProtoIPv6
		}
		payload = len(in)
		if s.TFCPad > payload {
			tfc = s.TFCPad - payload
		}
	}
	align := su.Align()
	padLen := -(payload + tfc + 2) & (align - 1) // align is 4, 8 or 16: no division
	trailer := tfc + padLen + 2 + icvLen
	front := HeaderLen + ivLen // inserted in front of the payload
	if s.Mode == sa.Tunnel {
		front += outerLen(s)
	}
	if s.Encap != nil {
		front += packet.UDPLen
	}
	if p.HeadroomLen() < front || p.TailroomLen() < trailer+su.TailSlack() {
		return sa.OutBufferError
	}
	total := len(in) + front + trailer
	if total > packet.MaxPacket {
		return sa.OutError
	}
	seq, r := s.TakeSeq()
	if r != sa.ReasonNone {
		return r // OutStateSeqError or OutSeqReserve
	}

	// Trailer: TFC padding (zeros), padding 1, 2, 3, ..., pad length, next header.
	t, _ := p.Append(trailer)
	clear(t[:tfc])
	for i := range padLen {
		t[tfc+i] = byte(i + 1)
	}
	t[tfc+padLen] = byte(padLen)
	t[tfc+padLen+1] = next

	var tos uint8
	var df bool
	if s.Mode == sa.Transport {
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
		hdrLen = outerLen(s)
	}
	pkt := p.Data()
	espOff := hdrLen
	if s.Encap != nil {
		espOff += packet.UDPLen
	}
	binary.BigEndian.PutUint32(pkt[espOff:], s.SPI)
	binary.BigEndian.PutUint32(pkt[espOff+4:], uint32(seq))
	var err error
	if iv == nil {
		err = su.SealESP(pkt, espOff, seq, s.ESN, &p.CB)
	} else {
		err = su.SealESPWithIV(pkt, espOff, seq, s.ESN, iv, &p.CB)
	}
	if err != nil {
		return sa.OutBufferError
	}

	proto := uint8(packet.ProtoESP)
	if s.Encap != nil {
		proto = packet.ProtoUDP
		u := packet.UDP(pkt[hdrLen:])
		u.SetSrcPort(s.Encap.SrcPort)
		u.SetDstPort(s.Encap.DstPort)
		u.SetLength(len(pkt) - hdrLen)
		u.SetChecksum(0) // RFC 3948 2.1: SHOULD be zero (IPv4)
	}
	if s.Mode == sa.Transport {
		pkt[sp.NextOff] = proto
		packet.SetLength(pkt)
	} else {
		// The IPv4 ID only needs to be unique among this SA's recent
		// datagrams (RFC 6864); the sequence number's low bits are.
		s.WriteOuter(pkt, len(pkt), tos, df, uint16(seq))
	}
	if s.Encap != nil && packet.Version(pkt) == 6 {
		// IPv6 forbids a zero UDP checksum here (RFC 8200 8.1).
		u := packet.UDP(pkt[hdrLen:])
		u.SetChecksum(checksumOrFFFF(packet.TransportChecksum(packet.IPv6(pkt).Src(), packet.IPv6(pkt).Dst(), packet.ProtoUDP, pkt[hdrLen:])))
	}
	if !s.Account(len(pkt)) {
		return sa.OutStateExpired
	}
	return sa.ReasonNone
}

func checksumOrFFFF(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// LocateAndDecap finds the ESP header of p as s expects it (UDP
// encapsulated on its port, or not), as a receive path does before Decap,
// and decapsulates. A fragment is InFragment, a malformed datagram
// InHdrError, and a UDP datagram for an SA without udp_encap
// InStateMismatch (as Linux counts it); each is counted on s.
func LocateAndDecap(s *sa.SA, p *packet.Buf) sa.Reason {
	var port uint16
	if s.Encap != nil {
		port = s.Encap.DstPort
	}
	loc, err := packet.Locate(p.Bytes(), port)
	switch {
	case err == packet.ErrFragment:
		return s.Outcome(sa.InFragment)
	case err != nil:
		return s.Outcome(sa.InHdrError)
	case loc.Kind == packet.NotIPsec && s.Encap == nil && loc.Proto == packet.ProtoUDP:
		// UDP-encapsulated ESP for an SA without udp_encap: Linux counts
		// XfrmInStateMismatch (the encapsulation does not match the state).
		return s.Outcome(sa.InStateMismatch)
	}
	return Decap(s, p, &loc)
}

// Decap verifies and decrypts the ESP datagram in p with the inbound SA s.
// loc is where packet.Locate found the ESP header in p.Bytes() (the caller
// located it to find s from the SPI; Decap does not parse the headers
// again). On success p holds the original datagram: the inner datagram in
// tunnel mode, the rebuilt datagram in transport mode; Decap returns
// sa.ReasonNone and loc is stale. Otherwise it returns why (also counted
// on the SA): sa.InDummy marks a dummy packet, to be discarded silently.
func Decap(s *sa.SA, p *packet.Buf, loc *packet.Loc) sa.Reason {
	return s.Outcome(decap(s, p, loc))
}

func decap(s *sa.SA, p *packet.Buf, loc *packet.Loc) sa.Reason {
	if s.Expired() {
		return sa.InStateExpired
	}
	pkt := p.Data()
	switch {
	case loc.Kind == packet.UDPESP && s.Encap == nil:
		// UDP-encapsulated ESP for an SA without udp_encap: Linux counts
		// XfrmInStateMismatch (the encapsulation does not match the state).
		return sa.InStateMismatch
	case loc.Kind == packet.UDPESP && packet.UDP(pkt[loc.HdrLen:]).DstPort() != s.Encap.DstPort:
		return sa.InHdrError // not on the SA's encapsulation port
	case !loc.Kind.IsIPsec():
		return sa.InHdrError
	}
	if packet.Version(pkt) == 4 && !packet.IPv4(pkt).ChecksumValid() {
		return sa.InHdrError
	}
	if loc.IPsec != packet.ProtoESP || loc.SPI != s.SPI || loc.UDP != (s.Encap != nil) {
		return sa.InStateMismatch
	}
	if loc.Len < len(pkt) {
		pkt = pkt[:loc.Len] // drop link-layer padding beyond the IP length
	}
	su := s.Suite
	ivLen, icvLen := su.IVLen(), su.ICVLen()
	espOff := loc.Off
	ctLen := len(pkt) - espOff - HeaderLen - ivLen - icvLen
	if ctLen < 2 || ctLen%su.Align() != 0 {
		return sa.InHdrError
	}

	// Anti-replay before any cryptography (RFC 4303 3.4.3).
	seq, fresh := s.Replay.InferCheck(binary.BigEndian.Uint32(pkt[espOff+4:]), s.ESN)
	if !fresh {
		return sa.InStateSeqError
	}
	if err := su.OpenESP(pkt, espOff, seq, s.ESN, &p.CB); err != nil {
		if err == suite.ErrRoom {
			return sa.InBufferError
		}
		return sa.InStateProtoError
	}
	// Window update only after the ICV verified (RFC 4303 3.4.3).
	if r := s.AcceptSeq(seq); r != sa.ReasonNone {
		return r
	}

	ptOff := espOff + HeaderLen + ivLen
	pt := pkt[ptOff : ptOff+ctLen]
	next := pt[ctLen-1]
	padLen := int(pt[ctLen-2])
	dataLen := ctLen - 2 - padLen
	if dataLen < 0 {
		return sa.InPadError
	}
	for i := range padLen {
		if pt[dataLen+i] != byte(i+1) {
			return sa.InPadError
		}
	}
	if next == packet.ProtoNoNext {
		s.Account(len(pkt))
		return sa.InDummy
	}

	if s.Mode == sa.Tunnel {
		if next != packet.ProtoIPv4 && next != packet.ProtoIPv6 {
			return sa.InStateModeError
		}
		inner := pt[:dataLen]
		isp, err := packet.SplitIP(inner)
		if err != nil || (next == packet.ProtoIPv4) != (packet.Version(inner) == 4) {
			return sa.InStateModeError
		}
		// isp.Len <= dataLen: anything after it is TFC padding (RFC 4303 2.7).
		outerTOS, _ := packet.TOS(pkt)
		if !packet.DecapECN(outerTOS, inner[:isp.Len]) {
			return sa.InStateModeError
		}
		if !s.Account(len(pkt)) {
			return sa.InStateExpired
		}
		p.Off += ptOff
		p.Len = isp.Len
		return sa.ReasonNone
	}

	// Transport: the IP header moves up to meet the payload.
	hdrLen := loc.HdrLen
	pkt[loc.NextOff] = next
	shift := ptOff - hdrLen
	copy(pkt[shift:shift+hdrLen], pkt[:hdrLen])
	if !s.Account(len(pkt)) {
		return sa.InStateExpired
	}
	p.Off += shift
	p.Len = hdrLen + dataLen
	out := p.Bytes()
	packet.SetLength(out)
	if s.Encap != nil {
		fixTransportChecksum(out, hdrLen, next)
	}
	return sa.ReasonNone
}

// fixTransportChecksum recomputes the TCP or UDP checksum of a transport-mode
// datagram received UDP-encapsulated: NAT may have changed the addresses it
// covers (RFC 3948 3.1.2).
func fixTransportChecksum(pkt []byte, hdrLen int, proto uint8) {
	seg := pkt[hdrLen:]
	var src, dst = packet.IPv4(pkt).Src, packet.IPv4(pkt).Dst
	if packet.Version(pkt) == 6 {
		src, dst = packet.IPv6(pkt).Src, packet.IPv6(pkt).Dst
	}
	switch proto {
	case packet.ProtoTCP:
		if len(seg) < packet.TCPMinLen {
			return
		}
		packet.TCP(seg).SetChecksum(0)
		packet.TCP(seg).SetChecksum(packet.TransportChecksum(src(), dst(), proto, seg))
	case packet.ProtoUDP:
		if len(seg) < packet.UDPLen {
			return
		}
		u := packet.UDP(seg)
		if u.Checksum() == 0 && packet.Version(pkt) == 4 {
			return
		}
		u.SetChecksum(0)
		u.SetChecksum(checksumOrFFFF(packet.TransportChecksum(src(), dst(), proto, seg)))
	}
}
