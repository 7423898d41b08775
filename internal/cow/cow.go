// Package cow is the copy-on-write sharded map behind the SA table's
// snapshots: an immutable Map that readers use without locks, and a
// Writer that builds the next version by copying only the parts it
// changes. See sadb/snapshot.go ("The read path") for why.
package cow

const (
	shardBits = 12
	nShards   = 1 << shardBits
)

// Mix64 is the splitmix64 finalizer: a cheap, well-mixed 64-bit hash of x.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// The shards form a two-level tree (64 leaves of 64 shards), so that a
// change copies 64 shard headers at each level rather than all 4096.
const (
	leafBits = 6
	nLeaves  = 1 << (shardBits - leafBits)
	leafSize = 1 << leafBits
)

// A shard is an open-addressing hash table with linear probing, indexed
// by the low bits of the caller's hash (the shard is chosen by the top
// bits). Each slot keeps the hash, with bit 0 set so that 0 marks an
// empty slot; a lookup compares hashes before keys. Unlike a Go map, a
// lookup reaches the slot from the leaf in one load (the shard header is
// in the leaf) and never hashes the key again: at a million entries that
// is two or three cache misses fewer.
type shard[K comparable, V any] struct {
	slots []slot[K, V] // len is 0 or a power of two, at most 3/4 full
	n     int
}

type slot[K comparable, V any] struct {
	h uint64 // hash | 1; 0: empty
	k K
	v V
}

type leaf[K comparable, V any] [leafSize]shard[K, V]

type shardTree[K comparable, V any] [nLeaves]*leaf[K, V]

// Map is an immutable sharded map: 4096 shards, each a small hash table,
// chosen by the top bits of the key's 64-bit hash and reached through a
// 64x64 tree. The zero value is an empty map.
type Map[K comparable, V any] struct {
	root *shardTree[K, V] // nil when empty
	n    int
}

func shardOf(h uint64) uint64 { return h >> (64 - shardBits) }

// Get returns the value of k, whose hash is h.
func (m *Map[K, V]) Get(h uint64, k K) (V, bool) {
	var zero V
	if m.root == nil {
		return zero, false
	}
	i := shardOf(h)
	l := m.root[(i>>leafBits)&(nLeaves-1)]
	if l == nil {
		return zero, false
	}
	slots := l[i&(leafSize-1)].slots
	if len(slots) == 0 {
		return zero, false
	}
	mask := uint64(len(slots) - 1)
	h |= 1
	for j := h & mask; ; j = (j + 1) & mask {
		s := &slots[j]
		if s.h == h && s.k == k {
			return s.v, true
		}
		if s.h == 0 {
			return zero, false
		}
	}
}

// Each calls fn for every entry until fn returns false.
func (m *Map[K, V]) Each(fn func(K, V) bool) {
	if m.root == nil {
		return
	}
	for _, l := range m.root {
		if l == nil {
			continue
		}
		for i := range l {
			for j := range l[i].slots {
				if s := &l[i].slots[j]; s.h != 0 && !fn(s.k, s.v) {
					return
				}
			}
		}
	}
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int { return m.n }

// Writer changes a Map of a snapshot under construction, copying the
// root, each leaf and each shard at most once. The Map must be a copy
// that no reader sees yet.
type Writer[K comparable, V any] struct {
	m         *Map[K, V]
	ownRoot   bool
	ownLeaves uint64
	ownShards [nShards / 64]uint64
}

// Init starts writing m.
func (w *Writer[K, V]) Init(m *Map[K, V]) {
	*w = Writer[K, V]{m: m}
}

// shard returns the shard of hash h, owned by w: copied once from the
// version readers may see, with room for extra more entries.
func (w *Writer[K, V]) shard(h uint64, extra int) *shard[K, V] {
	if !w.ownRoot {
		n := new(shardTree[K, V])
		if w.m.root != nil {
			*n = *w.m.root
		}
		w.m.root = n
		w.ownRoot = true
	}
	i := shardOf(h)
	li := i >> leafBits
	if w.ownLeaves&(1<<li) == 0 {
		w.ownLeaves |= 1 << li
		n := new(leaf[K, V])
		if old := w.m.root[li]; old != nil {
			*n = *old
		}
		w.m.root[li] = n
	}
	s := &w.m.root[li][i&(leafSize-1)]
	if w.ownShards[i/64]&(1<<(i%64)) == 0 {
		w.ownShards[i/64] |= 1 << (i % 64)
		s.slots = rehash(s.slots, s.n+extra)
	} else if 4*(s.n+extra) > 3*len(s.slots) {
		s.slots = rehash(s.slots, s.n+extra)
	}
	return s
}

// rehash returns a new table holding the entries of old, sized for n
// entries at most half full.
func rehash[K comparable, V any](old []slot[K, V], n int) []slot[K, V] {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	slots := make([]slot[K, V], size)
	mask := uint64(size - 1)
	for i := range old {
		o := &old[i]
		if o.h == 0 {
			continue
		}
		j := o.h & mask
		for slots[j].h != 0 {
			j = (j + 1) & mask
		}
		slots[j] = *o
	}
	return slots
}

// shrink gives back the table of a shard that deletes left empty or
// sparse (the shard is owned by the writer).
func (s *shard[K, V]) shrink() {
	switch {
	case s.n == 0:
		s.slots = nil
	case len(s.slots) > 8 && 8*s.n < len(s.slots):
		s.slots = rehash(s.slots, s.n)
	}
}

// Set sets k (hash h) to v.
func (w *Writer[K, V]) Set(h uint64, k K, v V) {
	s := w.shard(h, 1)
	mask := uint64(len(s.slots) - 1)
	h |= 1
	j := h & mask
	for ; s.slots[j].h != 0; j = (j + 1) & mask {
		if x := &s.slots[j]; x.h == h && x.k == k {
			x.v = v
			return
		}
	}
	s.slots[j] = slot[K, V]{h: h, k: k, v: v}
	s.n++
	w.m.n++
}

// Del deletes k (hash h).
func (w *Writer[K, V]) Del(h uint64, k K) {
	if _, ok := w.m.Get(h, k); !ok {
		return
	}
	s := w.shard(h, 0)
	mask := uint64(len(s.slots) - 1)
	h |= 1
	j := h & mask
	for !(s.slots[j].h == h && s.slots[j].k == k) {
		j = (j + 1) & mask
	}
	// Backward-shift deletion: move later entries of the probe run into
	// the hole when their home slot does not lie after it, so that no
	// lookup stops early at an empty slot.
	for {
		s.slots[j] = slot[K, V]{}
		i := j
		for {
			i = (i + 1) & mask
			x := &s.slots[i]
			if x.h == 0 {
				s.n--
				w.m.n--
				s.shrink()
				return
			}
			home := x.h & mask
			// x may move to j if j is cyclically in [home, i).
			if (i-home)&mask >= (i-j)&mask {
				s.slots[j] = *x
				j = i
				break
			}
		}
	}
}
