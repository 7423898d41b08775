// Package ledger is secnic's key-use ledger: a durable record, per SA key,
// of the highest sequence number reserved for it. It is what makes a (key,
// nonce) pair single-use across deletes, re-adds, reloads and restarts, and
// what keeps anti-replay windows closed over a restart.
//
// Keys are never stored. Each SA's key material is identified by a
// Fingerprint: HMAC-SHA-256 under a per-host secret that lives beside the
// ledger in the state directory. A Record holds the fingerprint, the
// identity of the SA that used the key (direction, protocol, SPI,
// endpoints, algorithms) and a sequence number:
//
//   - outbound: the highest sequence number reserved; the SA never sends
//     above it, and any later SA with this key starts above it;
//   - inbound: the highest sequence number the SA may accept; after a
//     restart its window starts there, so everything accepted before is
//     refused.
//
// The on-disk format (docs/reliability.md, "Nonces and replays") is a
// versioned text journal: a header line, then one line per record update,
// each a JSON object followed by its CRC-32C. Updates are appended and
// fdatasync'ed before Commit returns; the journal is compacted by writing a
// new file, fsyncing it and renaming it over the old one. A torn last line
// (a crash during an append whose Commit never returned) is dropped; any
// other damage is an error that Open reports.
//
// A Ledger without a directory (Memory) has the same semantics for the life
// of the process and persists nothing.
package ledger

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Version is the journal format version this package writes and reads.
const Version = 1

// File names inside the state directory.
const (
	SecretFile  = "secret" // 32 random bytes, mode 0600
	JournalFile = "ledger" // the journal
	LockFile    = "lock"   // flock'ed while a process has the ledger open
)

const (
	headerPrefix = "secnic-ledger v"
	secretLen    = 32
	domain       = "secnic key-use ledger v1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fingerprint identifies key material without revealing it.
type Fingerprint [sha256.Size]byte

// Dir is the direction of the SA a record belongs to.
type Dir uint8

// Directions.
const (
	In  Dir = 1
	Out Dir = 2
)

func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	}
	return "invalid"
}

// Record is what the ledger knows about one key.
type Record struct {
	FP  Fingerprint
	Dir Dir
	// Proto is the IP protocol number of the SA (50 ESP, 51 AH).
	Proto uint8
	SPI   uint32
	// Src and Dst are the SA's endpoints (invalid = wildcard).
	Src, Dst netip.Addr
	// Enc and Auth are the SA's algorithm names.
	Enc, Auth string
	// Seq is the reserved sequence number (see the package comment).
	Seq uint64
}

// SameSA reports whether r and o describe the same SA: direction,
// protocol, SPI, endpoints and algorithms. The sequence number and the
// fingerprint are not compared.
func (r Record) SameSA(o Record) bool {
	return r.Dir == o.Dir && r.Proto == o.Proto && r.SPI == o.SPI && r.Src == o.Src && r.Dst == o.Dst && r.Enc == o.Enc && r.Auth == o.Auth
}

// Describe names the SA of r for error messages, without key material.
func (r Record) Describe() string {
	proto := "esp"
	if r.Proto == 51 {
		proto = "ah"
	}
	alg := r.Enc
	if r.Auth != "" && r.Auth != "none" {
		if alg != "" {
			alg += "+"
		}
		alg += r.Auth
	}
	return fmt.Sprintf("%s SPI 0x%08x %s->%s (%s)", proto, r.SPI, addrOr(r.Src), addrOr(r.Dst), alg)
}

func addrOr(a netip.Addr) string {
	if !a.IsValid() {
		return "*"
	}
	return a.String()
}

// Ledger is a key-use ledger. Its methods are safe for concurrent use.
type Ledger struct {
	dir    string // "" for a memory ledger
	secret []byte
	macs   sync.Pool // keyed HMAC-SHA-256 states, reset and reused

	mu    sync.Mutex
	recs  map[Fingerprint]Record
	f     *os.File // the journal, open for appending
	lock  *os.File // LockFile, flock'ed
	lines int      // record lines in the journal
	err   error    // a failed write left the journal in an unknown state
}

// Memory returns a ledger that lives only as long as the process: a random
// secret, nothing persisted.
func Memory() *Ledger {
	s := make([]byte, secretLen)
	if _, err := rand.Read(s); err != nil {
		panic("ledger: no randomness: " + err.Error())
	}
	return &Ledger{secret: s, recs: map[Fingerprint]Record{}}
}

// Open opens (creating if needed) the ledger in directory dir, which is
// created with mode 0700 if it does not exist. It refuses a directory that
// other users can write or read, a secret file others can read, a journal
// without its secret, a journal of another version, and a damaged journal,
// each with an error that says what to do.
func Open(dir string) (*Ledger, error) {
	if dir == "" {
		return nil, errors.New("ledger: no state directory given")
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ledger: cannot create the state directory %s: %w (create it with mode 0700, or set state_dir in the configuration)", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("ledger: state directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("ledger: state directory %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ledger: state directory %s is accessible by other users (mode %04o); it holds the ledger's secret: run `chmod 700 %s`", dir, st.Mode().Perm(), dir)
	}
	if uid, ok := ownerOf(st); ok && uid != os.Geteuid() {
		return nil, fmt.Errorf("ledger: state directory %s belongs to uid %d, not to this process (uid %d): run `chown %d %s` or choose another state_dir", dir, uid, os.Geteuid(), os.Geteuid(), dir)
	}
	l := &Ledger{dir: dir, recs: map[Fingerprint]Record{}}
	lock, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("ledger: the state directory %s is in use by another secnic process: give each NIC its own state_dir", dir)
	}
	l.lock = lock
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	jpath := filepath.Join(dir, JournalFile)
	_, jerr := os.Stat(jpath)
	haveJournal := jerr == nil
	if l.secret, err = loadSecret(dir, !haveJournal); err != nil {
		return nil, err
	}
	if haveJournal {
		if err := l.load(jpath); err != nil {
			return nil, err
		}
	}
	if err := l.rewrite(); err != nil {
		return nil, err
	}
	ok = true
	return l, nil
}

func ownerOf(st fs.FileInfo) (int, bool) {
	if s, ok := st.Sys().(*unix.Stat_t); ok {
		return int(s.Uid), true
	}
	return 0, false
}

func loadSecret(dir string, create bool) ([]byte, error) {
	p := filepath.Join(dir, SecretFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		st, serr := os.Stat(p)
		if serr == nil && st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("ledger: %s is readable by other users (mode %04o): run `chmod 600 %s`", p, st.Mode().Perm(), p)
		}
		if len(b) != secretLen {
			return nil, fmt.Errorf("ledger: %s has %d bytes, not %d: it is damaged; restore it from a backup (without it the ledger's records cannot be matched)", p, len(b), secretLen)
		}
		return b, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("ledger: cannot read %s: %w", p, err)
	case !create:
		return nil, fmt.Errorf("ledger: %s is missing but the journal %s exists: restore the secret from a backup; without it the journal's records cannot be matched (only if no SA key recorded there will ever be used again, move the journal away to start afresh)", p, filepath.Join(dir, JournalFile))
	}
	b = make([]byte, secretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("ledger: no randomness for the secret: %w", err)
	}
	if err := writeFileAtomic(dir, SecretFile, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Dir returns the state directory, or "" for a memory ledger.
func (l *Ledger) Dir() string { return l.dir }

// Persistent reports whether the ledger writes to a state directory.
func (l *Ledger) Persistent() bool { return l.dir != "" }

// Len returns the number of keys recorded.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// Fingerprint returns the fingerprint of key material parts (for example
// an encryption key, or an SPI, a destination and both keys) in direction
// d. Parts are length-prefixed, so their boundaries count.
func (l *Ledger) Fingerprint(d Dir, parts ...[]byte) Fingerprint {
	m, _ := l.macs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, l.secret)
	}
	defer l.macs.Put(m)
	m.Reset()
	m.Write([]byte(domain))
	m.Write([]byte{byte(d)})
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	var fp Fingerprint
	m.Sum(fp[:0])
	return fp
}

// Get returns the committed record of fp.
func (l *Ledger) Get(fp Fingerprint) (Record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.recs[fp]
	return r, ok
}

// Clone returns a memory ledger with the same secret and records, for dry
// runs: changes to it never reach l or the disk.
func (l *Ledger) Clone() *Ledger {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &Ledger{secret: l.secret, recs: maps.Clone(l.recs)} // its own HMAC pool
}

// Close closes the journal. The ledger must not be used afterwards.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.f != nil {
		err = l.f.Close()
		l.f = nil
	}
	if l.lock != nil {
		l.lock.Close() // releases the flock
		l.lock = nil
	}
	if l.err == nil {
		l.err = errors.New("ledger: closed")
	}
	return err
}

// Tx stages record updates; Commit makes them durable and visible at once.
// A Tx is used by one goroutine.
type Tx struct {
	l      *Ledger
	staged map[Fingerprint]Record
	order  []Fingerprint
}

// Begin starts a transaction.
func (l *Ledger) Begin() *Tx { return &Tx{l: l} }

// Get returns fp's record as the transaction sees it (its own updates
// first, then the committed record).
func (t *Tx) Get(fp Fingerprint) (Record, bool) {
	if r, ok := t.staged[fp]; ok {
		return r, true
	}
	return t.l.Get(fp)
}

// Put stages r. For an outbound record the sequence number never goes
// down: Put keeps the higher of r.Seq and what is recorded. An inbound
// record's sequence number may go down (a window that was closed
// exactly, or a margin that shrank), because the datapath's limit is
// lowered before the record is.
func (t *Tx) Put(r Record) {
	if t.staged == nil {
		t.staged = map[Fingerprint]Record{}
	}
	if r.Dir == Out {
		if old, ok := t.Get(r.FP); ok && old.Seq > r.Seq {
			r.Seq = old.Seq
		}
	}
	if _, ok := t.staged[r.FP]; !ok {
		t.order = append(t.order, r.FP)
	}
	t.staged[r.FP] = r
}

// Len returns the number of staged records.
func (t *Tx) Len() int { return len(t.staged) }

// Discard forgets the staged records.
func (t *Tx) Discard() { t.staged, t.order = nil, nil }

// Commit writes the staged records to the journal, waits until they are on
// stable storage, and then makes them visible. On error nothing becomes
// visible and the ledger refuses further commits until it is reopened
// (the journal may hold part of the write).
func (t *Tx) Commit() error {
	if len(t.staged) == 0 {
		return nil
	}
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	recs := make([]Record, 0, len(t.order))
	for _, fp := range t.order {
		r := t.staged[fp]
		if r.Dir == Out {
			if old, ok := l.recs[fp]; ok && old.Seq > r.Seq {
				r.Seq = old.Seq // a concurrent commit went higher
			}
		}
		recs = append(recs, r)
	}
	if l.dir != "" {
		var buf bytes.Buffer
		for _, r := range recs {
			appendLine(&buf, r)
		}
		if _, err := l.f.Write(buf.Bytes()); err != nil {
			l.err = fmt.Errorf("ledger: writing %s failed: %w; restart secnic once the disk is fixed", filepath.Join(l.dir, JournalFile), err)
			return l.err
		}
		if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
			l.err = fmt.Errorf("ledger: syncing %s failed: %w; restart secnic once the disk is fixed", filepath.Join(l.dir, JournalFile), err)
			return l.err
		}
		l.lines += len(recs)
	}
	for _, r := range recs {
		l.recs[r.FP] = r
	}
	t.Discard()
	if l.dir != "" && l.lines > 2*len(l.recs)+1024 {
		if err := l.rewrite(); err != nil {
			// The records are durable in the old journal; compaction can
			// wait for the next commit.
			return nil
		}
	}
	return nil
}

// ---- journal format ----------------------------------------------------------

type jsonRecord struct {
	FP    string `json:"fp"`
	Dir   string `json:"dir"`
	Proto uint8  `json:"proto"`
	SPI   uint32 `json:"spi"`
	Src   string `json:"src,omitempty"`
	Dst   string `json:"dst,omitempty"`
	Enc   string `json:"enc,omitempty"`
	Auth  string `json:"auth,omitempty"`
	Seq   uint64 `json:"seq"`
}

func appendLine(buf *bytes.Buffer, r Record) {
	j := jsonRecord{FP: hex.EncodeToString(r.FP[:]), Dir: r.Dir.String(), Proto: r.Proto, SPI: r.SPI, Enc: r.Enc, Auth: r.Auth, Seq: r.Seq}
	if r.Src.IsValid() {
		j.Src = r.Src.String()
	}
	if r.Dst.IsValid() {
		j.Dst = r.Dst.String()
	}
	b, _ := json.Marshal(j)
	buf.Write(b)
	fmt.Fprintf(buf, " %08x\n", crc32.Checksum(b, castagnoli))
}

func parseLine(line []byte) (Record, error) {
	i := bytes.LastIndexByte(line, ' ')
	if i < 0 || len(line)-i-1 != 8 {
		return Record{}, errors.New("no checksum")
	}
	body := line[:i]
	var sum uint32
	if _, err := fmt.Sscanf(string(line[i+1:]), "%08x", &sum); err != nil {
		return Record{}, errors.New("bad checksum field")
	}
	if crc32.Checksum(body, castagnoli) != sum {
		return Record{}, errors.New("checksum mismatch")
	}
	var j jsonRecord
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return Record{}, err
	}
	var r Record
	fp, err := hex.DecodeString(j.FP)
	if err != nil || len(fp) != len(r.FP) {
		return Record{}, errors.New("bad fingerprint")
	}
	copy(r.FP[:], fp)
	switch j.Dir {
	case "in":
		r.Dir = In
	case "out":
		r.Dir = Out
	default:
		return Record{}, fmt.Errorf("bad direction %q", j.Dir)
	}
	r.Proto, r.SPI, r.Enc, r.Auth, r.Seq = j.Proto, j.SPI, j.Enc, j.Auth, j.Seq
	if j.Src != "" {
		if r.Src, err = netip.ParseAddr(j.Src); err != nil {
			return Record{}, err
		}
	}
	if j.Dst != "" {
		if r.Dst, err = netip.ParseAddr(j.Dst); err != nil {
			return Record{}, err
		}
	}
	return r, nil
}

func (l *Ledger) header() string {
	check := l.Fingerprint(0, []byte("secret check"))
	return fmt.Sprintf("%s%d check=%s\n", headerPrefix, Version, hex.EncodeToString(check[:8]))
}

// load reads the journal at path into l.recs. A torn last line is dropped.
func (l *Ledger) load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ledger: cannot read %s: %w", path, err)
	}
	damaged := func(line int, why string) error {
		return fmt.Errorf("ledger: %s is damaged at line %d (%s): restore it from a backup; only if no SA key recorded there will ever be used again, move it away to start afresh (moving it away lets those keys repeat nonces)", path, line, why)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	head, err := r.ReadString('\n')
	if err != nil {
		if len(data) == 0 {
			return nil // created, crashed before the header was synced: nothing was recorded
		}
		return damaged(1, "no header")
	}
	var ver int
	if _, err := fmt.Sscanf(head, headerPrefix+"%d", &ver); err != nil {
		return damaged(1, "not a secnic ledger")
	}
	if ver != Version {
		return fmt.Errorf("ledger: %s has format version %d; this secnic reads version %d: run the secnic that wrote it, or a newer one", path, ver, Version)
	}
	if strings.TrimSpace(head) != strings.TrimSpace(l.header()) {
		return fmt.Errorf("ledger: %s was written under another secret than %s: restore the matching secret from a backup", path, filepath.Join(l.dir, SecretFile))
	}
	lineNo := 1
	for {
		line, err := r.ReadBytes('\n')
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		lineNo++
		last := err == io.EOF
		if last {
			// No newline: an append that never completed; its Commit did
			// not return, so no number in it was used.
			return nil
		}
		rec, perr := parseLine(bytes.TrimSuffix(line, []byte("\n")))
		if perr != nil {
			if _, peek := r.Peek(1); peek == io.EOF {
				return nil // torn last line
			}
			return damaged(lineNo, perr.Error())
		}
		if old, ok := l.recs[rec.FP]; ok && rec.Dir == Out && old.Seq > rec.Seq {
			rec.Seq = old.Seq
		}
		l.recs[rec.FP] = rec
		l.lines++
	}
}

// rewrite writes a compacted journal (one line per key) atomically and
// reopens it for appending.
func (l *Ledger) rewrite() error {
	var buf bytes.Buffer
	buf.WriteString(l.header())
	for _, r := range l.recs {
		appendLine(&buf, r)
	}
	if err := writeFileAtomic(l.dir, JournalFile, buf.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, JournalFile), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.lines = f, len(l.recs)
	return nil
}

// writeFileAtomic writes name in dir: a temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("ledger: cannot write in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ledger: syncing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ledger: syncing %s: %w", dir, err)
	}
	return nil
}
