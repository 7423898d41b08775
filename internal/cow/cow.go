// Package cow is the copy-on-write sharded map behind the SA table's
// snapshots: an immutable Map that readers use without locks, and a
// Writer that builds the next version by copying only the parts it
// changes. See sa/snapshot.go ("The read path") for why.
package cow

import "maps"

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

// The shards form a two-level tree (64 leaves of 64 maps), so that a change
// copies 64 pointers at each level rather than all 4096.
const (
	leafBits = 6
	nLeaves  = 1 << (shardBits - leafBits)
	leafSize = 1 << leafBits
)

type leaf[K comparable, V any] [leafSize]map[K]V

type shardTree[K comparable, V any] [nLeaves]*leaf[K, V]

// Map is an immutable sharded map: 4096 shards, each an ordinary Go map,
// chosen by the top bits of the key's 64-bit hash and reached through a
// 64x64 tree of pointer arrays. The zero value is an empty map.
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
	l := m.root[i>>leafBits]
	if l == nil {
		return zero, false
	}
	v, ok := l[i&(leafSize-1)][k]
	return v, ok
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
		for _, s := range l {
			for k, v := range s {
				if !fn(k, v) {
					return
				}
			}
		}
	}
}

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

func (w *Writer[K, V]) shard(h uint64) map[K]V {
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
	l := w.m.root[li]
	si := i & (leafSize - 1)
	if w.ownShards[i/64]&(1<<(i%64)) == 0 {
		w.ownShards[i/64] |= 1 << (i % 64)
		old := l[si]
		n := make(map[K]V, len(old)+1)
		maps.Copy(n, old)
		l[si] = n
	}
	return l[si]
}

// Set sets k (hash h) to v.
func (w *Writer[K, V]) Set(h uint64, k K, v V) {
	s := w.shard(h)
	if _, ok := s[k]; !ok {
		w.m.n++
	}
	s[k] = v
}

// Del deletes k (hash h).
func (w *Writer[K, V]) Del(h uint64, k K) {
	if _, ok := w.m.Get(h, k); !ok {
		return
	}
	s := w.shard(h)
	delete(s, k)
	w.m.n--
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int { return m.n }
