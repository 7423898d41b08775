package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Errors from the header walkers. They are values: returning them allocates nothing.
var (
	ErrMalformed = errors.New("packet: malformed or truncated IP datagram")
	ErrFragment  = errors.New("packet: IP fragment")
	// ErrUDPLength is a datagram on the UDP encapsulation port whose UDP
	// length field is not the length of the UDP datagram the IP header
	// gives.
	ErrUDPLength = errors.New("packet: the UDP length field disagrees with the datagram")
)

// Split describes where the upper layer starts in an IP datagram, i.e.
// where transport-mode ESP or AH is inserted or found.
type Split struct {
	// HdrLen is the length of the IP header and of the extension headers
	// that stay in front of ESP/AH (IPv6 hop-by-hop, routing, and
	// destination options preceding a routing header).
	HdrLen int
	// NextOff is the offset of the byte that names the upper-layer protocol
	// (the IPv4 protocol field or the last kept header's next header).
	NextOff int
	// Proto is the upper-layer protocol at HdrLen.
	Proto uint8
	// Len is the datagram length from its header (IPv4 total length or 40 + IPv6 payload length).
	Len int
	// Fragment reports an IPv4 fragment or an IPv6 fragment header in front of HdrLen.
	Fragment bool
}

// SplitIP parses the IP header (and IPv6 extension headers) of b.
func SplitIP(b []byte) (Split, error) {
	s, _, err := splitIP(b)
	return s, err
}

// splitIP is SplitIP that also returns, for IPv6, the extension header
// iterator standing at Split.HdrLen, so that Locate walks on from there.
func splitIP(b []byte) (Split, IPv6ExtIter, error) {
	switch Version(b) {
	case 4:
		hl, ok := ValidIPv4(b)
		if !ok {
			return Split{}, IPv6ExtIter{}, ErrMalformed
		}
		h := IPv4(b)
		return Split{HdrLen: hl, NextOff: 9, Proto: h.Protocol(), Len: h.TotalLen(), Fragment: h.IsFragment()}, IPv6ExtIter{}, nil
	case 6:
		if !ValidIPv6(b) {
			return Split{}, IPv6ExtIter{}, ErrMalformed
		}
		s := Split{Len: IPv6Len + IPv6(b).PayloadLen()}
		it := NewIPv6ExtIter(b[:s.Len])
		for IsIPv6Ext(it.Proto()) {
			h, ok := it.Header()
			if !ok {
				return Split{}, IPv6ExtIter{}, ErrMalformed
			}
			if it.Proto() == ProtoDstOpts && h[0] != ProtoRouting {
				// Destination options meant for the final destination
				// follow ESP/AH (RFC 4303 3.1.1, RFC 4302 3.1.1).
				break
			}
			if it.Proto() == ProtoFragment {
				s.Fragment = true
			}
			if !it.Next() {
				return Split{}, IPv6ExtIter{}, ErrMalformed
			}
		}
		s.HdrLen, s.NextOff, s.Proto = it.Off(), it.NextOff(), it.Proto()
		return s, it, nil
	}
	return Split{}, IPv6ExtIter{}, ErrMalformed
}

// Kind classifies a received datagram by what Locate found in it.
type Kind uint8

// Kinds of received datagrams.
const (
	// NotIPsec is an ordinary datagram: neither ESP nor AH, nor UDP to the
	// encapsulation port.
	NotIPsec Kind = iota
	// ESP is an ESP header right behind the IP header (and extension headers).
	ESP
	// AH is an AH header right behind the IP header (and extension headers).
	AH
	// UDPESP is RFC 3948 UDP-encapsulated ESP on the encapsulation port.
	UDPESP
	// Keepalive is an RFC 3948 NAT-keepalive (one byte 0xFF) on the
	// encapsulation port.
	Keepalive
	// NonESP is a non-ESP marker on the encapsulation port: IKE, the
	// host's business.
	NonESP
)

// IsIPsec reports ESP, AH or UDP-encapsulated ESP: a kind with an SPI.
func (k Kind) IsIPsec() bool { return k == ESP || k == AH || k == UDPESP }

var kindNames = [...]string{NotIPsec: "not IPsec", ESP: "ESP", AH: "AH", UDPESP: "UDP-encapsulated ESP", Keepalive: "NAT-keepalive", NonESP: "non-ESP (IKE)"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown kind"
}

// Loc locates the outermost IPsec header of a received datagram.
type Loc struct {
	Split
	// Kind says what the datagram carries; the fields below it are set
	// for ESP, AH and UDPESP only.
	Kind Kind
	// IPsec is ProtoESP or ProtoAH.
	IPsec uint8
	// Off is the offset of the ESP or AH header.
	Off int
	// UDP reports RFC 3948 UDP encapsulation; the UDP header is at Split.HdrLen.
	UDP bool
	// SPI is the SPI in network byte order decoded to a number.
	SPI      uint32
	Src, Dst netip.Addr
}

// Locate parses a received datagram, classifies it (Loc.Kind) and finds
// its ESP or AH header. With encapPort non-zero, UDP datagrams to that port
// are RFC 3948 encapsulated ESP, NAT-keepalives or non-ESP (IKE). The
// errors are for datagrams that are not what they claim: ErrMalformed,
// ErrFragment (reassemble first) and, on the encapsulation port, a UDP
// length field other than the datagram's length (ErrUDPLength). For an
// ordinary datagram (NotIPsec) Loc.Split describes its headers.
func Locate(b []byte, encapPort uint16) (Loc, error) {
	s, it, err := splitIP(b)
	if err != nil {
		return Loc{}, err
	}
	l := Loc{Split: s}
	if Version(b) == 4 {
		l.Src, l.Dst = IPv4(b).Src(), IPv4(b).Dst()
	} else {
		l.Src, l.Dst = IPv6(b).Src(), IPv6(b).Dst()
	}
	if s.Fragment {
		return l, ErrFragment
	}
	b = b[:s.Len]
	// Destination options addressed to the final destination may precede
	// ESP or AH too (RFC 4303 3.1.1); SplitIP stops in front of them because
	// outbound transport-mode IPsec goes there.
	for s.Proto == ProtoDstOpts && Version(b) == 6 {
		if !it.Next() {
			return l, ErrMalformed
		}
		s.HdrLen, s.NextOff, s.Proto = it.Off(), it.NextOff(), it.Proto()
	}
	l.Split = s
	switch s.Proto {
	case ProtoESP:
		l.Kind, l.IPsec, l.Off = ESP, ProtoESP, s.HdrLen
	case ProtoAH:
		l.Kind, l.IPsec, l.Off = AH, ProtoAH, s.HdrLen
	case ProtoUDP:
		if encapPort == 0 || s.HdrLen+UDPLen > len(b) || UDP(b[s.HdrLen:]).DstPort() != encapPort {
			return l, nil // NotIPsec
		}
		l.UDP, l.IPsec, l.Off = true, ProtoESP, s.HdrLen+UDPLen
		if UDP(b[s.HdrLen:]).Length() != len(b)-s.HdrLen {
			return l, ErrUDPLength
		}
		rest := b[l.Off:]
		if len(rest) == 1 && rest[0] == 0xff {
			l.UDP, l.IPsec, l.Off, l.Kind = false, 0, 0, Keepalive
			return l, nil
		}
		if len(rest) >= 4 && binary.BigEndian.Uint32(rest) == 0 {
			l.UDP, l.IPsec, l.Off, l.Kind = false, 0, 0, NonESP
			return l, nil
		}
		l.Kind = UDPESP
	default:
		return l, nil // NotIPsec
	}
	if l.IPsec == ProtoESP {
		if l.Off+8 > len(b) {
			return l, ErrMalformed
		}
		l.SPI = binary.BigEndian.Uint32(b[l.Off:])
	} else {
		if l.Off+12 > len(b) {
			return l, ErrMalformed
		}
		l.SPI = binary.BigEndian.Uint32(b[l.Off+4:])
	}
	return l, nil
}
