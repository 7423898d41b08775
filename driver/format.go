// Package driver is secnic's crypto-offload driver interface: the message
// format a host stack and the emulated NIC exchange over a unix
// SOCK_SEQPACKET socket, one message per packet, and the socket itself
// (Listen on the NIC side, Dial on the stack side), batched with
// sendmmsg/recvmmsg.
//
// It carries what NDIS IPsec offload version 2 passes in NET_BUFFER_LIST
// info (IPsecOffloadV2NetBufferListInfo, IPsecOffloadV2TunnelNetBufferListInfo,
// IPsecOffloadV2HeaderNetBufferListInfo) and what Linux passes in struct
// xfrm_offload for XFRM_DEV_OFFLOAD_CRYPTO: on transmit the SA handles and
// header offsets of a packet the stack built, on receive the per-packet
// crypto results. docs/driver-interface.md has the byte diagrams.
//
// Every message starts with a 4-byte prefix: the format version, the
// message type and the length of the info header (prefix included); the
// packet, if any, follows the header. Multi-byte fields are little-endian.
// The views (Prefix, Hello, Transmit, Receive) are byte slices with
// accessors, in the style of gVisor's header package: they copy nothing and
// allocate nothing. Parse functions check lengths before a view is used.
package driver

import (
	"encoding/binary"
	"errors"
)

// Version is the message format version this package speaks.
const Version = 1

// Type is a message type.
type Type uint8

// Message types.
const (
	// TypeHello is the first message of a client: it chooses the status
	// encoding.
	TypeHello Type = 1
	// TypeHelloAck is the NIC's answer to Hello.
	TypeHelloAck Type = 2
	// TypeTransmit carries one packet from the stack to the NIC.
	TypeTransmit Type = 3
	// TypeReceive carries one packet from the NIC to the stack.
	TypeReceive Type = 4
)

// Header lengths (prefix included) of the version-1 messages. A reader
// accepts a longer header (fields added later) and skips what it does not
// know; the packet starts at the header length the prefix gives.
const (
	PrefixLen   = 4
	HelloLen    = 8
	HelloAckLen = 12
	TransmitLen = 32
	ReceiveLen  = 16
)

// MaxHeaderLen bounds the header length a reader accepts.
const MaxHeaderLen = 128

// Errors of the parse functions.
var (
	ErrShort   = errors.New("driver: message shorter than its header")
	ErrVersion = errors.New("driver: unsupported message format version (this side speaks version 1)")
	ErrType    = errors.New("driver: unexpected message type")
	ErrHeader  = errors.New("driver: header length out of range")
	ErrEncode  = errors.New("driver: unknown status encoding: use EncodingNDIS (1) or EncodingLinux (2)")
)

// Prefix is the 4-byte start of every message.
//
//	0       1       2               4
//	+-------+-------+---------------+
//	|version| type  | header length |
//	+-------+-------+---------------+
type Prefix []byte

// Version returns the format version.
func (p Prefix) Version() uint8 { return p[0] }

// Type returns the message type.
func (p Prefix) Type() Type { return Type(p[1]) }

// HeaderLen returns the length of the info header, prefix included; the
// packet starts there.
func (p Prefix) HeaderLen() int { return int(binary.LittleEndian.Uint16(p[2:])) }

// Encode writes a prefix.
func (p Prefix) Encode(t Type, hdrLen int) {
	p[0], p[1] = Version, byte(t)
	binary.LittleEndian.PutUint16(p[2:], uint16(hdrLen))
}

// parse checks the prefix of msg for type t with a header of at least min
// bytes and returns the header length.
func parse(msg []byte, t Type, min int) (int, error) {
	if len(msg) < PrefixLen {
		return 0, ErrShort
	}
	p := Prefix(msg)
	if p.Version() != Version {
		return 0, ErrVersion
	}
	if p.Type() != t {
		return 0, ErrType
	}
	h := p.HeaderLen()
	if h < min || h > MaxHeaderLen {
		return 0, ErrHeader
	}
	if len(msg) < h {
		return 0, ErrShort
	}
	return h, nil
}

// Encoding is the encoding of the receive flags and status, chosen by the
// client in Hello for the whole connection and never mixed.
type Encoding uint8

// Encodings.
const (
	// EncodingNDIS: Flags is the NDIS_IPSEC_OFFLOAD_V2_NET_BUFFER_LIST_INFO
	// receive word (SaDeleteReq bit 0, CryptoDone bit 1, NextCryptoDone
	// bit 2, CryptoStatus in bits 16-31 as the values 0-7); Status is 0.
	EncodingNDIS Encoding = 1
	// EncodingLinux: Flags is xo->flags (SA_DELETE_REQ 1, CRYPTO_DONE 2,
	// CRYPTO_NEXT_DONE 4) and Status is the xo->status bit mask
	// (CRYPTO_SUCCESS 1 ... CRYPTO_INVALID_PROTOCOL 128).
	EncodingLinux Encoding = 2
)

// Valid reports whether e is a known encoding.
func (e Encoding) Valid() bool { return e == EncodingNDIS || e == EncodingLinux }

func (e Encoding) String() string {
	switch e {
	case EncodingNDIS:
		return "ndis"
	case EncodingLinux:
		return "linux"
	}
	return "unknown"
}

// Hello is the client's first message.
//
//	0       1       2               4       5               8
//	+-------+-------+---------------+-------+---------------+
//	|   1   |   1   |       8       |encode |   reserved    |
//	+-------+-------+---------------+-------+---------------+
type Hello []byte

// Encoding returns the status encoding the client asks for.
func (h Hello) Encoding() Encoding { return Encoding(h[4]) }

// EncodeHello writes a Hello into b (HelloLen bytes) and returns them.
func EncodeHello(b []byte, e Encoding) []byte {
	b = b[:HelloLen]
	Prefix(b).Encode(TypeHello, HelloLen)
	clear(b[4:])
	b[4] = byte(e)
	return b
}

// ParseHello checks msg and returns its view.
func ParseHello(msg []byte) (Hello, error) {
	h, err := parse(msg, TypeHello, HelloLen)
	if err != nil {
		return nil, err
	}
	if !Hello(msg).Encoding().Valid() {
		return nil, ErrEncode
	}
	return Hello(msg[:h]), nil
}

// HelloAck is the NIC's answer: the encoding it will use (the one asked
// for), the largest packet it takes (the wire MTU) and the batch size.
//
//	0       1       2               4       5       6               8               10             12
//	+-------+-------+---------------+-------+-------+---------------+---------------+--------------+
//	|   1   |   2   |      12       |encode | rsvd  |     MTU       |    batch      |   reserved   |
//	+-------+-------+---------------+-------+-------+---------------+---------------+--------------+
type HelloAck []byte

// Encoding returns the encoding the NIC uses on this connection.
func (h HelloAck) Encoding() Encoding { return Encoding(h[4]) }

// MTU returns the largest packet the NIC sends to the wire.
func (h HelloAck) MTU() int { return int(binary.LittleEndian.Uint16(h[6:])) }

// Batch returns the number of messages the NIC reads or writes at once.
func (h HelloAck) Batch() int { return int(binary.LittleEndian.Uint16(h[8:])) }

// EncodeHelloAck writes a HelloAck into b (HelloAckLen bytes).
func EncodeHelloAck(b []byte, e Encoding, mtu, batch int) []byte {
	b = b[:HelloAckLen]
	Prefix(b).Encode(TypeHelloAck, HelloAckLen)
	clear(b[4:])
	b[4] = byte(e)
	binary.LittleEndian.PutUint16(b[6:], uint16(mtu))
	binary.LittleEndian.PutUint16(b[8:], uint16(batch))
	return b
}

// ParseHelloAck checks msg and returns its view.
func ParseHelloAck(msg []byte) (HelloAck, error) {
	h, err := parse(msg, TypeHelloAck, HelloAckLen)
	if err != nil {
		return nil, err
	}
	if !HelloAck(msg).Encoding().Valid() {
		return nil, ErrEncode
	}
	return HelloAck(msg[:h]), nil
}

// TxInfo is the per-packet transmit information.
type TxInfo struct {
	// OffloadHandle is the outbound bundle for the transport part, or the
	// only one (IPsecOffloadV2NetBufferListInfo.OffloadHandle); 0 sends
	// the packet without IPsec processing.
	OffloadHandle uint64
	// TunnelHandle is the outbound tunnel bundle of a transport-over-tunnel
	// packet (IPsecOffloadV2TunnelNetBufferListInfo.TunnelHandle), else 0.
	TunnelHandle uint64
	// NextHeader, PadLength, AhHeaderOffset, EspHeaderOffset are
	// IPsecOffloadV2HeaderNetBufferListInfo: the ESP trailer's next header,
	// the ESP pad length and the offsets of the AH and ESP headers from
	// the start of the IP header in 4-byte units (0: none), for the
	// outermost bundle (TunnelHandle's if set, else OffloadHandle's).
	NextHeader, PadLength, AhHeaderOffset, EspHeaderOffset uint8
	// MSS is the LSO segment size (TCP payload bytes per segment), or 0
	// when the packet is sent as it is.
	MSS uint16
}

// Transmit is a transmit message's header.
//
//	0       1       2               4                               12
//	+-------+-------+---------------+-------------------------------+
//	|   1   |   3   |      32       |   OffloadHandle (8 bytes)     |
//	+-------+-------+---------------+-------------------------------+
//	12                              20      21      22      23      24
//	+-------------------------------+-------+-------+-------+-------+
//	|   TunnelHandle (8 bytes)      |NextHdr|PadLen |AhOff  |EspOff |
//	+-------------------------------+-------+-------+-------+-------+
//	24              26              28                              32
//	+---------------+---------------+-------------------------------+
//	|   LSO MSS     |   reserved    |           reserved            |
//	+---------------+---------------+-------------------------------+
//	32: the packet (an IP datagram) the stack built
type Transmit []byte

// OffloadHandle returns TxInfo.OffloadHandle.
func (t Transmit) OffloadHandle() uint64 { return binary.LittleEndian.Uint64(t[4:]) }

// TunnelHandle returns TxInfo.TunnelHandle.
func (t Transmit) TunnelHandle() uint64 { return binary.LittleEndian.Uint64(t[12:]) }

// NextHeader returns TxInfo.NextHeader.
func (t Transmit) NextHeader() uint8 { return t[20] }

// PadLength returns TxInfo.PadLength.
func (t Transmit) PadLength() uint8 { return t[21] }

// AhHeaderOffset returns TxInfo.AhHeaderOffset (4-byte units).
func (t Transmit) AhHeaderOffset() uint8 { return t[22] }

// EspHeaderOffset returns TxInfo.EspHeaderOffset (4-byte units).
func (t Transmit) EspHeaderOffset() uint8 { return t[23] }

// MSS returns TxInfo.MSS.
func (t Transmit) MSS() uint16 { return binary.LittleEndian.Uint16(t[24:]) }

// Info returns all fields.
func (t Transmit) Info() TxInfo {
	return TxInfo{
		OffloadHandle: t.OffloadHandle(), TunnelHandle: t.TunnelHandle(),
		NextHeader: t.NextHeader(), PadLength: t.PadLength(),
		AhHeaderOffset: t.AhHeaderOffset(), EspHeaderOffset: t.EspHeaderOffset(),
		MSS: t.MSS(),
	}
}

// Encode writes the header for i into t (TransmitLen bytes).
func (t Transmit) Encode(i TxInfo) {
	Prefix(t).Encode(TypeTransmit, TransmitLen)
	binary.LittleEndian.PutUint64(t[4:], i.OffloadHandle)
	binary.LittleEndian.PutUint64(t[12:], i.TunnelHandle)
	t[20], t[21], t[22], t[23] = i.NextHeader, i.PadLength, i.AhHeaderOffset, i.EspHeaderOffset
	binary.LittleEndian.PutUint16(t[24:], i.MSS)
	clear(t[26:TransmitLen])
}

// ParseTransmit checks msg and returns the header view and the packet.
func ParseTransmit(msg []byte) (Transmit, []byte, error) {
	h, err := parse(msg, TypeTransmit, TransmitLen)
	if err != nil {
		return nil, nil, err
	}
	return Transmit(msg[:h]), msg[h:], nil
}
