package sadb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/saspec"
)

// gcmOut is an outbound ESP AES-GCM-128 tunnel bundle with key k.
func gcmOut(name string, spi uint32, k saspec.Key) saspec.BundleSpec {
	return saspec.BundleSpec{Name: name, Dir: "out", Mode: "tunnel", Src: "192.0.2.1", Dst: "192.0.2.2",
		ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: k}}
}

func gcmIn(name string, spi uint32, k saspec.Key) saspec.BundleSpec {
	return saspec.BundleSpec{Name: name, Dir: "in", Mode: "tunnel", Src: "192.0.2.2", Dst: "192.0.2.1",
		ESP: &saspec.SASpec{SPI: saspec.SPI(spi), Enc: "aes-gcm-128", EncKey: k}}
}

// persistentTable opens the ledger in dir and a table on it.
func persistentTable(t *testing.T, dir string) *Table {
	t.Helper()
	l, err := ledger.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := NewTable(TableConfig{Caps: newManager(t, "full"), Logger: quietLogger(), Ledger: l})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// crash throws a table away as SIGKILL would: no final writes, nothing
// closed but the ledger's file descriptors.
func crash(tb *Table) {
	if tb.res != nil {
		tb.res.close()
	}
	tb.ledger.Close()
}

func outSA(t *testing.T, tb *Table, name string) *sa.SA {
	t.Helper()
	h, err := tb.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	return tb.Snapshot().Bundle(h).ESP
}

// send takes n sequence numbers from s, waiting for reservations.
func send(t *testing.T, s *sa.SA, n int) (first, last uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < n; {
		seq, r := s.TakeSeq()
		switch r {
		case sa.ReasonNone:
			if first == 0 {
				first = seq
			}
			last = seq
			i++
		case sa.OutSeqReserve:
			if time.Now().After(deadline) {
				t.Fatalf("no reservation after %d packets", i)
			}
			time.Sleep(100 * time.Microsecond)
		default:
			t.Fatalf("TakeSeq: %v", r)
		}
	}
	return first, last
}

func TestKeyReuseRefused(t *testing.T) {
	tb := newTable(t, "full")
	k := keyForSPI(20, 0x77)
	mustAdd(t, tb, gcmOut("a", 0x1001, k))

	// A second live outbound SA with the same key, whatever its SPI or
	// destination, or the same key bytes under another algorithm.
	other := gcmOut("b", 0x1002, k)
	other2 := gcmOut("c", 0x1003, k)
	other2.Dst = "192.0.2.9"
	gmac := gcmOut("d", 0x1004, k)
	gmac.ESP.Enc = "aes-gmac-128"
	for _, s := range []saspec.BundleSpec{other, other2, gmac} {
		_, err := tb.Add(s)
		if !errors.Is(err, saspec.ErrKeyReuse) || saspec.ErrorCode(err) != "key_reuse" {
			t.Fatalf("%s: %v (code %q), want key_reuse", s.Name, err, saspec.ErrorCode(err))
		}
		if want := "already used by outbound esp SPI 0x00001001"; !contains(err.Error(), want) {
			t.Errorf("%s: %q lacks %q", s.Name, err, want)
		}
	}
	// Within one request: the second is refused, the first offloaded.
	k2 := keyForSPI(20, 0x78)
	res, err := tb.AddBundles([]saspec.BundleSpec{gcmOut("e", 0x2001, k2), gcmOut("f", 0x2002, k2)})
	if err != nil || res[0].Handle == 0 || res[1].Code != "key_reuse" {
		t.Fatalf("batch: %+v %v", res, err)
	}
	// Inbound SAs are not limited (each has its own record), and an
	// inbound SA with the key of an outbound one is the peer's business.
	mustAdd(t, tb, gcmIn("in", 0x3001, k))
	if n := tb.Usage().Bundles; n != 3 {
		t.Errorf("%d bundles, want 3", n)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatal("timed out")
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestReAddContinues: deleting an outbound SA and adding it back (same SPI,
// algorithm, endpoints) continues above its last sequence number; adding
// its key under another SPI is refused.
func TestReAddContinues(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprint("persistent=", persistent), func(t *testing.T) {
			var tb *Table
			if persistent {
				tb = persistentTable(t, t.TempDir()+"/state")
				t.Cleanup(func() { tb.Close(); tb.ledger.Close() })
			} else {
				tb = newTable(t, "full")
			}
			k := keyForSPI(20, 0x99)
			h := mustAdd(t, tb, gcmOut("a", 0x1001, k))
			_, last := send(t, outSA(t, tb, "a"), 10)
			if err := tb.Delete(h); err != nil {
				t.Fatal(err)
			}
			mustAdd(t, tb, gcmOut("a", 0x1001, k))
			if first, _ := send(t, outSA(t, tb, "a"), 1); first <= last {
				t.Fatalf("re-added SA sent sequence number %d after %d", first, last)
			}
			h2, _ := tb.Resolve("a")
			tb.Delete(h2)
			_, err := tb.Add(gcmOut("a", 0x1009, k))
			if !errors.Is(err, saspec.ErrKeyReuse) || !contains(err.Error(), "give fresh keys") {
				t.Fatalf("same key, new SPI: %v", err)
			}
		})
	}
}

// TestCrashKeepsSequenceAndWindow: after a crash (no shutdown), the same
// configuration continues every outbound sequence number above what was
// sent and refuses every inbound sequence number already accepted.
func TestCrashKeepsSequenceAndWindow(t *testing.T) {
	dir := t.TempDir() + "/state"
	kOut, kIn := keyForSPI(20, 0x10), keyForSPI(20, 0x20)
	state := saspec.State{SAs: []saspec.BundleSpec{gcmOut("out", 0x1001, kOut), gcmIn("in", 0x2001, kIn)}}
	tb := persistentTable(t, dir)
	if sum, err := tb.Reconcile(state); err != nil || len(sum.Failed) > 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	// More than the initial reservation, so that refills happened.
	_, lastOut := send(t, outSA(t, tb, "out"), initialOutMargin+5000)
	in := outSA(t, tb, "in")
	for seq := uint64(1); seq <= 3000; seq++ {
		if r := in.AcceptSeq(seq); r != sa.ReasonNone {
			t.Fatalf("accept %d: %v", seq, r)
		}
		if seq%500 == 0 {
			// Give the reserver its fsync; a burst faster than the disk
			// is accepted beyond the reservation and counted.
			waitUntil(t, func() bool { return in.Reservation() >= seq })
		}
	}
	beyond := in.Stats.BeyondReserve.Load()
	crash(tb)

	tb2 := persistentTable(t, dir)
	defer func() { tb2.Close(); tb2.ledger.Close() }()
	if sum, err := tb2.Reconcile(state); err != nil || len(sum.Failed) > 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	if first, _ := send(t, outSA(t, tb2, "out"), 1); first <= lastOut {
		t.Fatalf("after the crash the SA sent %d; %d was sent before", first, lastOut)
	}
	in2 := outSA(t, tb2, "in")
	for seq := uint64(1); seq <= 3000; seq++ {
		if in2.Replay.Check(seq) {
			t.Fatalf("after the crash, sequence number %d (accepted before) passes the replay check; %d were accepted beyond the reservation", seq, beyond)
		}
	}
	// New traffic flows once past the margin.
	top := in2.Replay.Top()
	if top-3000 > MaxInMargin {
		t.Errorf("restart window at %d: more than a margin above 3000", top)
	}
	if r := in2.AcceptSeq(top + 1); r != sa.ReasonNone {
		t.Errorf("new packet after the restart: %v", r)
	}
}

// TestCleanShutdownExact: a clean shutdown records each inbound window
// exactly, so that a restart refuses nothing new.
func TestCleanShutdownExact(t *testing.T) {
	dir := t.TempDir() + "/state"
	state := saspec.State{SAs: []saspec.BundleSpec{gcmIn("in", 0x2001, keyForSPI(20, 0x21))}}
	tb := persistentTable(t, dir)
	tb.Reconcile(state)
	in := outSA(t, tb, "in")
	for seq := uint64(1); seq <= 40; seq++ {
		if r := in.AcceptSeq(seq); r != sa.ReasonNone {
			t.Fatal(r)
		}
	}
	tb.Close()
	tb.ledger.Close()
	tb2 := persistentTable(t, dir)
	defer func() { tb2.Close(); tb2.ledger.Close() }()
	tb2.Reconcile(state)
	in2 := outSA(t, tb2, "in")
	if in2.Replay.Check(40) || !in2.Replay.Check(41) || in2.Replay.Top() != 40 {
		t.Fatalf("after a clean restart: top %d, 40 ok %v, 41 ok %v", in2.Replay.Top(), in2.Replay.Check(40), in2.Replay.Check(41))
	}
}

// TestReservationNeverBehind: whatever the datapath has used is always
// covered by the durable record.
func TestReservationNeverBehind(t *testing.T) {
	tb := persistentTable(t, t.TempDir()+"/state")
	defer func() { tb.Close(); tb.ledger.Close() }()
	mustAdd(t, tb, gcmOut("out", 0x1001, keyForSPI(20, 0x31)))
	s := outSA(t, tb, "out")
	drops := 0
	for range 200 {
		n := 0
		for n < 2000 {
			if _, r := s.TakeSeq(); r == sa.ReasonNone {
				n++
			} else {
				drops++
				time.Sleep(50 * time.Microsecond)
			}
		}
		rec, ok := tb.ledger.Get(tb.uses.get(s).fp)
		if !ok || rec.Seq < s.LastSeq() {
			t.Fatalf("sent %d but the ledger has %d", s.LastSeq(), rec.Seq)
		}
	}
	t.Logf("400000 packets, %d waits for a reservation", drops)
}

// TestNoNonceTwice is the property test: random adds, deletes, updates,
// reloads, clean restarts and crashes over a few keys and SPIs never send
// one (key, sequence number) pair twice; counter-mode IVs are the
// sequence number, so that is (key, nonce).
func TestNoNonceTwice(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir() + "/state"
	keys := []saspec.Key{keyForSPI(20, 1), keyForSPI(20, 2), keyForSPI(20, 3)}
	spis := []uint32{0x1001, 0x1002, 0x1003}
	used := map[string]map[uint64]bool{} // key hex -> sequence numbers sent
	tb := persistentTable(t, dir)
	config := saspec.State{}
	refused := 0
	spec := func() (saspec.BundleSpec, int) {
		ki := rng.IntN(len(keys))
		s := gcmOut(fmt.Sprintf("b%d", rng.IntN(3)), spis[rng.IntN(len(spis))], keys[ki])
		s.ESN = rng.IntN(4) == 0
		return s, ki
	}
	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 3: // API add
			s, _ := spec()
			s.Name = fmt.Sprintf("api%d", step)
			if _, err := tb.Add(s); err != nil {
				refused++
			}
		case op < 4: // delete something
			for _, bi := range tb.List(false) {
				if rng.IntN(2) == 0 {
					tb.Delete(bi.Handle)
				}
			}
		case op < 5: // update the ESN high bits
			for _, bi := range tb.List(false) {
				if bi.Spec.ESN && rng.IntN(2) == 0 {
					_ = tb.Update(bi.Handle, saspec.UpdateSpec{SeqHigh: uint32(bi.SAs[0].Seq>>32) + uint32(rng.IntN(2))})
				}
			}
		case op < 7: // reload a configuration
			s, _ := spec()
			config = saspec.State{SAs: []saspec.BundleSpec{s}}
			if _, err := tb.Reconcile(config); err != nil {
				refused++
			}
		case op < 8: // clean restart
			tb.Close()
			tb.ledger.Close()
			tb = persistentTable(t, dir)
			tb.Reconcile(config)
		default: // crash
			crash(tb)
			tb = persistentTable(t, dir)
			tb.Reconcile(config)
		}
		// Traffic on every outbound SA.
		for _, bi := range tb.List(true) {
			s := tb.Snapshot().Bundle(bi.Handle).ESP
			k := bi.Spec.ESP.EncKey.Hex()
			bi.Spec.Wipe()
			if used[k] == nil {
				used[k] = map[uint64]bool{}
			}
			for range 1 + rng.IntN(300) {
				seq, r := s.TakeSeq()
				if r != sa.ReasonNone {
					continue
				}
				if used[k][seq] {
					t.Fatalf("step %d: key %s… sent sequence number %d twice", step, k[:8], seq)
				}
				used[k][seq] = true
			}
		}
	}
	tb.Close()
	tb.ledger.Close()
	total := 0
	for _, m := range used {
		total += len(m)
	}
	t.Logf("%d (key, nonce) pairs sent over %d keys, all distinct; %d adds or reloads refused", total, len(used), refused)
	if total == 0 || refused == 0 {
		t.Fatal("the property test exercised nothing")
	}
}
