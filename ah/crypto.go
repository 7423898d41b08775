package ah

import (
	"encoding/binary"

	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// Crypto offload (the NDIS IPsecOV2 split): the host stack builds the AH
// header (next header, length, SPI, sequence number, zeroed
// Authentication Data) and the NIC only computes or verifies the ICV, in
// place, with the same ICV input as Encap and Decap.

// maxSave bounds the bytes after an AH datagram that Seal and Open use as
// scratch and put back (the ESN half, the GMAC IV and tag and the save
// log of the mutable fields; see TailScratch).
const maxSave = 256

// Seal computes the ICV of the AH datagram pkt[:end] (the IP header at
// pkt[0], AH at ahOff) that a host stack built for outbound SA s and
// writes it into the AH header. It checks the SPI and the header length,
// takes the sequence number from the header (above every number sent
// before, see esp.OutSeq) and counts the packet. The bytes after end are
// used as scratch and put back, so the datagram may be the inner one of
// a tunnel with its trailer behind.
func Seal(s *sa.SA, pkt []byte, ahOff, end int, sc *suite.Scratch) sa.Reason {
	return s.Outcome(sealAH(s, pkt, ahOff, end, sc))
}

func sealAH(s *sa.SA, pkt []byte, ahOff, end int, sc *suite.Scratch) sa.Reason {
	if s.Expired() {
		return sa.OutStateExpired
	}
	if s.Proto != sa.AH || !s.Suite.IsAH() || end > len(pkt) {
		return sa.OutError
	}
	v6 := packet.Version(pkt) == 6
	ahLen := Len(s, v6)
	if ahOff+ahLen > end || int(pkt[ahOff+1]) != ahLen/4-2 || binary.BigEndian.Uint32(pkt[ahOff+4:]) != s.SPI {
		return sa.OutError
	}
	seq, ok := esp.OutSeq(s, binary.BigEndian.Uint32(pkt[ahOff+8:]))
	if !ok {
		return sa.OutStateSeqError
	}
	if r := esp.ClaimSeq(s, seq); r != sa.ReasonNone {
		return r
	}
	if r := withSaved(pkt, end, func(d []byte) authResult { return authenticate(s, d, sc, ahOff, seq, true) }).outReason(); r != sa.ReasonNone {
		return r
	}
	if !s.Account(end) {
		return sa.OutStateExpired
	}
	return sa.ReasonNone
}

// Opened is the result of Open.
type Opened uint8

// Results of Open.
const (
	OpenOK         Opened = iota // the ICV verified
	OpenAuthFailed               // the ICV did not verify
	OpenShort                    // too short for the AH fields, or a malformed length
	OpenError                    // malformed headers in front of AH, no room, the SA deleted
)

// Open verifies the ICV of the AH datagram pkt[:end] (AH at ahOff) with
// inbound SA s, leaving the packet as it is. The ESN high half is
// inferred from the SA's window; no anti-replay check is made (that is
// the stack's). A verified packet is counted on the SA.
func Open(s *sa.SA, pkt []byte, ahOff, end int, sc *suite.Scratch) Opened {
	if end > len(pkt) || ahOff+HeaderLen > end {
		return OpenShort
	}
	if s.Expired() || s.Proto != sa.AH {
		return OpenError
	}
	ahLen := (int(pkt[ahOff+1]) + 2) * 4
	if !lenOK(s, ahLen, packet.Version(pkt) == 6) || ahOff+ahLen > end {
		return OpenShort
	}
	seq := s.Replay.Infer(binary.BigEndian.Uint32(pkt[ahOff+8:]), s.ESN)
	switch withSaved(pkt, end, func(d []byte) authResult { return authenticate(s, d, sc, ahOff, seq, false) }) {
	case authOK:
	case authFailed:
		s.Outcome(sa.InStateProtoError)
		return OpenAuthFailed
	default:
		return OpenError
	}
	s.Account(end)
	return OpenOK
}

// withSaved runs f on pkt[:end] with at most maxSave bytes of capacity
// behind it, and puts those bytes back afterwards.
func withSaved(pkt []byte, end int, f func([]byte) authResult) authResult {
	full := pkt[:cap(pkt)]
	k := min(len(full)-end, maxSave)
	var saved [maxSave]byte
	copy(saved[:k], full[end:end+k])
	r := f(full[: end : end+k])
	copy(full[end:end+k], saved[:k])
	return r
}
