package tun

import (
	"bytes"
	"testing"
	"time"
)

func TestFaultyPortIsSeededAndAccounts(t *testing.T) {
	run := func(seed uint64) ([][]byte, FaultStats) {
		a, b := NewMemPairConfig(MemConfig{Batch: 64, MTU: 256, Depth: 4096})
		f := NewFaulty(a, FaultConfig{Seed: seed, Drop: 0.1, Corrupt: 0.1, Duplicate: 0.1, Reorder: 0.1, ReorderDepth: 4, ReorderHold: time.Hour})
		var in [][]byte
		for i := range 1000 {
			in = append(in, bytes.Repeat([]byte{byte(i), byte(i >> 8)}, 20))
		}
		orig := make([][]byte, len(in))
		for i := range in {
			orig[i] = bytes.Clone(in[i])
		}
		for i := 0; i < len(in); i += 50 {
			if n, err := f.Write(in[i:i+50], 0); err != nil || n != 50 {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		for i := range in {
			if !bytes.Equal(in[i], orig[i]) {
				t.Fatalf("Write modified the caller's packet %d", i)
			}
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		st := f.Stats()
		var out [][]byte
		bufs := make([][]byte, 64)
		for i := range bufs {
			bufs[i] = make([]byte, 256)
		}
		sizes := make([]int, 64)
		for b.Queued() > 0 {
			n, err := b.Read(bufs, sizes, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				out = append(out, bytes.Clone(bufs[i][:sizes[i]]))
			}
		}
		f.Close()
		return out, st
	}
	out1, st1 := run(42)
	out2, st2 := run(42)
	if st1 != st2 || len(out1) != len(out2) {
		t.Fatalf("the same seed gave %v and %v", st1, st2)
	}
	for i := range out1 {
		if !bytes.Equal(out1[i], out2[i]) {
			t.Fatalf("the same seed gave different packet %d", i)
		}
	}
	if st1.Dropped == 0 || st1.Corrupted == 0 || st1.Duplicated == 0 || st1.Reordered == 0 {
		t.Errorf("some fault never happened: %v", st1)
	}
	if st1.Written != 1000 || st1.Sent != st1.Written-st1.Dropped+st1.Duplicated || uint64(len(out1)) != st1.Sent {
		t.Errorf("accounting: %v, %d packets out", st1, len(out1))
	}
	if _, st3 := run(43); st3 == st1 {
		t.Errorf("another seed gave the same faults: %v", st3)
	}
}
