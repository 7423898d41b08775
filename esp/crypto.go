package esp

import (
	"encoding/binary"

	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// Crypto offload (the NDIS IPsecOV2 split, Linux XFRM_DEV_OFFLOAD_CRYPTO):
// the host stack builds the ESP header, the padding, the trailer and the
// room for the IV and the ICV and assigns the sequence number; the NIC
// only encrypts and authenticates (Seal) or verifies and decrypts (Open)
// in place. Anti-replay and policy stay with the stack, so Open does not
// look at the replay window's state beyond inferring ESN high bits.

// maxSlack bounds the suite's TailSlack that Seal and Open save.
const maxSlack = 32

// OutSeq returns the full 64-bit sequence number of an outbound packet
// whose ESP or AH header carries low, for SA s: with ESN the high half is
// that of the SA's last number, which the stack moves with UPDATE_SA
// (NDIS OID_TCP_TASK_IPSEC_OFFLOAD_V2_UPDATE_SA, Linux
// xdo_dev_state_advance_esn) before its low half wraps; without ESN the
// number is low. ok is false if the number is not above the last one sent
// under the SA's key (a repeated nonce) or beyond the SA's sequence space.
func OutSeq(s *sa.SA, low uint32) (seq uint64, ok bool) {
	last := s.LastSeq()
	seq = uint64(low)
	if s.ESN {
		seq |= last &^ 0xffffffff
	}
	if seq <= last || seq == 0 || seq > s.MaxSeq() {
		return 0, false
	}
	return seq, true
}

// ClaimSeq records that outbound SA s sends seq, a number OutSeq
// returned, through the SA's own counter: it is refused like a number the
// NIC would take itself when it is beyond the SA's sequence space
// (OutStateSeqError) or beyond what the key-use ledger has made durable
// (OutSeqReserve, which also asks the reserver for more), so a number is
// never used twice under a key, across restarts too. A gap the stack left
// is skipped.
func ClaimSeq(s *sa.SA, seq uint64) sa.Reason {
	if last := s.LastSeq(); seq > last+1 {
		if seq-1 > s.Reservation() {
			s.TakeSeq() // asks the reserver to catch up
			return sa.OutSeqReserve
		}
		if s.SetSeq(seq-1) != nil {
			return sa.OutStateSeqError
		}
	}
	got, r := s.TakeSeq()
	if r != sa.ReasonNone {
		return r
	}
	if got != seq {
		return sa.OutStateSeqError // another sender raced us; never reuse
	}
	return sa.ReasonNone
}

// Seal encrypts and authenticates in place the ESP packet a host stack
// built for outbound SA s: pkt[off:end] is SPI, sequence number, room for
// the IV, the payload with padding, pad length and next header, and room
// for the ICV. Seal checks the SPI, takes the sequence number from the
// header (it must be above every number sent before, see OutSeq), writes
// the IV (never repeated: derived from the sequence number) and the ICV,
// and counts the packet. The bytes from end to the end of pkt's capacity
// that the suite may use as scratch (TailSlack) are saved and restored, so
// an inner ESP layer can be sealed in front of an outer trailer.
func Seal(s *sa.SA, pkt []byte, off, end int, sc *suite.Scratch) sa.Reason {
	return s.Outcome(seal(s, pkt, off, end, sc))
}

func seal(s *sa.SA, pkt []byte, off, end int, sc *suite.Scratch) sa.Reason {
	if s.Expired() {
		return sa.OutStateExpired
	}
	if s.Proto != sa.ESP || off < 4 || end > len(pkt) || off+HeaderLen > end {
		return sa.OutError
	}
	if binary.BigEndian.Uint32(pkt[off:]) != s.SPI {
		return sa.OutError
	}
	seq, ok := OutSeq(s, binary.BigEndian.Uint32(pkt[off+4:]))
	if !ok {
		return sa.OutStateSeqError
	}
	su := s.Suite
	if end-off < HeaderLen+su.IVLen()+su.ICVLen()+2 || (end-off-HeaderLen-su.IVLen()-su.ICVLen())%su.Align() != 0 {
		return sa.OutError
	}
	slack := su.TailSlack()
	if cap(pkt)-end < slack || slack > maxSlack {
		return sa.OutBufferError
	}
	var saved [maxSlack]byte
	full := pkt[:cap(pkt)]
	n := copy(saved[:slack], full[end:end+slack])
	if r := ClaimSeq(s, seq); r != sa.ReasonNone {
		return r
	}
	err := su.SealESP(pkt[:end], off, seq, s.ESN, sc)
	copy(full[end:end+n], saved[:n])
	if err != nil {
		return sa.OutBufferError
	}
	if !s.Account(end - off) {
		return sa.OutStateExpired
	}
	return sa.ReasonNone
}

// Opened is the result of Open.
type Opened uint8

// Results of Open.
const (
	// OpenOK: the ICV verified and the payload is decrypted in place.
	OpenOK Opened = iota
	// OpenAuthFailed: the ICV did not verify.
	OpenAuthFailed
	// OpenShort: the packet is too short for the SA's ESP fields.
	OpenShort
	// OpenError: the ciphertext is not a whole number of blocks, the SA
	// was deleted or there is no room to work in.
	OpenError
)

// Open verifies and decrypts in place the ESP packet pkt[off:end] with
// inbound SA s, leaving every header and the trailer where they are. It
// returns the decrypted trailer's next header and pad length. The
// sequence number's ESN high half is inferred from the SA's window (which
// the stack advances with UPDATE_SA); no anti-replay check is made, that
// is the stack's. Bytes after end are restored as for Seal. The packet is
// counted on the SA (lifetimes) when it verified.
func Open(s *sa.SA, pkt []byte, off, end int, sc *suite.Scratch) (next, padLen uint8, r Opened) {
	su := s.Suite
	if off < 4 || end > len(pkt) || end-off < HeaderLen+su.IVLen()+su.ICVLen()+2 {
		return 0, 0, OpenShort
	}
	if s.Expired() {
		return 0, 0, OpenError
	}
	if (end-off-HeaderLen-su.IVLen()-su.ICVLen())%su.Align() != 0 {
		return 0, 0, OpenError
	}
	slack := su.TailSlack()
	if cap(pkt)-end < slack || slack > maxSlack {
		return 0, 0, OpenError
	}
	seq := s.Replay.Infer(binary.BigEndian.Uint32(pkt[off+4:]), s.ESN)
	var saved [maxSlack]byte
	full := pkt[:cap(pkt)]
	n := copy(saved[:slack], full[end:end+slack])
	err := su.OpenESP(pkt[:end], off, seq, s.ESN, sc)
	copy(full[end:end+n], saved[:n])
	switch err {
	case nil:
	case suite.ErrAuth:
		s.Outcome(sa.InStateProtoError)
		return 0, 0, OpenAuthFailed
	default:
		return 0, 0, OpenError
	}
	s.Account(end - off)
	t := end - su.ICVLen()
	return pkt[t-1], pkt[t-2], OpenOK
}
