package driver

import "encoding/binary"

// Status is a receive crypto status. Its values are the NDIS CryptoStatus
// values (IPSEC_OFFLOAD_V2 receive status, 0-7, in the order of the
// legacy NDIS header); Linux's xo->status encodes the same outcomes as
// the bits 1<<Status.
type Status uint8

// Statuses.
const (
	// CryptoSuccess: every ICV verified and the payload was decrypted
	// (also reported for packets the NIC did not process, with CryptoDone
	// clear).
	CryptoSuccess Status = iota
	// CryptoGenericError: the NIC could not process the packet (the SA's
	// encapsulation does not match, the ciphertext is not a whole number
	// of cipher blocks, the SA was deleted or has no room to work in).
	CryptoGenericError
	// CryptoTransportAHAuthFailed: the ICV of a transport-mode AH SA failed.
	CryptoTransportAHAuthFailed
	// CryptoTransportESPAuthFailed: the ICV of a transport-mode ESP SA failed.
	CryptoTransportESPAuthFailed
	// CryptoTunnelAHAuthFailed: the ICV of a tunnel-mode AH SA failed.
	CryptoTunnelAHAuthFailed
	// CryptoTunnelESPAuthFailed: the ICV of a tunnel-mode ESP SA failed.
	CryptoTunnelESPAuthFailed
	// CryptoInvalidPacketSyntax: the packet is too short for the AH or ESP
	// fields its SA needs.
	CryptoInvalidPacketSyntax
	// CryptoInvalidProtocol: the SA's protocol does not match the headers
	// found (an AH+ESP bundle's ESP without its AH, an SPI of an SA of the
	// other protocol).
	CryptoInvalidProtocol

	numStatus
)

var statusNames = [numStatus]string{
	"CRYPTO_SUCCESS", "CRYPTO_GENERIC_ERROR", "CRYPTO_TRANSPORT_AH_AUTH_FAILED",
	"CRYPTO_TRANSPORT_ESP_AUTH_FAILED", "CRYPTO_TUNNEL_AH_AUTH_FAILED",
	"CRYPTO_TUNNEL_ESP_AUTH_FAILED", "CRYPTO_INVALID_PACKET_SYNTAX", "CRYPTO_INVALID_PROTOCOL",
}

// Statuses returns every status, in value order.
func Statuses() []Status {
	out := make([]Status, numStatus)
	for i := range out {
		out[i] = Status(i)
	}
	return out
}

func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return "CRYPTO_UNKNOWN"
}

// NDIS receive word bits (NDIS_IPSEC_OFFLOAD_V2_NET_BUFFER_LIST_INFO).
const (
	NDISSaDeleteReq    = 1 << 0
	NDISCryptoDone     = 1 << 1
	NDISNextCryptoDone = 1 << 2
	NDISStatusShift    = 16
)

// Linux xo->flags bits (include/net/xfrm.h).
const (
	LinuxSADeleteReq    = 1
	LinuxCryptoDone     = 2
	LinuxCryptoNextDone = 4
)

// LinuxStatus returns the xo->status bit of s (CRYPTO_SUCCESS = 1 ...
// CRYPTO_INVALID_PROTOCOL = 128).
func LinuxStatus(s Status) uint32 { return 1 << s }

// RxInfo is the per-packet receive information.
type RxInfo struct {
	// SaDeleteReq: the NIC asks the stack to delete the inbound SA the
	// packet arrived on and its outbound partner (an SA reached its soft
	// lifetime); the NIC keeps both until the stack deletes them.
	SaDeleteReq bool
	// CryptoDone: the NIC checked at least one IPsec payload. Clear for
	// packets the NIC did not process (no SA, not IPsec).
	CryptoDone bool
	// NextCryptoDone: both the tunnel and the transport part of a
	// transport-over-tunnel packet were checked.
	NextCryptoDone bool
	// Status is the outcome.
	Status Status
	// NextHeader and PadLength are the decrypted ESP trailer's values of
	// the outermost ESP layer, valid if HeaderInfoSet.
	NextHeader, PadLength uint8
	HeaderInfoSet         bool
}

// Receive is a receive message's header.
//
//	0       1       2               4                               8
//	+-------+-------+---------------+-------------------------------+
//	|   1   |   4   |      16       |   Flags (NDIS word / xo->flags)|
//	+-------+-------+---------------+-------------------------------+
//	8                               12      13      14      15      16
//	+-------------------------------+-------+-------+-------+-------+
//	|   Status (0 / xo->status)     |NextHdr|PadLen |HdrSet | rsvd  |
//	+-------------------------------+-------+-------+-------+-------+
//	16: the packet as received, headers and trailers in place, payload decrypted
type Receive []byte

// Flags returns the raw flags word.
func (r Receive) Flags() uint32 { return binary.LittleEndian.Uint32(r[4:]) }

// RawStatus returns the raw status word (0 in the NDIS encoding).
func (r Receive) RawStatus() uint32 { return binary.LittleEndian.Uint32(r[8:]) }

// NextHeader returns the decrypted next header (valid with HeaderInfoSet).
func (r Receive) NextHeader() uint8 { return r[12] }

// PadLength returns the decrypted pad length (valid with HeaderInfoSet).
func (r Receive) PadLength() uint8 { return r[13] }

// HeaderInfoSet reports whether NextHeader and PadLength are valid.
func (r Receive) HeaderInfoSet() bool { return r[14]&1 != 0 }

// Encode writes the header for i in encoding e into r (ReceiveLen bytes).
func (r Receive) Encode(e Encoding, i RxInfo) {
	Prefix(r).Encode(TypeReceive, ReceiveLen)
	var flags, status uint32
	if e == EncodingLinux {
		if i.SaDeleteReq {
			flags |= LinuxSADeleteReq
		}
		if i.CryptoDone {
			flags |= LinuxCryptoDone
			status = LinuxStatus(i.Status)
		}
		if i.NextCryptoDone {
			flags |= LinuxCryptoNextDone
		}
	} else {
		if i.SaDeleteReq {
			flags |= NDISSaDeleteReq
		}
		if i.CryptoDone {
			flags |= NDISCryptoDone
		}
		if i.NextCryptoDone {
			flags |= NDISNextCryptoDone
		}
		flags |= uint32(i.Status) << NDISStatusShift
	}
	binary.LittleEndian.PutUint32(r[4:], flags)
	binary.LittleEndian.PutUint32(r[8:], status)
	r[12], r[13], r[14], r[15] = i.NextHeader, i.PadLength, 0, 0
	if i.HeaderInfoSet {
		r[14] = 1
	}
}

// Info decodes the header in encoding e. A status that is not one of the
// defined values (NDIS) or not exactly one bit (Linux, with CryptoDone) is
// reported as CryptoGenericError with ok false.
func (r Receive) Info(e Encoding) (i RxInfo, ok bool) {
	f, st := r.Flags(), r.RawStatus()
	ok = true
	i.NextHeader, i.PadLength, i.HeaderInfoSet = r.NextHeader(), r.PadLength(), r.HeaderInfoSet()
	if e == EncodingLinux {
		i.SaDeleteReq = f&LinuxSADeleteReq != 0
		i.CryptoDone = f&LinuxCryptoDone != 0
		i.NextCryptoDone = f&LinuxCryptoNextDone != 0
		if i.CryptoDone {
			i.Status, ok = CryptoGenericError, false
			for s := range numStatus {
				if st == LinuxStatus(s) {
					i.Status, ok = s, true
				}
			}
		} else if st != 0 {
			ok = false
		}
		return i, ok
	}
	i.SaDeleteReq = f&NDISSaDeleteReq != 0
	i.CryptoDone = f&NDISCryptoDone != 0
	i.NextCryptoDone = f&NDISNextCryptoDone != 0
	s := Status(f >> NDISStatusShift)
	if s >= numStatus || st != 0 {
		return RxInfo{SaDeleteReq: i.SaDeleteReq, CryptoDone: i.CryptoDone, NextCryptoDone: i.NextCryptoDone, Status: CryptoGenericError}, false
	}
	i.Status = s
	return i, ok
}

// ParseReceive checks msg and returns the header view and the packet.
func ParseReceive(msg []byte) (Receive, []byte, error) {
	h, err := parse(msg, TypeReceive, ReceiveLen)
	if err != nil {
		return nil, nil, err
	}
	return Receive(msg[:h]), msg[h:], nil
}
