package hoststack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// Delivery is the outcome of one received message.
type Delivery struct {
	// Info is what the NIC said about the packet.
	Info driver.RxInfo
	// Packet is the datagram delivered to the upper layers (headers and
	// trailers removed), or nil if it was dropped.
	Packet []byte
	// Bundles are the inbound bundles removed, outermost first.
	Bundles []*Bundle
	// Drop says why the packet was dropped ("" if delivered).
	Drop string
}

// Receive processes one receive message as the stack does after the NIC:
// it checks CryptoStatus, then per layer anti-replay (check and accept:
// the NIC verified the ICV), removes the headers and trailers, and checks
// the result against the inbound policy. A packet with SaDeleteReq calls
// OnDeleteRequest.
func (s *Stack) Receive(msg []byte) (Delivery, error) {
	h, pkt, err := driver.ParseReceive(msg)
	if err != nil {
		return Delivery{}, err
	}
	info, ok := h.Info(s.conn.Encoding())
	if !ok {
		return Delivery{}, errors.New("hoststack: the NIC's flags or status are not valid in this connection's encoding")
	}
	d := Delivery{Info: info}
	s.mu.Lock()
	s.stats.Received++
	cb := s.OnDeleteRequest
	d.Packet, d.Bundles, d.Drop = s.receive(info, append([]byte(nil), pkt...))
	if d.Drop != "" {
		s.stats.Dropped[d.Drop]++
		d.Packet = nil
	} else {
		s.stats.Delivered++
	}
	s.mu.Unlock()
	if info.SaDeleteReq && cb != nil {
		if b := s.arrivedOn(pkt); b != nil {
			cb(b)
		}
	}
	return d, nil
}

// arrivedOn returns the inbound bundle of the outermost IPsec header.
func (s *Stack) arrivedOn(pkt []byte) *Bundle {
	loc, err := packet.Locate(pkt, 0)
	if err != nil || !loc.Kind.IsIPsec() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.in[inKey{loc.IPsec == packet.ProtoAH, loc.SPI}]
}

// Drop reasons of a Delivery.
const (
	DropNotOffloaded = "not-offloaded" // IPsec for one of our SAs that the NIC did not process
	DropReplay       = "replay"        // anti-replay refused the sequence number
	DropPolicy       = "policy"        // the inbound policy does not allow the packet as received
	DropMalformed    = "malformed"     // the headers or trailer are not what the SA needs
	DropNoNext       = "inner-not-done"
)

func (s *Stack) receive(info driver.RxInfo, pkt []byte) ([]byte, []*Bundle, string) {
	if info.CryptoDone && info.Status != driver.CryptoSuccess {
		return nil, nil, info.Status.String()
	}
	var used []*Bundle
	for layer := 0; ; layer++ {
		loc, err := packet.Locate(pkt, 0)
		if err != nil {
			return nil, nil, DropMalformed
		}
		var b *Bundle
		if loc.Kind.IsIPsec() {
			b = s.in[inKey{loc.IPsec == packet.ProtoAH, loc.SPI}]
		}
		if b == nil {
			break
		}
		done := info.CryptoDone
		if layer == 1 {
			done = info.NextCryptoDone
		}
		if !done || layer > 1 {
			if layer == 1 {
				return nil, nil, DropNoNext
			}
			return nil, nil, DropNotOffloaded
		}
		var r string
		if pkt, r = strip(pkt, &loc, b); r != "" {
			return nil, nil, r
		}
		used = append(used, b)
		if !b.Tunnel {
			break
		}
	}
	f, ok := sa.FlowOf(pkt)
	if !ok {
		return nil, nil, DropMalformed
	}
	p := s.lookup(true, f)
	switch {
	case p == nil:
		if len(used) > 0 {
			return nil, nil, DropPolicy
		}
	case p.Action == Discard:
		return nil, nil, DropPolicy
	case p.Action == Bypass:
		if len(used) > 0 {
			return nil, nil, DropPolicy
		}
	default:
		if len(used) != len(p.Bundles) {
			return nil, nil, DropPolicy
		}
		for _, b := range used {
			if !slices.Contains(p.Bundles, b) {
				return nil, nil, DropPolicy
			}
		}
	}
	return pkt, used, ""
}

// strip removes bundle b (AH, then ESP) from pkt, whose outermost IPsec
// header loc found, after anti-replay.
func strip(pkt []byte, loc *packet.Loc, b *Bundle) ([]byte, string) {
	v6 := packet.Version(pkt) == 6
	off := loc.Off
	pkt = pkt[:loc.Len]
	hdrLen, nextOff := loc.HdrLen, loc.NextOff
	if a := b.ah; a != nil {
		if loc.IPsec != packet.ProtoAH || off+12 > len(pkt) {
			return nil, DropMalformed
		}
		al := (int(pkt[off+1]) + 2) * 4
		if al != a.ahLen(v6) || off+al > len(pkt) {
			return nil, DropMalformed
		}
		if r := replay(a, binary.BigEndian.Uint32(pkt[off+8:]), b.ESN); r != "" {
			return nil, r
		}
		next := pkt[off]
		pkt = append(pkt[:off:off], pkt[off+al:]...)
		pkt[nextOff] = next
		packet.SetLength(pkt)
		if b.esp == nil {
			if b.Tunnel {
				return pkt[hdrLen:], ""
			}
			return pkt, ""
		}
		if next != packet.ProtoESP {
			return nil, DropMalformed
		}
	}
	e := b.esp
	if off+8+e.iv+e.icv+2 > len(pkt) || binary.BigEndian.Uint32(pkt[off:]) != e.cfg.SPI {
		return nil, DropMalformed
	}
	if r := replay(e, binary.BigEndian.Uint32(pkt[off+4:]), b.ESN); r != "" {
		return nil, r
	}
	end := len(pkt) - e.icv
	next, padLen := pkt[end-1], int(pkt[end-2])
	dataEnd := end - 2 - padLen
	if dataEnd < off+8+e.iv {
		return nil, DropMalformed
	}
	for i := range padLen {
		if pkt[dataEnd+i] != byte(i+1) {
			return nil, DropMalformed
		}
	}
	data := pkt[off+8+e.iv : dataEnd]
	if b.Tunnel {
		isp, err := packet.SplitIP(data)
		if err != nil || isp.Len > len(data) {
			return nil, DropMalformed
		}
		return data[:isp.Len], ""
	}
	out := append(pkt[:hdrLen:hdrLen], data...)
	out[nextOff] = next
	packet.SetLength(out)
	return out, ""
}

func replay(x *stackSA, low uint32, esn bool) string {
	seq := x.replay.Infer(low, esn)
	if !x.replay.Check(seq) || !x.replay.Accept(seq) {
		return DropReplay
	}
	return ""
}

// Recv reads up to max messages from the connection (blocking for the
// first) and processes them.
func (s *Stack) Recv(max int) ([]Delivery, error) {
	bufs := make([][]byte, max)
	sizes := make([]int, max)
	for i := range bufs {
		bufs[i] = make([]byte, driver.MaxHeaderLen+driver.MaxPacket)
	}
	n, err := s.conn.Read(bufs, sizes, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, n)
	for i := range n {
		d, err := s.Receive(bufs[i][:sizes[i]])
		if err != nil {
			return out, fmt.Errorf("hoststack: message %d: %w", i, err)
		}
		out = append(out, d)
	}
	return out, nil
}
