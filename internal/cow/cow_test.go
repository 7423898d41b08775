package cow

import (
	"math/rand/v2"
	"testing"
)

// hashOf gives colliding hashes on purpose for some keys (same shard, same
// home slot), so that probe runs, wrap-around and backward-shift deletion
// are exercised.
func hashOf(k uint32) uint64 {
	if k%7 == 0 {
		return Mix64(uint64(k % 3)) // many keys, three hashes
	}
	return Mix64(uint64(k))
}

func check(t *testing.T, m *Map[uint32, int], model map[uint32]int, universe uint32) {
	t.Helper()
	if m.Len() != len(model) {
		t.Fatalf("Len %d, want %d", m.Len(), len(model))
	}
	for k := range universe {
		v, ok := m.Get(hashOf(k), k)
		w, wok := model[k]
		if ok != wok || v != w {
			t.Fatalf("Get(%d) = %d %v, want %d %v", k, v, ok, w, wok)
		}
	}
	n := 0
	m.Each(func(k uint32, v int) bool {
		n++
		if model[k] != v {
			t.Fatalf("Each: %d=%d, want %d", k, v, model[k])
		}
		return true
	})
	if n != len(model) {
		t.Fatalf("Each visited %d entries, want %d", n, len(model))
	}
}

// TestMapAgainstModel applies random batches of sets and deletes, each
// batch to a copy of the previous version as the SA table does, and
// checks every version against a Go map, including that the old version
// did not change.
func TestMapAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const universe = 3000
	var cur Map[uint32, int]
	model := map[uint32]int{}
	for round := range 200 {
		prev, prevModel := cur, clone(model)
		next := cur
		var w Writer[uint32, int]
		w.Init(&next)
		for range r.IntN(400) {
			k := uint32(r.IntN(universe))
			if r.IntN(3) == 0 {
				w.Del(hashOf(k), k)
				delete(model, k)
			} else {
				v := r.Int()
				w.Set(hashOf(k), k, v)
				model[k] = v
			}
		}
		check(t, &next, model, universe)
		check(t, &prev, prevModel, universe) // readers of the old version see no change
		cur = next
		if round%50 == 49 { // delete everything
			next := cur
			w.Init(&next)
			for k := range model {
				w.Del(hashOf(k), k)
			}
			model = map[uint32]int{}
			check(t, &next, model, universe)
			cur = next
		}
	}
}

func clone(m map[uint32]int) map[uint32]int {
	c := make(map[uint32]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func TestZeroMap(t *testing.T) {
	var m Map[uint32, int]
	if _, ok := m.Get(1, 1); ok || m.Len() != 0 {
		t.Fatal("the zero Map is not empty")
	}
	m.Each(func(uint32, int) bool { t.Fatal("Each on the zero Map"); return false })
}
