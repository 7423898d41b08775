package sadb

import (
	"encoding/binary"
	"net/netip"
	"sort"

	"github.com/secnic/secnic/internal/cow"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// The read path
//
// The table publishes an immutable *Snapshot through an atomic pointer after
// every change (RCU style). Readers load it once per batch and never lock.
//
// Copying whole maps on every change would make adding the n-th SA cost
// O(n). Instead every index is a cow.Map (package internal/cow): 4096 shards, each a small
// open-addressing hash table (linear probing on the low bits of the hash,
// which the table keeps, so a lookup never hashes the key again), chosen by
// the top bits of a 64-bit mix of the key, reached through a 64x64 tree
// whose leaves hold the shard headers. A change copies the root array, the
// leaf and the shard it touches; a batch (several bundles in one request, a
// reconcile) copies each of them once. With a million SAs a shard holds
// about 250 entries, so a single add copies about 250 entries.
//
// Inbound SAs: LookupIn hashes (SPI, protocol, destination) into the exact
// index, then, if nothing is there, (SPI, protocol) into the wildcard index
// of SAs whose destination is the NDIS wildcard (zero). Both are O(1): one
// mix, the root, the leaf, one probe run of the shard, no allocation.
//
// Policies: each direction has a classifier. A policy's selector has a
// shape: the address family, the source and destination prefix lengths
// (or "any"), and whether protocol, source port and destination port are
// wildcards. Policies are stored in one sharded hash map per direction,
// keyed by (shape, masked source, masked destination, protocol, ports) with
// the wildcard fields zeroed; for each key the map holds the best policy
// (lowest priority value, then lowest ID). A lookup walks the distinct
// shapes, sorted by the best priority they hold, masks the flow to each
// shape and does one map lookup; it stops as soon as the next shape's best
// priority cannot beat the match found. The cost is O(S) hash lookups where
// S is the number of distinct shapes in use (typically a handful: host
// pairs, a few subnets, a default), independent of the number of policies;
// a million host-to-host policies are one shape and one lookup. The worst
// case, every prefix-length pair in use, is bounded by 33x33x8 shapes for
// IPv4 and 129x129x8 for IPv6.

func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return cow.Mix64(hi ^ cow.Mix64(lo))
}

// inKey indexes inbound SAs with a destination. It is 24 bytes of plain
// integers, without padding or pointers (a netip.Addr holds a zone
// pointer), so the shard's map hashes and compares it as one block of
// memory: the destination's 16 bytes, then SPI, protocol and family.
// A zone is not part of the key: received packets carry none.
type inKey struct {
	hi, lo uint64
	id     uint64 // spi<<32 | proto<<8 | 4 or 6
}

func newInKey(spi uint32, proto sa.Protocol, dst netip.Addr) inKey {
	b := dst.As16()
	fam := uint64(6)
	if dst.Is4() {
		fam = 4
	}
	return inKey{
		hi: binary.BigEndian.Uint64(b[:8]),
		lo: binary.BigEndian.Uint64(b[8:]),
		id: uint64(spi)<<32 | uint64(proto)<<8 | fam,
	}
}

func (k inKey) hash() uint64 { return cow.Mix64(k.id >> 8) }

// wildKey indexes inbound SAs whose destination is the wildcard:
// spi<<8 | proto.
type wildKey uint64

func newWildKey(spi uint32, proto sa.Protocol) wildKey {
	return wildKey(uint64(spi)<<8 | uint64(proto))
}

func (k wildKey) hash() uint64 { return cow.Mix64(uint64(k)) }

func handleHash(h sa.Handle) uint64 { return cow.Mix64(uint64(h)) }

type saRef struct {
	sa *sa.SA
	b  *sa.Bundle
}

// polKey is a policy's selector with the wildcard fields zeroed, tagged
// with its shape.
type polKey struct {
	shape            uint32
	proto            uint8
	srcPort, dstPort uint16
	src, dst         netip.Addr
}

func (k *polKey) hash() uint64 {
	h := uint64(k.shape)<<40 ^ uint64(k.proto)<<32 ^ uint64(k.srcPort)<<16 ^ uint64(k.dstPort)
	return cow.Mix64(h ^ addrHash(k.src) ^ cow.Mix64(addrHash(k.dst)))
}

// shapeDesc is the shape of a selector (see the comment at the top).
type shapeDesc struct {
	fam              uint8 // 0 any, 4, 6
	srcBits, dstBits int16 // -1 any
	proto            bool  // protocol is matched (not a wildcard)
	srcPort, dstPort bool
}

func shapeOf(s saspec.Selector) shapeDesc {
	d := shapeDesc{srcBits: -1, dstBits: -1, proto: s.Proto != 0, srcPort: s.SrcPort != 0, dstPort: s.DstPort != 0}
	if s.Src.IsValid() {
		d.srcBits = int16(s.Src.Bits())
		d.fam = famOf(s.Src.Addr())
	}
	if s.Dst.IsValid() {
		d.dstBits = int16(s.Dst.Bits())
		d.fam = famOf(s.Dst.Addr())
	}
	return d
}

func famOf(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

// shape is a shape in use, as the snapshot sees it.
type shape struct {
	shapeDesc
	id      uint32
	minPrio int
}

func keyOf(id uint32, s saspec.Selector) polKey {
	k := polKey{shape: id, proto: s.Proto, srcPort: s.SrcPort, dstPort: s.DstPort}
	if s.Src.IsValid() {
		k.src = s.Src.Addr()
	}
	if s.Dst.IsValid() {
		k.dst = s.Dst.Addr()
	}
	return k
}

func maskAddr(a netip.Addr, bits int16) netip.Addr {
	p, err := a.Prefix(int(bits))
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

// classifier is one direction's policy index.
type classifier struct {
	shapes []shape // sorted by minPrio; replaced, never changed in place
	m      cow.Map[polKey, *Resolved]
}

func better(a, b *Policy) bool {
	if a.Priority != b.Priority {
		return a.Priority < b.Priority
	}
	return a.ID < b.ID
}

func (c *classifier) match(f *sa.Flow) *Resolved {
	fam := uint8(6)
	if f.Src.Is4() {
		fam = 4
	}
	var best *Resolved
	for i := range c.shapes {
		sh := &c.shapes[i]
		if best != nil && sh.minPrio > best.Policy.Priority {
			break
		}
		if sh.fam != 0 && sh.fam != fam {
			continue
		}
		k := polKey{shape: sh.id}
		if sh.srcBits >= 0 {
			k.src = maskAddr(f.Src, sh.srcBits)
		}
		if sh.dstBits >= 0 {
			k.dst = maskAddr(f.Dst, sh.dstBits)
		}
		if sh.proto {
			k.proto = f.Proto
		}
		if sh.srcPort {
			k.srcPort = f.SrcPort
		}
		if sh.dstPort {
			k.dstPort = f.DstPort
		}
		if r, ok := c.m.Get(k.hash(), k); ok && (best == nil || better(r.Policy, best.Policy)) {
			best = r
		}
	}
	return best
}

func sortShapes(s []shape) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].minPrio != s[j].minPrio {
			return s[i].minPrio < s[j].minPrio
		}
		return s[i].id < s[j].id
	})
}

// Snapshot is an immutable view of the SA table for the datapath. All its
// methods are lock-free, safe for concurrent use, and allocate nothing.
type Snapshot struct {
	gen     uint64
	inExact cow.Map[inKey, saRef]
	inWild  cow.Map[wildKey, saRef]
	bundles cow.Map[sa.Handle, *sa.Bundle]
	pol     [2]classifier // [0] inbound, [1] outbound
}

// Gen returns the snapshot's generation; it grows with every change.
func (s *Snapshot) Gen() uint64 { return s.gen }

// Len returns the number of bundles.
func (s *Snapshot) Len() int { return s.bundles.Len() }

// LookupIn finds the inbound SA for a received packet by (protocol, SPI,
// destination) in O(1): an SA for that destination, else one whose
// destination is the wildcard. It returns nil, nil if there is none
// (XfrmInNoStates).
func (s *Snapshot) LookupIn(proto sa.Protocol, spi uint32, dst netip.Addr) (*sa.SA, *sa.Bundle) {
	k := newInKey(spi, proto, dst)
	if r, ok := s.inExact.Get(k.hash(), k); ok {
		return r.sa, r.b
	}
	w := newWildKey(spi, proto)
	if r, ok := s.inWild.Get(w.hash(), w); ok {
		return r.sa, r.b
	}
	return nil, nil
}

// Bundle returns the bundle with handle h, or nil (NDIS: the OffloadHandle
// of a send NET_BUFFER_LIST; unknown handle = NDIS_STATUS_FAILURE).
func (s *Snapshot) Bundle(h sa.Handle) *sa.Bundle {
	b, _ := s.bundles.Get(handleHash(h), h)
	return b
}

// MatchOut returns the outbound policy for flow f, or nil if no policy
// matches (the NIC's default action applies).
func (s *Snapshot) MatchOut(f sa.Flow) *Resolved { return s.pol[1].match(&f) }

// MatchIn returns the inbound policy for flow f (the decapsulated packet,
// for the RFC 4301 selector check, or an unprotected packet), or nil.
func (s *Snapshot) MatchIn(f sa.Flow) *Resolved { return s.pol[0].match(&f) }

// Match is MatchIn or MatchOut by direction.
func (s *Snapshot) Match(d sa.Direction, f sa.Flow) *Resolved {
	if d == sa.In {
		return s.pol[0].match(&f)
	}
	return s.pol[1].match(&f)
}

// EachBundle calls fn for every bundle until it returns false.
func (s *Snapshot) EachBundle(fn func(*sa.Bundle) bool) {
	s.bundles.Each(func(_ sa.Handle, b *sa.Bundle) bool { return fn(b) })
}

// Allows reports whether an inbound Resolved accepts packets that arrived
// through bundle b (the RFC 4301 inbound selector check: a Protect policy
// that lists b).
func (r *Resolved) Allows(b *sa.Bundle) bool {
	if r == nil || r.Action != saspec.Protect || b == nil {
		return false
	}
	for _, x := range r.Bundles {
		if x == b {
			return true
		}
	}
	return false
}

func dirIndex(d sa.Direction) int {
	if d == sa.In {
		return 0
	}
	return 1
}

// Admit is the RFC 4301 5.2 inbound selector check of a datagram that
// came through bundles (outermost first): it must match an inbound Protect
// policy that lists every one of them. loc is packet.Locate of pkt as
// bundle.Decap leaves it, or nil: the flow is read with sa.FlowOfLoc. It
// returns sa.InHdrError for a datagram without a readable flow,
// sa.InTmplMismatch when no such policy admits it.
func (s *Snapshot) Admit(pkt []byte, loc *packet.Loc, bundles []*sa.Bundle) sa.Reason {
	flow, ok := sa.FlowOfLoc(pkt, loc)
	if !ok {
		return sa.InHdrError
	}
	pol := s.MatchIn(flow)
	for _, b := range bundles {
		if !pol.Allows(b) {
			return sa.InTmplMismatch
		}
	}
	return sa.ReasonNone
}
