package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/mmsg"
)

// DefaultBatch is the number of messages read or written per system call
// when a config leaves it 0.
const DefaultBatch = 64

// MaxPacket is the largest packet a message carries (an LSO packet of a
// whole IP datagram).
const MaxPacket = 65535

// ErrNoClient is returned by Port.Write while no stack is connected; the
// packets are dropped.
var ErrNoClient = errors.New("driver: no host stack is connected to the driver socket")

// handshakeTimeout bounds how long a new client may take to send Hello.
const handshakeTimeout = 5 * time.Second

// PortConfig configures the NIC side of the socket.
type PortConfig struct {
	// MTU is the wire MTU announced in HelloAck.
	MTU int
	// Batch is the messages per system call (default DefaultBatch).
	Batch int
	// Mode is the socket file's mode (default 0600).
	Mode os.FileMode
	// Logger may be nil (slog.Default).
	Logger *slog.Logger
}

// Port is the NIC side of the driver socket: a listening SOCK_SEQPACKET
// unix socket that serves one host stack at a time. It implements
// tun.Port: Read returns whole messages (a stack's Transmit messages, and
// anything else it sends, for the NIC to check and count), Write sends
// whole messages (Receive messages). Read blocks until a stack is
// connected and sends; when the stack goes away, the next one may connect.
type Port struct {
	ln   *net.UnixListener
	path string
	cfg  PortConfig
	log  *slog.Logger

	mu     sync.Mutex
	cur    *conn
	ready  chan struct{} // closed when cur is set or the port closes
	closed bool
	wg     sync.WaitGroup
}

type conn struct {
	c   *net.UnixConn
	m   *mmsg.Conn
	enc Encoding
}

// Listen creates the socket at path (replacing a stale socket file) and
// starts accepting host stacks.
func Listen(path string, cfg PortConfig) (*Port, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MTU <= 0 || cfg.MTU > MaxPacket {
		return nil, fmt.Errorf("driver: MTU %d is outside 1..%d", cfg.MTU, MaxPacket)
	}
	if cfg.Mode == 0 {
		cfg.Mode = 0o600
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("driver: listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, cfg.Mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("driver: %w", err)
	}
	p := &Port{ln: ln, path: path, cfg: cfg, log: cfg.Logger.With("driver_socket", path), ready: make(chan struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

func (p *Port) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("accepting a host stack", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		busy := p.cur != nil || p.closed
		p.mu.Unlock()
		if busy {
			p.log.Warn("refusing a second host stack: one is connected already")
			c.Close()
			continue
		}
		cn, err := p.handshake(c)
		if err != nil {
			p.log.Warn("host stack handshake failed", "err", err)
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.cur = cn
		close(p.ready)
		p.mu.Unlock()
		p.log.Info("host stack connected", "encoding", cn.enc.String())
	}
}

func (p *Port) handshake(c *net.UnixConn) (*conn, error) {
	var b [MaxHeaderLen]byte
	c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	n, err := c.Read(b[:])
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Time{})
	h, err := ParseHello(b[:n])
	if err != nil {
		return nil, err
	}
	var ack [HelloAckLen]byte
	if _, err := c.Write(EncodeHelloAck(ack[:], h.Encoding(), p.cfg.MTU, p.cfg.Batch)); err != nil {
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &conn{c: c, m: newConn(rc, p.cfg.Batch), enc: h.Encoding()}, nil
}

// current returns the connected stack, waiting for one; nil after Close.
func (p *Port) current() *conn {
	for {
		p.mu.Lock()
		c, ready, closed := p.cur, p.ready, p.closed
		p.mu.Unlock()
		if closed {
			return nil
		}
		if c != nil {
			return c
		}
		<-ready
	}
}

// drop forgets the stack c after its connection failed.
func (p *Port) drop(c *conn, err error) {
	p.mu.Lock()
	if p.cur == c {
		p.cur = nil
		if !p.closed {
			p.ready = make(chan struct{})
		}
		p.log.Info("host stack disconnected", "err", err)
	}
	p.mu.Unlock()
	c.c.Close()
}

// Encoding returns the status encoding of the connected stack, or 0.
func (p *Port) Encoding() Encoding {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.enc
}

// Connected reports whether a host stack is connected.
func (p *Port) Connected() bool { return p.Encoding() != 0 }

// Read implements tun.Port: it fills bufs[i][offset:] with messages.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		c := p.current()
		if c == nil {
			return 0, os.ErrClosed
		}
		n, err := c.m.Recv(bufs, sizes, offset)
		if n > 0 {
			if err != nil {
				p.drop(c, err)
			}
			return n, nil
		}
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return 0, os.ErrClosed
			}
			p.drop(c, err)
		}
	}
}

// Write implements tun.Port: it sends bufs[i][offset:] as one message
// each. Without a connected stack it sends nothing and returns ErrNoClient.
func (p *Port) Write(bufs [][]byte, offset int) (int, error) {
	p.mu.Lock()
	c, closed := p.cur, p.closed
	p.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	if c == nil {
		return 0, ErrNoClient
	}
	n, err := c.m.SendAll(bufs, offset)
	if err != nil && n < len(bufs) && isConnErr(err) {
		p.drop(c, err)
	}
	return n, err
}

// BatchSize implements tun.Port.
func (p *Port) BatchSize() int { return p.cfg.Batch }

// MTU implements tun.Port: the largest message.
func (p *Port) MTU() int { return MaxHeaderLen + MaxPacket }

// Name implements tun.Port.
func (p *Port) Name() string { return "driver:" + p.path }

// Close stops accepting, disconnects the stack and removes the socket file.
func (p *Port) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	c := p.cur
	p.cur = nil
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
	p.mu.Unlock()
	err := p.ln.Close() // removes the socket file
	if c != nil {
		c.c.Close()
	}
	p.wg.Wait()
	return err
}

// Conn is the host stack's side of the driver socket.
type Conn struct {
	c   *net.UnixConn
	m   *mmsg.Conn
	ack HelloAck
	buf [HelloAckLen]byte
}

// Dial connects to the NIC's driver socket at path and asks for encoding
// enc. batch is the messages per system call (0: DefaultBatch).
func Dial(path string, enc Encoding, batch int) (*Conn, error) {
	if !enc.Valid() {
		return nil, ErrEncode
	}
	if batch <= 0 {
		batch = DefaultBatch
	}
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("driver: connecting to the NIC at %s: %w", path, err)
	}
	var h [HelloLen]byte
	if _, err := c.Write(EncodeHello(h[:], enc)); err != nil {
		c.Close()
		return nil, err
	}
	cn := &Conn{c: c}
	c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	n, err := c.Read(cn.buf[:])
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("driver: no HelloAck from the NIC at %s (is another stack connected?): %w", path, err)
	}
	c.SetReadDeadline(time.Time{})
	if cn.ack, err = ParseHelloAck(cn.buf[:n]); err != nil {
		c.Close()
		return nil, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	cn.m = newConn(rc, batch)
	return cn, nil
}

// Encoding returns the status encoding of the connection.
func (c *Conn) Encoding() Encoding { return c.ack.Encoding() }

// MTU returns the NIC's wire MTU.
func (c *Conn) MTU() int { return c.ack.MTU() }

// Read reads up to len(bufs) messages into bufs[i][offset:] (sizes[i] is
// 0 for one that did not fit), blocking until at least one arrives.
func (c *Conn) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := c.m.Recv(bufs, sizes, offset)
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends bufs[i][offset:] as one message each, in batches.
func (c *Conn) Write(bufs [][]byte, offset int) (int, error) { return c.m.SendAll(bufs, offset) }

// SetReadDeadline sets the deadline of Read.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

func isConnErr(err error) bool {
	return errors.Is(err, errEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EBADF)
}

// errEOF is the peer's orderly shutdown (a zero-length message: every
// message of the format is at least PrefixLen bytes).
var errEOF = errors.New("driver: peer closed the connection")

// newConn is the batched I/O of one connection: a zero-length message
// ends it with errEOF.
func newConn(rc syscall.RawConn, batch int) *mmsg.Conn {
	m := mmsg.New(rc, batch)
	m.Empty = errEOF
	return m
}
