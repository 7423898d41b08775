package sa

import "sync/atomic"

// Reason says why a packet was dropped. Reasons are named after Linux's
// /proc/net/xfrm_stat counters where one fits, and prefixed Secnic where
// Linux has no counter of that meaning. The datapath (esp, ah, bundle)
// returns a Reason per packet, ReasonNone for a packet that passed. A
// Reason other than ReasonNone is also an error, for the tools and the
// control plane that report one.
type Reason uint8

// Drop reasons.
const (
	ReasonNone Reason = iota
	// InNoStates: no SA for the SPI, destination and protocol.
	InNoStates
	// InHdrError: the packet is too short or its headers are malformed.
	InHdrError
	// InStateProtoError: the ICV did not verify (Linux counts integrity failures here).
	InStateProtoError
	// InStateSeqError: the sequence number is a replay or left of the window.
	InStateSeqError
	// InStateExpired: the SA reached a hard lifetime.
	InStateExpired
	// InStateMismatch: the packet's protocol or addresses do not match the SA.
	InStateMismatch
	// InStateModeError: the inner packet does not fit the SA's mode.
	InStateModeError
	// InTmplMismatch: the decapsulated packet does not match the SA's selectors (RFC 4301 5.2).
	InTmplMismatch
	// InNoPols: no inbound policy accepts an unprotected packet.
	InNoPols
	// InPolBlock: an inbound policy discards the packet.
	InPolBlock
	// InBufferError: a buffer was too small.
	InBufferError
	// InPadError: the ESP padding is not 1, 2, 3, ... or the pad length is impossible.
	InPadError
	// InDummy: a dummy packet (next header 59), discarded silently as RFC 4303 says.
	InDummy
	// InFragment: an IP fragment was offered to ESP or AH.
	InFragment
	// OutStateSeqError: the sequence number would wrap; the SA refuses to send (rekey it).
	OutStateSeqError
	// OutStateExpired: the SA reached a hard lifetime.
	OutStateExpired
	// OutNoStates: the policy says protect but no usable SA exists.
	OutNoStates
	// OutPolBlock: an outbound policy discards the packet.
	OutPolBlock
	// OutError: the packet cannot be protected (malformed, or too large).
	OutError
	// OutBufferError: the buffer lacks headroom or tailroom.
	OutBufferError
	// OutFragment: an IP fragment was offered to transport-mode ESP or AH.
	OutFragment
	// OutSeqReserve: the SA has sent every sequence number reserved in the
	// state directory and the next reservation is not durable yet.
	OutSeqReserve
	// NumReasons is the number of reasons.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:        "None",
	InNoStates:        "XfrmInNoStates",
	InHdrError:        "XfrmInHdrError",
	InStateProtoError: "XfrmInStateProtoError",
	InStateSeqError:   "XfrmInStateSeqError",
	InStateExpired:    "XfrmInStateExpired",
	InStateMismatch:   "XfrmInStateMismatch",
	InStateModeError:  "XfrmInStateModeError",
	InTmplMismatch:    "XfrmInTmplMismatch",
	InNoPols:          "XfrmInNoPols",
	InPolBlock:        "XfrmInPolBlock",
	InBufferError:     "XfrmInBufferError",
	InPadError:        "SecnicInPadError",
	InDummy:           "SecnicInDummy",
	InFragment:        "SecnicInFragment",
	OutStateSeqError:  "XfrmOutStateSeqError",
	OutStateExpired:   "XfrmOutStateExpired",
	OutNoStates:       "XfrmOutNoStates",
	OutPolBlock:       "XfrmOutPolBlock",
	OutError:          "XfrmOutError",
	OutBufferError:    "SecnicOutBufferError",
	OutFragment:       "SecnicOutFragment",
	OutSeqReserve:     "SecnicOutSeqReserve",
}

var reasonHelp = [NumReasons]string{
	ReasonNone:        "no error",
	InNoStates:        "no inbound SA matches the SPI and destination; add the SA or check the peer's SPI",
	InHdrError:        "malformed or truncated IPsec packet",
	InStateProtoError: "ICV verification failed: wrong key, algorithm or tampering",
	InStateSeqError:   "replayed or too old sequence number (anti-replay window)",
	InStateExpired:    "the SA reached its hard lifetime; rekey",
	InStateMismatch:   "packet does not match the SA's protocol or addresses",
	InStateModeError:  "inner packet does not match the SA's mode",
	InTmplMismatch:    "decapsulated packet is outside the SA's selectors",
	InNoPols:          "unprotected packet with no inbound policy allowing it",
	InPolBlock:        "inbound policy discards this traffic",
	InBufferError:     "buffer too small",
	InPadError:        "bad ESP padding or pad length",
	InDummy:           "dummy packet (next header 59), discarded silently",
	InFragment:        "IP fragment offered to IPsec; reassemble first",
	OutStateSeqError:  "sequence number space exhausted; the SA must be rekeyed",
	OutStateExpired:   "the SA reached its hard lifetime; rekey",
	OutNoStates:       "policy requires protection but no outbound SA is installed",
	OutPolBlock:       "outbound policy discards this traffic",
	OutError:          "packet cannot be protected (malformed or too large)",
	OutBufferError:    "buffer lacks headroom or tailroom",
	OutFragment:       "IP fragment offered to transport-mode IPsec",
	OutSeqReserve:     "sequence numbers reserved in the state directory used up (waiting for the disk)",
}

// String returns the counter name, e.g. "XfrmInStateSeqError".
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "Unknown"
}

// Error returns the counter name and what it means.
func (r Reason) Error() string {
	if r < NumReasons {
		return reasonNames[r] + ": " + reasonHelp[r]
	}
	return "unknown drop reason"
}

// Outcome finishes a per-packet operation on s: a drop reason is counted on
// the SA; r is returned either way.
func (s *SA) Outcome(r Reason) Reason {
	if r != ReasonNone {
		s.Stats.Drop(r)
	}
	return r
}

// Counters are packet, byte and drop counters, updated atomically. The
// drop counters are allocated on an SA's first drop: most SAs of a large
// table never drop a packet, and the array is 23 words.
type Counters struct {
	Packets atomic.Uint64
	Bytes   atomic.Uint64
	drops   atomic.Pointer[dropCounters]
	// BeyondReserve counts inbound packets accepted above the replay
	// state already durable in the state directory (during a burst, while
	// the next reservation was being written): a crash at that moment
	// could let them be replayed (docs/reliability.md).
	BeyondReserve atomic.Uint64
}

type dropCounters [NumReasons]atomic.Uint64

// Drop counts one packet dropped for reason r. The SA's first drop
// allocates its drop counters (once).
func (c *Counters) Drop(r Reason) {
	if r >= NumReasons {
		return
	}
	d := c.drops.Load()
	if d == nil {
		d = c.newDrops()
	}
	d[r].Add(1)
}

func (c *Counters) newDrops() *dropCounters {
	n := new(dropCounters)
	if c.drops.CompareAndSwap(nil, n) {
		return n
	}
	return c.drops.Load()
}

// Dropped returns how many packets were dropped for reason r.
func (c *Counters) Dropped(r Reason) uint64 {
	d := c.drops.Load()
	if d == nil || r >= NumReasons {
		return 0
	}
	return d[r].Load()
}

// Count counts one packet of n bytes that passed.
func (c *Counters) Count(n int) {
	c.Packets.Add(1)
	c.Bytes.Add(uint64(n))
}

// CounterSnapshot is a point-in-time copy of Counters with the non-zero
// drops by name. (The name Snapshot is the SA table's lock-free view.)
type CounterSnapshot struct {
	Packets       uint64            `json:"packets"`
	Bytes         uint64            `json:"bytes"`
	Drops         map[string]uint64 `json:"drops,omitempty"`
	BeyondReserve uint64            `json:"beyond_reserve,omitempty"`
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() CounterSnapshot {
	s := CounterSnapshot{Packets: c.Packets.Load(), Bytes: c.Bytes.Load(), BeyondReserve: c.BeyondReserve.Load()}
	d := c.drops.Load()
	if d == nil {
		return s
	}
	for r := Reason(1); r < NumReasons; r++ {
		if v := d[r].Load(); v != 0 {
			if s.Drops == nil {
				s.Drops = map[string]uint64{}
			}
			s.Drops[r.String()] = v
		}
	}
	return s
}
