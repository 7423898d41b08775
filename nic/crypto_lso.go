package nic

import (
	"encoding/binary"
	"net/netip"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// TCP flag bits that belong to one segment only.
const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// cryptoLSO segments a large TCP packet the stack sent with an MSS (NDIS
// LSO with IPsec, Linux GSO_ESP). The stack built the IP header, the ESP
// header with the first segment's sequence number, the room for the IV,
// for tunnel mode the inner IP header, and the TCP header, but no ESP
// trailer (its values would be wrong for the last segment). Each segment
// gets a copy of the headers, MSS bytes of payload (less for the last),
// its own TCP sequence number and checksum, IP lengths, IPv4 IDs and ESP
// sequence number (the first one plus its index, as Linux advances
// seq.low by gso_segs), then its padding and trailer, and is sealed.
// Only a single ESP bundle (no AH, no transport over tunnel) is segmented.
func (n *NIC) cryptoLSO(t *cryptoTx, p *packet.Buf, info driver.TxInfo, outer, inner *sa.Bundle) {
	c := &n.crypto.counters
	s := outer.ESP
	if inner != nil || outer.AH != nil || s == nil {
		c.txBadMessage.Add(1)
		return
	}
	pkt := p.Bytes()
	sp, err := packet.SplitIP(pkt)
	espOff := int(info.EspHeaderOffset) * 4
	if err != nil || sp.Len != len(pkt) || sp.Fragment || espOff < sp.HdrLen || espOff+esp.HeaderLen > len(pkt) {
		c.txBadMessage.Add(1)
		return
	}
	ptOff := espOff + esp.HeaderLen + s.Suite.IVLen()
	tcpOff, innerOff := ptOff, -1
	if outer.Mode == sa.Tunnel {
		if ptOff >= len(pkt) {
			c.txBadMessage.Add(1)
			return
		}
		isp, err := packet.SplitIP(pkt[ptOff:])
		if err != nil || isp.Proto != packet.ProtoTCP || isp.Fragment || isp.Len != len(pkt)-ptOff {
			c.txBadMessage.Add(1)
			return
		}
		innerOff, tcpOff = ptOff, ptOff+isp.HdrLen
	} else if info.NextHeader != packet.ProtoTCP {
		c.txBadMessage.Add(1)
		return
	}
	if tcpOff+packet.TCPMinLen > len(pkt) {
		c.txBadMessage.Add(1)
		return
	}
	thl := packet.TCP(pkt[tcpOff:]).DataOffset()
	hdrEnd := tcpOff + thl
	if thl < packet.TCPMinLen || hdrEnd > len(pkt) {
		c.txBadMessage.Add(1)
		return
	}
	mss := int(info.MSS)
	payload := len(pkt) - hdrEnd
	segs := max((payload+mss-1)/mss, 1)
	su := s.Suite
	align, icv := su.Align(), su.ICVLen()
	// The largest segment: a full MSS.
	first := min(mss, payload)
	ptLen := hdrEnd - ptOff + first
	if hdrEnd+first+(align-(ptLen+2)%align)%align+2+icv > n.wireMTU {
		c.txTooBig.Add(1)
		return
	}
	if segs > len(t.segs.bufs) {
		c.txTooBig.Add(1)
		return
	}
	if t.segs.free() < segs {
		if n.flushCryptoTX(t) != nil {
			return
		}
	}
	c.txLSO.Add(1)
	seq0 := binary.BigEndian.Uint32(pkt[espOff+4:])
	tcpSeq0 := binary.BigEndian.Uint32(pkt[tcpOff+4:])
	flags0 := pkt[tcpOff+13]
	for i := range segs {
		chunk := pkt[hdrEnd+i*mss : hdrEnd+min((i+1)*mss, payload)]
		q := t.segs.get()
		d := q.B[q.Off : q.Off+hdrEnd+len(chunk)]
		copy(d, pkt[:hdrEnd])
		copy(d[hdrEnd:], chunk)
		ptLen := len(d) - ptOff
		padLen := (align - (ptLen+2)%align) % align
		q.Len = len(d)
		tail, err := q.Append(padLen + 2 + icv)
		if err != nil {
			c.txFailed.Add(1)
			continue
		}
		for k := range padLen {
			tail[k] = byte(k + 1)
		}
		tail[padLen], tail[padLen+1] = byte(padLen), info.NextHeader
		clear(tail[padLen+2:])
		d = q.Bytes()

		// TCP: sequence number, per-segment flags, checksum.
		tcp := d[tcpOff : hdrEnd+len(chunk)]
		binary.BigEndian.PutUint32(tcp[4:], tcpSeq0+uint32(i*mss))
		f := flags0
		if i != segs-1 {
			f &^= tcpFIN | tcpPSH
		}
		if i != 0 {
			f &^= tcpCWR
		}
		tcp[13] = f
		// IP lengths and IDs (the inner header of a tunnel, and the
		// outer one), then the TCP checksum over the inner addresses.
		ip := d
		if innerOff >= 0 {
			ip = d[innerOff : hdrEnd+len(chunk)]
			bumpIP(ip, i)
		}
		bumpIP(d, i)
		src, dst := ipAddrs(ip)
		packet.TCP(tcp).SetChecksum(0)
		packet.TCP(tcp).SetChecksum(packet.TransportChecksum(src, dst, packet.ProtoTCP, tcp))
		binary.BigEndian.PutUint32(d[espOff+4:], seq0+uint32(i))
		if esp.Seal(s, d, espOff, len(d), &q.CB) != sa.ReasonNone {
			c.txFailed.Add(1)
			continue
		}
		c.txSegments.Add(1)
		c.txProtected.Add(1)
		t.out = append(t.out, q)
	}
}

// bumpIP sets the length of the datagram ip to len(ip) and adds i to its
// IPv4 ID (each segment is its own datagram).
func bumpIP(ip []byte, i int) {
	if packet.Version(ip) == 4 {
		h := packet.IPv4(ip)
		h.SetID(h.ID() + uint16(i))
	}
	packet.SetLength(ip)
}

func ipAddrs(ip []byte) (src, dst netip.Addr) {
	if packet.Version(ip) == 4 {
		return packet.IPv4(ip).Src(), packet.IPv4(ip).Dst()
	}
	return packet.IPv6(ip).Src(), packet.IPv6(ip).Dst()
}
