package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"

	"github.com/secnic/secnic/saspec"
)

// The API's bounds on requests. A request that exceeds one is refused with
// code "invalid" before anything in it is decoded into SAs or policies, so
// that neither memory nor the size of the reply grows with hostile input.
const (
	// MaxBodyBytes bounds request bodies. MaxEntries bundles of the largest
	// kind (ESP and AH, tunnel addresses, lifetimes, 64-byte keys), pretty
	// printed, take about 1 MiB.
	MaxBodyBytes = 2 << 20
	// MaxEntries bounds every list in a request: bundles, policies, refs
	// and toggles. Split larger requests.
	MaxEntries = 1024
	// MaxFieldBytes bounds every string in a request, and every object key.
	// The longest legitimate value is a 64-byte key in hex (130 bytes).
	MaxFieldBytes = 256
	// MaxDepth bounds the nesting of objects and lists.
	MaxDepth = 16
	// QuoteBytes is the most of a piece of bad input any error quotes.
	QuoteBytes = 32
)

// Limits are the control socket's connection limits. Zero fields take the
// defaults (DefaultLimits).
type Limits struct {
	// HeaderTimeout bounds reading a request's headers.
	HeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a reply, and each event of an event
	// stream (a follower that stops reading is disconnected).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
	// MaxConns bounds open connections (event streams included); more
	// wait in the socket's backlog until one closes.
	MaxConns int
}

// DefaultLimits are the limits the daemon serves with.
var DefaultLimits = Limits{
	HeaderTimeout: 2 * time.Second,
	ReadTimeout:   10 * time.Second,
	WriteTimeout:  10 * time.Second,
	IdleTimeout:   60 * time.Second,
	MaxConns:      64,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.HeaderTimeout > 0 {
		d.HeaderTimeout = l.HeaderTimeout
	}
	if l.ReadTimeout > 0 {
		d.ReadTimeout = l.ReadTimeout
	}
	if l.WriteTimeout > 0 {
		d.WriteTimeout = l.WriteTimeout
	}
	if l.IdleTimeout > 0 {
		d.IdleTimeout = l.IdleTimeout
	}
	if l.MaxConns > 0 {
		d.MaxConns = l.MaxConns
	}
	return d
}

// Quote returns s quoted for an error message: whole if short, else its
// first QuoteBytes bytes (cut at a character boundary) and its length.
func Quote(s string) string {
	if len(s) <= QuoteBytes {
		return strconv.Quote(s)
	}
	cut := QuoteBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// pathRef returns the {ref} of the request's path, refusing one longer
// than any handle or name could be.
func pathRef(r *http.Request) (string, error) {
	v := r.PathValue("ref")
	if len(v) > MaxFieldBytes {
		return "", badRequest("the reference %s is %d bytes; give a handle or a name of at most %d characters", Quote(v), len(v), saspec.MaxNameLen)
	}
	return v, nil
}

// shortPath keeps a request path or method for an error message.
func shortPath(s string) string {
	if len(s) <= 64 {
		return s
	}
	return Quote(s)
}

// boundedJSON returns the body as JSON (YAML is converted) after checking
// it against MaxEntries, MaxFieldBytes and MaxDepth with a streaming scan
// that stops at the first excess: memory stays proportional to the body,
// never to the number of entries.
func boundedJSON(body []byte) ([]byte, error) {
	js := body
	if c := firstNonSpace(body); c != '{' && c != '[' {
		var err error
		if js, err = yaml.YAMLToJSON(body); err != nil {
			return nil, badRequest("the request body is neither JSON nor YAML: %s", clip(err.Error()))
		}
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	type level struct {
		list  bool
		n     int
		key   bool // the next token of this object is a key
		field string
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.list {
				fmt.Fprintf(&b, "[%d]", l.n-1)
			} else if l.field != "" {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.field)
			}
		}
		if b.Len() == 0 {
			return "the body"
		}
		return b.String()
	}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return js, nil
		}
		if err != nil {
			// Let the strict decoder report malformed JSON with its offset.
			return js, nil
		}
		var top *level
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if k, isStr := tok.(string); isStr && top != nil && !top.list && top.key {
			// An object key.
			if len(k) > MaxFieldBytes {
				return nil, badRequest("%s: a field name of %d bytes (%s); names are at most %d bytes", path(), len(k), Quote(k), MaxFieldBytes)
			}
			top.field, top.key = safeField(k), false
			continue
		}
		if top != nil && top.list {
			if dl, ok := tok.(json.Delim); !ok || dl != ']' {
				top.n++
				if top.n > MaxEntries {
					where := strings.TrimSuffix(path(), fmt.Sprintf("[%d]", top.n-1))
					if where == "" {
						where = "the request"
					}
					return nil, badRequest("%s has more than %d entries; split it into requests of at most %d", where, MaxEntries, MaxEntries)
				}
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= MaxDepth {
					return nil, badRequest("%s: nested more than %d levels deep; see docs/config-schema.md for the request's shape", path(), MaxDepth)
				}
				stack = append(stack, level{list: v == '[', key: v == '{'})
				continue
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if len(v) > MaxFieldBytes {
				return nil, badRequest("%s is %d bytes (%s); values are at most %d bytes", path(), len(v), Quote(v), MaxFieldBytes)
			}
		}
		if len(stack) > 0 && !stack[len(stack)-1].list {
			stack[len(stack)-1].key = true
		}
	}
}

// safeField keeps a field name for a path in an error message: short
// names whole, others as a prefix.
func safeField(k string) string {
	if len(k) <= QuoteBytes && !strings.ContainsAny(k, "\"\\\n\r\t") {
		return k
	}
	return Quote(k)
}

func firstNonSpace(b []byte) byte {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// clip shortens an error message quoting input to a safe length.
func clip(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// limitListener bounds the number of open connections: Accept waits while
// max connections are open.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, max int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, max), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close closes the listener and wakes a waiting Accept.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
