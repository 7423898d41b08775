// Package bundle applies SA bundles to packets: the SAs of one
// sa.Bundle (ESP, AH, or AH+ESP on one packet, as in NDIS
// IPSEC_OFFLOAD_V2_ADD_SA), and chains of two bundles for transport over
// tunnel (a transport-mode bundle inside a tunnel-mode bundle).
//
// AH+ESP (one bundle, NDIS processing order): outbound, ESP is applied
// first and AH outside it; inbound, AH is verified and removed first, then
// ESP. In transport mode both SAs are transport mode and the wire format
// is IP | AH | ESP | payload. In tunnel mode the bundle's ESP SA is tunnel
// mode and builds the outer header; the AH SA is then applied in transport
// fashion over that outer header (IP | AH | ESP | inner IP | payload), so
// AH authenticates the tunnel endpoints. Its SA may say tunnel mode, like
// the whole bundle (sa.Table creates it so), or transport mode; either
// way it adds no header of its own.
//
// Transport over tunnel (two bundles, innermost first, as in
// sa.Policy.Bundles): outbound, the transport-mode bundle (ESP or AH,
// between the inner hosts) is applied first, then the tunnel-mode bundle
// wraps the result; inbound, the tunnel bundle is removed first, then the
// transport bundle.
//
// Decap is the inbound engine of the receive path (nic and pcaptool): from
// a located datagram it looks up each layer's SA by SPI and removes the
// layers addressed to us, outermost first, enforcing the bundle order;
// Admit is the RFC 4301 5.2 check of the result against the inbound
// policies.
//
// Every function works in place on a packet.Buf and allocates nothing.
// Per packet, each returns an sa.Reason: sa.ReasonNone when the packet
// passed, otherwise why it was refused, already counted on the SA that
// refused it.
package bundle

import (
	"errors"
	"fmt"

	"github.com/secnic/secnic/ah"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
)

// Check reports whether b is a bundle ApplyOut and ApplyIn can process: at
// least one SA, each of its slot's protocol and of the bundle's direction
// and mode (an AH SA beside a tunnel-mode ESP SA may also be transport
// mode), and no AH over UDP-encapsulated ESP.
func Check(b *sa.Bundle) error {
	if b == nil || (b.ESP == nil && b.AH == nil) {
		return errors.New("bundle: a bundle needs an ESP SA, an AH SA or both")
	}
	if b.Mode != sa.Transport && b.Mode != sa.Tunnel {
		return errors.New("bundle: mode must be transport or tunnel")
	}
	for _, s := range []*sa.SA{b.ESP, b.AH} {
		if s != nil && s.Dir != b.Dir {
			return fmt.Errorf("bundle: SA spi=0x%08x is %v but the bundle is %v; an SA bundle has one direction", s.SPI, s.Dir, b.Dir)
		}
	}
	if b.ESP != nil {
		if b.ESP.Proto != sa.ESP {
			return fmt.Errorf("bundle: the ESP slot holds an %v SA", b.ESP.Proto)
		}
		if b.ESP.Mode != b.Mode {
			return fmt.Errorf("bundle: the ESP SA is %v mode in a %v-mode bundle", b.ESP.Mode, b.Mode)
		}
	}
	if b.AH != nil {
		if b.AH.Proto != sa.AH {
			return fmt.Errorf("bundle: the AH slot holds an %v SA", b.AH.Proto)
		}
		ok := b.AH.Mode == b.Mode || (b.Mode == sa.Tunnel && b.ESP != nil && b.AH.Mode == sa.Transport)
		if !ok {
			return fmt.Errorf("bundle: the AH SA is %v mode in a %v-mode bundle; for transport over tunnel use two bundles", b.AH.Mode, b.Mode)
		}
	}
	if b.ESP != nil && b.AH != nil && b.ESP.Encap != nil {
		return errors.New("bundle: AH cannot protect UDP-encapsulated ESP (AH does not traverse NAT; RFC 3948 covers ESP only): drop AH or the UDP encapsulation")
	}
	return nil
}

// CheckChain reports whether chain (innermost first) can be processed by
// ApplyChainOut and ApplyChainIn: one valid bundle, or a transport-mode
// bundle followed by a tunnel-mode bundle of the same direction.
func CheckChain(chain []*sa.Bundle) error {
	switch len(chain) {
	case 1:
		return Check(chain[0])
	case 2:
	default:
		return fmt.Errorf("bundle: a chain is one bundle, or two for transport over tunnel, not %d", len(chain))
	}
	for _, b := range chain {
		if err := Check(b); err != nil {
			return err
		}
	}
	if chain[0].Mode != sa.Transport || chain[1].Mode != sa.Tunnel {
		return fmt.Errorf("bundle: transport over tunnel needs the transport-mode bundle first and the tunnel-mode bundle second, not %v then %v", chain[0].Mode, chain[1].Mode)
	}
	if chain[0].Dir != chain[1].Dir {
		return errors.New("bundle: the bundles of a chain must have one direction")
	}
	return nil
}

// ahOverESPTunnel reports whether b's AH SA goes over the outer header its
// tunnel-mode ESP SA builds (AH+ESP in tunnel mode): outbound AH is applied
// in transport fashion behind that header (ah.EncapTransport), inbound it
// is removed so (ah.DecapTransport), and it adds only its own header. This
// is the one place that rule is written.
func ahOverESPTunnel(b *sa.Bundle) bool {
	return b.AH != nil && b.ESP != nil && b.ESP.Mode == sa.Tunnel
}

// ApplyOut protects the datagram in p with the outbound bundle b (which
// must pass Check): ESP first, then AH. Unless it returns sa.ReasonNone, p
// must be dropped; the reason is counted on the SA that refused.
func ApplyOut(b *sa.Bundle, p *packet.Buf) sa.Reason {
	if b.ESP == nil && b.AH == nil {
		return sa.OutNoStates
	}
	if b.ESP != nil {
		if r := esp.Encap(b.ESP, p); r != sa.ReasonNone {
			return r
		}
	}
	if b.AH != nil {
		if ahOverESPTunnel(b) {
			return ah.EncapTransport(b.AH, p)
		}
		return ah.Encap(b.AH, p)
	}
	return sa.ReasonNone
}

// Result says how far inbound processing got, for the NDIS receive
// indication (CryptoDone, NextCryptoDone and CryptoStatus).
type Result struct {
	// Done counts the SAs that verified the packet.
	Done int
	// Failed is the SA that refused the packet and FailedIn its bundle;
	// both nil on success. Failed.Proto and FailedIn.Mode tell a transport
	// from a tunnel and an AH from an ESP failure.
	Failed   *sa.SA
	FailedIn *sa.Bundle
}

// ApplyIn verifies and removes the inbound bundle b (which must pass
// Check) from the datagram in p: AH first, then ESP. On success p holds
// the datagram the bundle protected. sa.InDummy from ESP marks a dummy
// packet to discard silently.
func ApplyIn(b *sa.Bundle, p *packet.Buf) (Result, sa.Reason) {
	var r Result
	reason := applyIn(b, p, &r)
	return r, reason
}

func applyIn(b *sa.Bundle, p *packet.Buf, r *Result) sa.Reason {
	if b.ESP == nil && b.AH == nil {
		return sa.InNoStates
	}
	if b.AH != nil {
		var reason sa.Reason
		if ahOverESPTunnel(b) {
			reason = ah.LocateAndDecapTransport(b.AH, p)
		} else {
			reason = ah.LocateAndDecap(b.AH, p)
		}
		if reason != sa.ReasonNone {
			r.Failed, r.FailedIn = b.AH, b
			return reason
		}
		r.Done++
	}
	if b.ESP != nil {
		if reason := esp.LocateAndDecap(b.ESP, p); reason != sa.ReasonNone {
			r.Failed, r.FailedIn = b.ESP, b
			return reason
		}
		r.Done++
	}
	return sa.ReasonNone
}

// ApplyChainOut protects the datagram in p with chain (innermost first;
// see CheckChain): for transport over tunnel, the transport bundle first,
// then the tunnel bundle.
func ApplyChainOut(chain []*sa.Bundle, p *packet.Buf) sa.Reason {
	if len(chain) == 0 {
		return sa.OutNoStates
	}
	for _, b := range chain {
		if r := ApplyOut(b, p); r != sa.ReasonNone {
			return r
		}
	}
	return sa.ReasonNone
}

// ApplyChainIn removes chain (innermost first, as for ApplyChainOut) from
// the datagram in p: the tunnel bundle first, then the transport bundle.
func ApplyChainIn(chain []*sa.Bundle, p *packet.Buf) (Result, sa.Reason) {
	var r Result
	if len(chain) == 0 {
		return r, sa.InNoStates
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if reason := applyIn(chain[i], p, &r); reason != sa.ReasonNone {
			return r, reason
		}
	}
	return r, sa.ReasonNone
}

// Overhead returns the worst-case number of bytes ApplyOut adds to a
// datagram of innerLen bytes (for MTU computations).
func Overhead(b *sa.Bundle, innerLen int) int {
	n := 0
	if b.ESP != nil {
		n += esp.Overhead(b.ESP, innerLen)
	}
	if b.AH != nil {
		if ahOverESPTunnel(b) {
			n += ah.Len(b.AH, !b.ESP.Dst.Is4())
		} else {
			n += ah.Overhead(b.AH, innerLen+n)
		}
	}
	return n
}

// ChainOverhead returns the worst-case number of bytes ApplyChainOut adds.
func ChainOverhead(chain []*sa.Bundle, innerLen int) int {
	n := 0
	for _, b := range chain {
		n += Overhead(b, innerLen+n)
	}
	return n
}
