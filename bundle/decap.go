package bundle

import (
	"net/netip"

	"github.com/secnic/secnic/ah"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// Lookup finds the inbound SA of a protocol, SPI and destination, and its
// bundle: the SA table's snapshot (sadb.Snapshot) is one.
type Lookup interface {
	LookupIn(proto sa.Protocol, spi uint32, dst netip.Addr) (*sa.SA, *sa.Bundle)
}

// MaxLayers bounds the IPsec layers Decap removes from one packet (AH+ESP
// over transport over tunnel is 3).
const MaxLayers = 4

// Used lists the bundles an inbound packet came through, outermost first,
// each once.
type Used struct {
	n int
	b [MaxLayers]*sa.Bundle
}

// Bundles returns the bundles, outermost first.
func (u *Used) Bundles() []*sa.Bundle { return u.b[:u.n] }

func (u *Used) add(b *sa.Bundle) {
	if u.n == 0 || u.b[u.n-1] != b {
		u.b[u.n] = b
		u.n++
	}
}

// Decap removes from p the IPsec layers addressed to the inbound SAs of
// snap, outermost first: for each layer it looks the SA up by protocol,
// SPI and destination, verifies and removes the layer (ESP with esp.Decap,
// AH with ah.Decap, or ah.DecapTransport for the AH of an AH+ESP tunnel
// bundle, which that bundle's ESP must follow), and locates what is left
// with encapPort (see packet.Locate). It stops at a datagram that is not
// IPsec or whose SPI is not ours (IPsec for someone else inside: the
// policy decides).
//
// loc is the caller's packet.Locate of p, of an IPsec kind (ESP, AH or
// UDPESP); each layer's decapsulation takes the location of its header
// from it, so no layer parses its outer headers twice. On sa.ReasonNone p
// holds the decapsulated datagram and loc is packet.Locate of it (the zero
// Loc if Locate refused it, e.g. an inner fragment), which the caller
// passes on to its inbound policy check (sadb.Snapshot.Admit, which reads
// the flow from it); used lists the bundles the datagram came through. Any
// other reason means drop p (counted on the SA that refused, if one did):
// sa.InNoStates when the outer SPI is unknown, sa.InTmplMismatch when an
// AH+ESP bundle's ESP does not follow its AH, sa.InHdrError beyond
// MaxLayers; loc is then stale.
func Decap(snap Lookup, p *packet.Buf, loc *packet.Loc, encapPort uint16) (used Used, r sa.Reason) {
	var wantESP *sa.SA // after the AH of an AH+ESP bundle, that bundle's ESP must follow
	for layer := 0; ; layer++ {
		s, b := snap.LookupIn(sa.Protocol(loc.IPsec), loc.SPI, loc.Dst)
		if wantESP != nil && s != wantESP {
			return used, sa.InTmplMismatch
		}
		wantESP = nil
		if s == nil {
			if layer == 0 {
				return used, sa.InNoStates
			}
			return used, sa.ReasonNone // IPsec for someone else inside
		}
		if layer == MaxLayers {
			return used, sa.InHdrError
		}
		switch {
		case s.Proto == sa.ESP:
			r = esp.Decap(s, p, loc)
		case ahOverESPTunnel(b):
			r = ah.DecapTransport(s, p, loc)
		default:
			r = ah.Decap(s, p, loc)
		}
		if r != sa.ReasonNone {
			return used, r
		}
		if s.Proto == sa.AH && b.ESP != nil {
			wantESP = b.ESP
		}
		used.add(b)
		var err error
		if *loc, err = packet.Locate(p.Bytes(), encapPort); err != nil || !loc.Kind.IsIPsec() {
			if wantESP != nil {
				return used, sa.InTmplMismatch
			}
			if err != nil {
				*loc = packet.Loc{} // not located: Admit parses the datagram itself
			}
			return used, sa.ReasonNone
		}
	}
}
