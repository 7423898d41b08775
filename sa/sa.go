// Package sa is the datapath state of security associations: one SA's
// crypto suite, sequence counter (bounded by its reservation), RFC 6479
// anti-replay window, lifetimes and counters, its precomputed outer
// header, bundles of SAs, flows and drop reasons. It is the leaf that esp,
// ah and bundle build on: no configuration, logging or table code. The SA
// table, policies and their schema are in package sadb.
package sa

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/internal/suite"
)

// Protocol is the IPsec protocol of an SA: its IP protocol number.
type Protocol uint8

// IPsec protocols.
const (
	ESP Protocol = 50
	AH  Protocol = 51
)

func (p Protocol) String() string {
	switch p {
	case ESP:
		return "esp"
	case AH:
		return "ah"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Direction is inbound or outbound.
type Direction uint8

// Directions.
const (
	In  Direction = 1
	Out Direction = 2
)

func (d Direction) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "invalid"
}

// Mode is transport or tunnel.
type Mode uint8

// Modes.
const (
	Transport Mode = 1
	Tunnel    Mode = 2
)

func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	}
	return "invalid"
}

// DFMode says how the outer IPv4 DF bit is set in tunnel mode (RFC 4301 8.1).
type DFMode uint8

// DF bit handling.
const (
	DFCopy  DFMode = iota // copy DF from an inner IPv4 header; set for inner IPv6
	DFSet                 // always set
	DFClear               // always clear
)

// UDPEncap is RFC 3948 UDP encapsulation of ESP.
type UDPEncap struct {
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
}

// Limits is one set of lifetime limits; zero means unlimited.
type Limits struct {
	Bytes   uint64        `json:"bytes,omitempty"`
	Packets uint64        `json:"packets,omitempty"`
	Time    time.Duration `json:"seconds,omitempty"`
}

// Params are the datapath parameters of one SA.
type Params struct {
	SPI   uint32
	Proto Protocol
	Dir   Direction
	Mode  Mode
	// Src and Dst are the SA's endpoints: the outer addresses in tunnel
	// mode, the host addresses in transport mode (zero = wildcard there).
	Src, Dst netip.Addr
	// ESN enables 64-bit extended sequence numbers.
	ESN bool
	// SeqHigh is the initial high half of the sequence number (NDIS
	// SequenceNumberHighOrder); only with ESN.
	SeqHigh uint32
	// ReplayWindow is the inbound anti-replay window in packets; 0 disables
	// anti-replay (RFC 4303 3.4.3 allows this per SA).
	ReplayWindow int
	// Encap enables RFC 3948 UDP encapsulation (ESP only).
	Encap *UDPEncap
	// TTL is the outer TTL or hop limit in tunnel mode (0 means 64).
	TTL uint8
	// DF controls the outer IPv4 DF bit in tunnel mode.
	DF DFMode
	// TFCPad pads tunnel-mode inner packets up to this many bytes (RFC 4303 2.7).
	TFCPad int
	// Soft and Hard are the lifetimes. Soft raises an expire event; hard
	// stops the SA.
	Soft, Hard Limits
}

// SA is one security association with its datapath state. Its methods are
// safe for concurrent use.
type SA struct {
	Params
	Suite *suite.Suite

	seq atomic.Uint64 // outbound: last sequence number sent
	// limit is the highest outbound sequence number reserved in the state
	// directory (MaxUint64 without one); at refillAt, NextSeq asks the
	// reserver for more (reservation.go).
	limit    atomic.Uint64
	refillAt atomic.Uint64
	resv     reservation
	Replay   ReplayWindow // inbound
	Stats    Counters

	created time.Time
	// expired is set when a hard limit is reached; soft when a soft one is.
	expired      atomic.Bool
	softFired    atomic.Bool
	seqHardFired atomic.Bool
	// OnExpire, if set, is called once when the soft lifetime is reached
	// (hard=false) and once when the hard lifetime is (hard=true). It must not block.
	OnExpire func(s *SA, hard bool)
	closeMu  sync.Mutex
	closed   bool

	outer outerTemplate // tunnel-mode outer header, precomputed (outer.go)
}

// ErrSeqExhausted is returned when the outbound sequence number space is
// used up. The SA never wraps (RFC 4303 3.3.3); it must be rekeyed.
var ErrSeqExhausted = OutStateSeqError

// New creates an SA with suite su, which it owns from now on (Close destroys it).
func New(p Params, su *suite.Suite) (*SA, error) {
	if su == nil {
		return nil, errors.New("sa: no crypto suite")
	}
	if p.SPI == 0 {
		return nil, errors.New("sa: SPI 0 is reserved and never sent (RFC 4303 2.1); choose an SPI of 256 or more")
	}
	if p.Proto != ESP && p.Proto != AH {
		return nil, fmt.Errorf("sa: protocol must be esp or ah, not %v", p.Proto)
	}
	if (p.Proto == AH) != su.IsAH() {
		return nil, fmt.Errorf("sa: %v SA given a suite built for the other protocol", p.Proto)
	}
	if p.Dir != In && p.Dir != Out {
		return nil, errors.New("sa: direction must be in or out")
	}
	if p.Mode != Transport && p.Mode != Tunnel {
		return nil, errors.New("sa: mode must be transport or tunnel")
	}
	if p.Mode == Tunnel {
		if !p.Src.IsValid() || !p.Dst.IsValid() || p.Src.Is4() != p.Dst.Is4() {
			return nil, errors.New("sa: a tunnel-mode SA needs source and destination tunnel endpoints of one IP family")
		}
	}
	if p.Encap != nil && p.Proto != ESP {
		return nil, errors.New("sa: UDP encapsulation is for ESP only (RFC 3948); AH cannot traverse NAT")
	}
	if !p.ESN && p.SeqHigh != 0 {
		return nil, errors.New("sa: initial sequence high bits need ESN")
	}
	if p.TFCPad < 0 || p.TFCPad > 65535 {
		return nil, errors.New("sa: TFC padding must be between 0 and 65535 bytes")
	}
	s := &SA{Params: p, Suite: su, created: time.Now()}
	s.limit.Store(math.MaxUint64)
	s.refillAt.Store(math.MaxUint64)
	s.outer.init(p)
	if err := s.Replay.Init(p.ReplayWindow); err != nil {
		return nil, err
	}
	if p.ESN && p.SeqHigh != 0 {
		if p.Dir == Out {
			s.seq.Store(uint64(p.SeqHigh) << 32)
		} else {
			s.Replay.SetTop(uint64(p.SeqHigh) << 32)
		}
	}
	return s, nil
}

// MaxSeq returns the last sequence number the SA may send.
func (s *SA) MaxSeq() uint64 {
	if s.ESN {
		return math.MaxUint64
	}
	return math.MaxUint32
}

// NextSeq takes the next outbound sequence number. At the end of the
// sequence space it refuses (ErrSeqExhausted) instead of wrapping; above
// the numbers reserved in the state directory it refuses too
// (ErrSeqReserve) until the next reservation is durable. It never
// blocks, locks or allocates.
func (s *SA) NextSeq() (uint64, error) {
	seq, r := s.nextSeq()
	if r != ReasonNone {
		return 0, r
	}
	return seq, nil
}

// TakeSeq is NextSeq for the datapath: it returns the drop Reason
// (OutStateSeqError or OutSeqReserve) instead of an error.
func (s *SA) TakeSeq() (uint64, Reason) { return s.nextSeq() }

func (s *SA) nextSeq() (uint64, Reason) {
	max := s.MaxSeq()
	for {
		cur := s.seq.Load()
		if cur >= max {
			return 0, OutStateSeqError
		}
		if cur >= s.limit.Load() {
			s.lowReserve()
			return 0, OutSeqReserve
		}
		if s.seq.CompareAndSwap(cur, cur+1) {
			if cur >= s.refillAt.Load() {
				s.lowReserve()
			}
			return cur + 1, ReasonNone
		}
	}
}

// LastSeq returns the last outbound sequence number used.
func (s *SA) LastSeq() uint64 { return s.seq.Load() }

// SetSeq sets the outbound counter so that the next packet uses seq+1; it
// never moves the counter backwards (that would reuse nonces). For tests,
// the offline tool and NDIS-style updates.
func (s *SA) SetSeq(seq uint64) error {
	for {
		cur := s.seq.Load()
		if seq < cur {
			return fmt.Errorf("sa: refusing to move the sequence number back from %d to %d (IVs would repeat)", cur, seq)
		}
		if s.seq.CompareAndSwap(cur, seq) {
			return nil
		}
	}
}

// UpdateSeqHigh applies NDIS UPDATE_SA / XFRM advance_esn: new high-order
// 32 bits of the extended sequence number.
func (s *SA) UpdateSeqHigh(hi uint32) error {
	if !s.ESN {
		return errors.New("sa: the SA does not use extended sequence numbers")
	}
	if s.Dir == Out {
		return s.SetSeq(uint64(hi) << 32)
	}
	// Keep the history of what is still inside the window: a jump of the
	// high bits must not let already received packets in again.
	s.Replay.Advance(uint64(hi) << 32)
	return nil
}

// SoftExpired reports whether the SA reached a soft lifetime (or ran low
// on sequence numbers).
func (s *SA) SoftExpired() bool { return s.softFired.Load() }

// Expired reports whether the SA reached a hard lifetime.
func (s *SA) Expired() bool { return s.expired.Load() }

// Age returns how long ago the SA was created.
func (s *SA) Age() time.Duration { return time.Since(s.created) }

// Account counts a processed packet of n bytes against the counters and
// lifetimes. It returns false if the SA has reached its hard lifetime, in
// which case the packet must be dropped.
func (s *SA) Account(n int) bool {
	if s.expired.Load() {
		return false
	}
	pk := s.Stats.Packets.Add(1)
	by := s.Stats.Bytes.Add(uint64(n))
	if s.Hard != (Limits{}) && over(s.Hard, pk, by, 0) {
		s.expire(true)
	}
	if s.Soft != (Limits{}) && !s.softFired.Load() && over(s.Soft, pk, by, 0) {
		s.expire(false)
	}
	return true
}

// CheckTime applies the time lifetimes; the SA table calls it periodically.
func (s *SA) CheckTime(now time.Time) {
	age := now.Sub(s.created)
	if s.Hard.Time != 0 && age >= s.Hard.Time {
		s.expire(true)
	}
	if s.Soft.Time != 0 && age >= s.Soft.Time && !s.softFired.Load() {
		s.expire(false)
	}
}

func over(l Limits, pk, by uint64, _ time.Duration) bool {
	return (l.Packets != 0 && pk >= l.Packets) || (l.Bytes != 0 && by >= l.Bytes)
}

func (s *SA) expire(hard bool) {
	if hard {
		if s.expired.Swap(true) {
			return
		}
	} else if s.softFired.Swap(true) {
		return
	}
	if f := s.OnExpire; f != nil {
		f(s, hard)
	}
}

// Close destroys the SA's keys. Packets in flight fail afterwards.
func (s *SA) Close() {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.expired.Store(true)
	s.Suite.Close()
}

// String describes the SA without key material.
func (s *SA) String() string {
	return fmt.Sprintf("%v %v spi=0x%08x %v %v->%v enc=%s auth=%s esn=%v", s.Proto, s.Dir, s.SPI, s.Mode, s.Src, s.Dst, s.Suite.Enc(), s.Suite.Auth(), s.ESN)
}
