//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// wirePacket is one packet of a capture, decoded.
type wirePacket struct {
	raw      []byte
	src, dst netip.Addr
	// proto is the outermost protocol after the IP header: "esp", "ah",
	// "udp-esp" (UDP to or from port 4500), or the gopacket layer name.
	proto string
	// next is what AH carries ("esp", "ipip", ...), for AH packets.
	next string
}

// readCapture decodes a pcap file written by a NIC (raw IP) that is
// complete (its NIC stopped).
func readCapture(t *testing.T, path string) []wirePacket {
	t.Helper()
	pkts, err := tryReadCapture(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

// tryReadCapture decodes a pcap file; with partial, a file still being
// written may be empty or end in the middle of a record.
func tryReadCapture(path string, partial bool) ([]wirePacket, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		if partial && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil, nil
		}
		return nil, fmt.Errorf("read capture %s: %w", path, err)
	}
	var out []wirePacket
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || (partial && errors.Is(err, io.ErrUnexpectedEOF)) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read capture %s: %w", path, err)
		}
		out = append(out, decode(data))
	}
	return out, nil
}

func decode(data []byte) wirePacket {
	w := wirePacket{raw: data}
	first := layers.LayerTypeIPv4
	if len(data) > 0 && data[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(data, first, gopacket.NoCopy)
	ls := p.Layers()
	if len(ls) == 0 {
		return w
	}
	switch ip := ls[0].(type) {
	case *layers.IPv4:
		w.src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		w.dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
		if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
			w.proto = "fragment"
			return w
		}
	case *layers.IPv6:
		w.src, _ = netip.AddrFromSlice(ip.SrcIP)
		w.dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	if len(ls) < 2 {
		w.proto = "?"
		return w
	}
	switch l := ls[1].(type) {
	case *layers.IPSecESP:
		w.proto = "esp"
	case *layers.IPSecAH:
		w.proto = "ah"
		w.next = l.NextHeader.String()
		if l.NextHeader == layers.IPProtocolESP {
			w.next = "esp"
		}
	case *layers.UDP:
		if l.DstPort == 4500 || l.SrcPort == 4500 {
			w.proto = "udp-esp"
		} else {
			w.proto = "udp"
		}
	case *layers.IPv6Fragment:
		w.proto = "fragment"
	default:
		w.proto = ls[1].LayerType().String()
	}
	return w
}
