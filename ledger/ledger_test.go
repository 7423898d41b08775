package ledger

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rec(l *Ledger, key string, seq uint64) Record {
	return Record{FP: l.Fingerprint(Out, []byte("enc"), []byte(key)), Dir: Out, Proto: 50, SPI: 0x1001,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Enc: "aes-gcm-128", Seq: seq}
}

func mustOpen(t *testing.T, dir string) *Ledger {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func commit(t *testing.T, l *Ledger, rs ...Record) {
	t.Helper()
	tx := l.Begin()
	for _, r := range rs {
		tx.Put(r)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprint(t *testing.T) {
	a, b := Memory(), Memory()
	k := []byte("0123456789abcdef")
	if f1, f2 := a.Fingerprint(Out, k), a.Fingerprint(Out, k); f1 != f2 {
		t.Fatal("fingerprint not deterministic")
	}
	if a.Fingerprint(Out, k) == b.Fingerprint(Out, k) {
		t.Error("two secrets gave the same fingerprint")
	}
	if a.Fingerprint(Out, k) == a.Fingerprint(In, k) {
		t.Error("direction not part of the fingerprint")
	}
	if a.Fingerprint(Out, []byte("ab"), []byte("c")) == a.Fingerprint(Out, []byte("a"), []byte("bc")) {
		t.Error("part boundaries not part of the fingerprint")
	}
	fp := a.Fingerprint(Out, k)
	if bytes.Contains(fp[:], k[:8]) {
		t.Error("fingerprint contains key bytes")
	}
}

// TestPersistAndRecover: records survive a crash (the ledger thrown away
// without Close); the secret is kept; the file holds no key.
func TestPersistAndRecover(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l := mustOpen(t, dir)
	r := rec(l, "the-key-material!", 65536)
	commit(t, l, r)
	r.Seq = 131072
	commit(t, l, r)
	// A crash: no Close, the flock goes with the file descriptor.
	l.lock.Close()
	l.f.Close()

	for _, name := range []string{JournalFile, SecretFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", name, err, st.Mode())
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, JournalFile))
	if bytes.Contains(data, []byte("the-key-material")) {
		t.Fatal("the journal holds key material")
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v", st.Mode())
	}

	l2 := mustOpen(t, dir)
	defer l2.Close()
	got, ok := l2.Get(rec(l2, "the-key-material!", 0).FP)
	if !ok || got.Seq != 131072 || !got.SameSA(r) {
		t.Fatalf("after restart: %+v %v", got, ok)
	}
	// Outbound records never go down.
	commit(t, l2, rec(l2, "the-key-material!", 10))
	if got, _ := l2.Get(r.FP); got.Seq != 131072 {
		t.Errorf("outbound record went down to %d", got.Seq)
	}
	// Inbound records may (the datapath limit is lowered first).
	in := Record{FP: l2.Fingerprint(In, []byte("x")), Dir: In, Proto: 50, SPI: 7, Seq: 500}
	commit(t, l2, in)
	in.Seq = 40
	commit(t, l2, in)
	if got, _ := l2.Get(in.FP); got.Seq != 40 {
		t.Errorf("inbound record %d, want 40", got.Seq)
	}
}

func TestSecondProcessRefused(t *testing.T) {
	dir := t.TempDir() + "/s"
	l := mustOpen(t, dir)
	defer l.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use by another secnic") {
		t.Fatalf("second open: %v", err)
	}
}

func TestTornLastLineDropped(t *testing.T) {
	dir := t.TempDir() + "/s"
	l := mustOpen(t, dir)
	commit(t, l, rec(l, "k1", 100))
	l.Close()
	j := filepath.Join(dir, JournalFile)
	f, _ := os.OpenFile(j, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"fp":"00","dir":"out","pro`) // an append cut short
	f.Close()
	l2 := mustOpen(t, dir)
	defer l2.Close()
	if got, ok := l2.Get(rec(l2, "k1", 0).FP); !ok || got.Seq != 100 {
		t.Fatalf("record lost: %+v %v", got, ok)
	}
	// Open compacted it: the torn tail is gone.
	data, _ := os.ReadFile(j)
	if bytes.Contains(data, []byte(`"pro`+"\n")) || strings.Count(string(data), "\n") != 2 {
		t.Errorf("journal not compacted:\n%s", data)
	}
}

func TestDamageRefused(t *testing.T) {
	setup := func(t *testing.T) string {
		dir := t.TempDir() + "/s"
		l := mustOpen(t, dir)
		commit(t, l, rec(l, "k1", 100), rec(l, "k2", 200))
		l.Close()
		return dir
	}
	t.Run("flipped-bit", func(t *testing.T) {
		dir := setup(t)
		j := filepath.Join(dir, JournalFile)
		data, _ := os.ReadFile(j)
		i := bytes.Index(data, []byte(`"seq":`))
		data[i+6] ^= 1
		os.WriteFile(j, data, 0o600)
		// The damaged line is not the last one when two records follow the header.
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("secret-missing", func(t *testing.T) {
		dir := setup(t)
		os.Remove(filepath.Join(dir, SecretFile))
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "is missing") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("other-secret", func(t *testing.T) {
		dir := setup(t)
		os.WriteFile(filepath.Join(dir, SecretFile), bytes.Repeat([]byte{7}, secretLen), 0o600)
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "another secret") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("newer-version", func(t *testing.T) {
		dir := setup(t)
		j := filepath.Join(dir, JournalFile)
		data, _ := os.ReadFile(j)
		os.WriteFile(j, bytes.Replace(data, []byte(headerPrefix+"1"), []byte(headerPrefix+"9"), 1), 0o600)
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "version 9") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("open-directory", func(t *testing.T) {
		dir := setup(t)
		os.Chmod(dir, 0o755)
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "chmod 700") {
			t.Fatalf("open: %v", err)
		}
	})
	t.Run("readable-secret", func(t *testing.T) {
		dir := setup(t)
		os.Chmod(filepath.Join(dir, SecretFile), 0o644)
		if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("open: %v", err)
		}
	})
}

// TestCompaction: many updates of few keys keep the journal small.
func TestCompaction(t *testing.T) {
	dir := t.TempDir() + "/s"
	l := mustOpen(t, dir)
	defer l.Close()
	for i := range 3000 {
		commit(t, l, rec(l, "k1", uint64(i)))
	}
	if l.lines > 2*len(l.recs)+1024 {
		t.Errorf("journal has %d lines for %d keys", l.lines, len(l.recs))
	}
	l.Close()
	l2 := mustOpen(t, dir)
	defer l2.Close()
	if got, _ := l2.Get(rec(l2, "k1", 0).FP); got.Seq != 2999 {
		t.Errorf("after compaction: %d", got.Seq)
	}
}

func TestCloneIsolated(t *testing.T) {
	dir := t.TempDir() + "/s"
	l := mustOpen(t, dir)
	defer l.Close()
	r := rec(l, "k", 5)
	commit(t, l, r)
	c := l.Clone()
	if c.Persistent() || c.Fingerprint(Out, []byte("enc"), []byte("k")) != r.FP {
		t.Fatal("clone must be a memory ledger with the same secret")
	}
	r.Seq = 99
	commit(t, c, r, rec(l, "k2", 1))
	if got, _ := l.Get(r.FP); got.Seq != 5 || l.Len() != 1 {
		t.Errorf("clone changed the original: %+v, %d keys", got, l.Len())
	}
}

// FuzzJournal: Open never panics on a damaged journal, and a journal it
// accepts round-trips.
func FuzzJournal(f *testing.F) {
	f.Add([]byte("{\"fp\":\"00\"} 00000000\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir() + "/s"
		l := mustOpen(t, dir)
		commit(t, l, rec(l, "k", 1))
		l.Close()
		j := filepath.Join(dir, JournalFile)
		data, _ := os.ReadFile(j)
		os.WriteFile(j, append(data, body...), 0o600)
		l2, err := Open(dir)
		if err != nil {
			return
		}
		defer l2.Close()
		if got, ok := l2.Get(rec(l2, "k", 0).FP); !ok || got.Seq < 1 {
			t.Fatalf("accepted journal lost the record: %+v %v", got, ok)
		}
	})
}
