//go:build linux

package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netns"
)

// The traffic generator runs in this process: its sockets are opened
// inside the namespaces (netlab.Do enters a namespace on a locked OS
// thread that is then discarded) and used from ordinary goroutines. Every
// byte is checked: TCP streams are hashed at both ends (xxHash64 over the
// whole stream), UDP datagrams carry a hash of their own payload, a
// sequence number and their trial's tag (a late datagram of an earlier
// trial on the same port is neither counted nor a duplicate),
// request/response messages are compared with what was sent. A tunnel
// that corrupts, loses or duplicates data fails the check and its figures
// are not reported.

// Path is where traffic goes: from a client in one namespace to a server
// address in the other.
type Path struct {
	// Client and Server are the network namespace paths (/run/netns/...).
	Client, Server string
	// Dst is the server's address, reachable from Client through the
	// contender's tunnel.
	Dst netip.Addr
	// via, if set, maps the address the client dials (tests put a
	// corrupting proxy in the path).
	via func(addr string) string
}

func (p Path) target(addr string) string {
	if p.via != nil {
		return p.via(addr)
	}
	return addr
}

// Sample is what one traffic trial measured.
type Sample struct {
	// Bytes is the payload delivered intact; Elapsed the time it took.
	Bytes   int64
	Elapsed time.Duration
	// Packets is the datagrams (UDP) or transactions (request/response)
	// delivered; Sent what the client sent.
	Packets, Sent int64
	// Corrupt counts datagrams whose payload failed the hash check.
	Corrupt int64
	// Intact is false when any delivered byte differs from what was sent.
	Intact bool
	// Latencies are request/response round-trip times (sorted).
	Latencies []time.Duration
	// Rate is the offered rate of a paced UDP trial (0 = unpaced).
	Rate float64
}

// Gbps is the goodput in Gbit/s.
func (s Sample) Gbps() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) * 8 / s.Elapsed.Seconds() / 1e9
}

// PPS is the datagrams or transactions delivered per second.
func (s Sample) PPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Elapsed.Seconds()
}

// Loss is the fraction of sent datagrams that did not arrive intact.
func (s Sample) Loss() float64 {
	if s.Sent == 0 {
		return 0
	}
	l := 1 - float64(s.Packets)/float64(s.Sent)
	if l < 0 {
		return 0
	}
	return l
}

// Percentile returns the p-th percentile (0..100) of the latencies.
func (s Sample) Percentile(p float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(s.Latencies)-1) * p / 100)
	return s.Latencies[i]
}

// pattern is the data the generator sends: random bytes, read at varying
// offsets so that the stream does not repeat with a short period.
var pattern = func() []byte {
	b := make([]byte, 1<<20+64*1024)
	_, _ = rand.Read(b)
	return b
}()

const chunk = 128 * 1024

// listen opens a listener inside ns.
func listenTCP(ns string, addr netip.Addr) (net.Listener, error) {
	var ln net.Listener
	err := netns.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	return ln, err
}

func dialTCP(ctx context.Context, ns string, addr string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(ns, func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// TCPStreams sends data over streams parallel TCP connections for d and
// checks every stream's hash and length at the receiver.
func TCPStreams(ctx context.Context, p Path, streams int, d time.Duration) (Sample, error) {
	ln, err := listenTCP(p.Server, p.Dst)
	if err != nil {
		return Sample{}, fmt.Errorf("listen on %s: %w", p.Dst, err)
	}
	defer ln.Close()
	type end struct {
		n   int64
		sum uint64
		err error
	}
	recv := make(chan end, streams)
	go func() {
		for range streams {
			c, err := ln.Accept()
			if err != nil {
				recv <- end{err: err}
				continue
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
				h := xxhash.New()
				n, err := io.CopyBuffer(h, c, make([]byte, chunk))
				recv <- end{n: n, sum: h.Sum64(), err: err}
			}()
		}
	}()
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := dialTCP(ctx, p.Client, p.target(ln.Addr().String()))
		if err != nil {
			return Sample{}, fmt.Errorf("connect to %s through the tunnel: %w", ln.Addr(), err)
		}
		conns = append(conns, c)
	}
	start := time.Now()
	deadline := start.Add(d)
	sent := make(chan end, streams)
	for i, c := range conns {
		go func() {
			h := xxhash.New()
			var n int64
			off := (i * 7919) % (len(pattern) - chunk)
			_ = c.SetWriteDeadline(deadline.Add(10 * time.Second))
			var err error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				b := pattern[off : off+chunk]
				var w int
				w, err = c.Write(b)
				h.Write(b[:w])
				n += int64(w)
				if err != nil {
					break
				}
				off = (off + 4099) % (len(pattern) - chunk)
			}
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			sent <- end{n: n, sum: h.Sum64(), err: err}
		}()
	}
	var tx, rx []end
	for range streams {
		tx = append(tx, <-sent)
	}
	for range streams {
		select {
		case e := <-recv:
			rx = append(rx, e)
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		case <-time.After(30 * time.Second):
			return Sample{}, errors.New("a TCP stream did not finish within 30s after the sender stopped")
		}
	}
	elapsed := time.Since(start)
	s := Sample{Elapsed: elapsed, Intact: true}
	for _, e := range tx {
		if e.err != nil {
			return s, fmt.Errorf("send: %w", e.err)
		}
	}
	for _, e := range rx {
		if e.err != nil {
			return s, fmt.Errorf("receive: %w", e.err)
		}
	}
	// Streams are matched by (length, hash): a stream that arrived short
	// or altered has no partner.
	for _, r := range rx {
		i := slices.IndexFunc(tx, func(t end) bool { return t.n == r.n && t.sum == r.sum })
		if i < 0 {
			s.Intact = false
			continue
		}
		tx = slices.Delete(tx, i, i+1)
		s.Bytes += r.n
	}
	if !s.Intact {
		return s, errors.New("data corrupted or lost: a TCP stream's length or hash at the receiver differs from what was sent")
	}
	return s, nil
}

// UDP datagram layout: sequence number (8 bytes), length (4), the trial's
// tag (4), xxHash64 of the whole datagram with this field zero (8).
const udpHeader = 24

func openUDP(ns string, laddr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := netns.Do(ns, func() error {
		a, err := net.ResolveUDPAddr("udp", laddr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", a)
		return err
	})
	if err == nil {
		_ = c.SetReadBuffer(8 << 20)
		_ = c.SetWriteBuffer(8 << 20)
	}
	return c, err
}

// PathMTU returns the MTU of the route from p.Client to p.Dst (IP_MTU
// of a connected UDP socket).
func PathMTU(p Path) (int, error) {
	var mtu int
	err := netns.Do(p.Client, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Dst, 9)))
		if err != nil {
			return err
		}
		defer c.Close()
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		_ = rc.Control(func(fd uintptr) { mtu, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU) })
		return serr
	})
	return mtu, err
}

// UDPFlood sends size-byte UDP payloads for d at rate datagrams per
// second (0 = as fast as the sender can) and counts what arrives intact.
func UDPFlood(ctx context.Context, p Path, size int, rate float64, d time.Duration) (Sample, error) {
	return udpFlood(ctx, p, []udpFlow{{}}, size, rate, d)
}

// udpFlow is one UDP flow: source and destination port (0 = any).
type udpFlow struct{ src, dst uint16 }

// udpFlood sends datagrams round-robin over flows; every flow has its
// own client socket and the flows' destination ports their receivers.
func udpFlood(ctx context.Context, p Path, flows []udpFlow, size int, rate float64, d time.Duration) (Sample, error) {
	if size < udpHeader {
		return Sample{}, fmt.Errorf("UDP payload of %d bytes is below the generator's %d-byte header", size, udpHeader)
	}
	type rxResult struct{ ok, bad, dup int64 }
	const maxSeq = 1 << 24
	// Trials reuse their ports (one per tunnel), so datagrams of an
	// earlier trial still queued in the tunnel may arrive during this
	// one: the tag tells them apart, and they count for neither.
	tag := mrand.Uint32() | 1
	servers := map[uint16]*net.UDPConn{}
	var clients []*net.UDPConn
	defer func() {
		for _, c := range servers {
			c.Close()
		}
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, f := range flows {
		srv := servers[f.dst]
		if srv == nil {
			var err error
			srv, err = openUDP(p.Server, netip.AddrPortFrom(p.Dst, f.dst).String())
			if err != nil {
				return Sample{}, fmt.Errorf("UDP socket on %s port %d: %w", p.Dst, f.dst, err)
			}
			servers[f.dst] = srv
			if f.dst == 0 {
				// An ephemeral port: all flows with dst 0 share it.
				servers[0] = srv
			}
		}
		var cli *net.UDPConn
		err := netns.Do(p.Client, func() (err error) {
			// Flows may share a source port (towards different
			// destination ports): SO_REUSEADDR lets their sockets bind.
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
				return errors.Join(err, serr)
			}}
			if f.src != 0 {
				d.LocalAddr = &net.UDPAddr{Port: int(f.src)}
			}
			c, err := d.Dial("udp", srv.LocalAddr().String())
			if err != nil {
				return err
			}
			cli = c.(*net.UDPConn)
			return nil
		})
		if err != nil {
			return Sample{}, fmt.Errorf("UDP socket towards %s: %w", srv.LocalAddr(), err)
		}
		_ = cli.SetWriteBuffer(8 << 20)
		clients = append(clients, cli)
	}
	rxDone := make(chan rxResult, len(servers))
	receivers := 0
	started := map[*net.UDPConn]bool{}
	for _, srv := range servers {
		if started[srv] {
			continue
		}
		started[srv] = true
		receivers++
		go func() {
			var r rxResult
			seen := make([]uint64, maxSeq/64)
			buf := make([]byte, 65536)
			for {
				n, err := srv.Read(buf)
				if err != nil {
					rxDone <- r
					return
				}
				b := buf[:n]
				if !verifyDatagram(b) {
					r.bad++
					continue
				}
				if binary.BigEndian.Uint32(b[12:]) != tag {
					continue // an earlier trial's, delivered late
				}
				seq := int64(binary.BigEndian.Uint64(b[:8]))
				if seq < 0 || seq >= maxSeq {
					r.bad++
					continue
				}
				if seen[seq/64]&(1<<(seq%64)) != 0 {
					r.dup++
					continue
				}
				seen[seq/64] |= 1 << (seq % 64)
				r.ok++
			}
		}()
	}

	buf := make([]byte, size)
	var sent int64
	start := time.Now()
	deadline := start.Add(d)
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(deadline) || sent >= maxSeq {
			break
		}
		due := int64(1 << 62)
		if rate > 0 {
			due = int64(now.Sub(start).Seconds()*rate) + 1
			if due <= sent {
				time.Sleep(200 * time.Microsecond)
				continue
			}
		}
		for burst := 0; sent < due && burst < 256; burst++ {
			fillDatagram(buf, sent, tag)
			if _, err := clients[sent%int64(len(clients))].Write(buf); err != nil {
				if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ECONNREFUSED) {
					// Local queue full (or a stale ICMP error): the datagram
					// was not sent; the next one goes out under the next
					// sequence number only once this one is sent.
					continue
				}
				return Sample{}, fmt.Errorf("UDP send: %w", err)
			}
			sent++
		}
	}
	sendTime := time.Since(start)
	// Let the tunnel drain, then stop the receivers.
	time.Sleep(300 * time.Millisecond)
	for _, c := range servers {
		c.Close()
	}
	var r rxResult
	for range receivers {
		x := <-rxDone
		r.ok, r.bad, r.dup = r.ok+x.ok, r.bad+x.bad, r.dup+x.dup
	}
	s := Sample{Bytes: r.ok * int64(size), Elapsed: sendTime, Packets: r.ok, Sent: sent, Corrupt: r.bad + r.dup, Intact: r.bad == 0 && r.dup == 0, Rate: rate}
	if !s.Intact {
		return s, fmt.Errorf("data corrupted: %d datagrams failed the hash check, %d arrived twice", r.bad, r.dup)
	}
	if ctx.Err() != nil {
		return s, ctx.Err()
	}
	return s, nil
}

// fillDatagram writes datagram number seq of the trial tagged tag:
// sequence, length, tag, hash, then pattern bytes chosen by seq.
func fillDatagram(b []byte, seq int64, tag uint32) {
	off := int(uint64(seq)*2654435761) % (len(pattern) - len(b))
	copy(b[udpHeader:], pattern[off:])
	binary.BigEndian.PutUint64(b[0:], uint64(seq))
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)))
	binary.BigEndian.PutUint32(b[12:], tag)
	binary.BigEndian.PutUint64(b[16:], 0)
	binary.BigEndian.PutUint64(b[16:], xxhash.Sum64(b))
}

// verifyDatagram checks a datagram written by fillDatagram.
func verifyDatagram(b []byte) bool {
	if len(b) < udpHeader || int(binary.BigEndian.Uint32(b[8:])) != len(b) {
		return false
	}
	want := binary.BigEndian.Uint64(b[16:])
	binary.BigEndian.PutUint64(b[16:], 0)
	return xxhash.Sum64(b) == want
}

// LossTarget is the loss under which a UDP rate counts as sustained
// (RFC 2544 style, with a tolerance of 0.1%).
const LossTarget = 0.001

// UDPRateSearch finds the highest rate at which size-byte datagrams cross
// with less than LossTarget loss: an unpaced trial gives the ceiling, then
// a binary search of steps paced trials of d each. It returns the best
// passing trial, or the lowest rate tried when none passed (with ok
// false).
func UDPRateSearch(ctx context.Context, p Path, size int, d time.Duration, steps int) (best Sample, ok bool, err error) {
	return udpRateSearch(ctx, p, []udpFlow{{}}, size, d, steps)
}

func udpRateSearch(ctx context.Context, p Path, flows []udpFlow, size int, d time.Duration, steps int) (best Sample, ok bool, err error) {
	first, err := udpFlood(ctx, p, flows, size, 0, d)
	if err != nil {
		return first, false, err
	}
	if first.Loss() < LossTarget && first.Packets > 0 {
		return first, true, nil
	}
	// The rate delivered unpaced bounds what can pass; halve until a
	// rate passes, then bisect between the best pass and the lowest
	// failure.
	hi, lo := first.PPS(), 0.0
	rate := hi
	last := first
	for range steps {
		if rate < 1 {
			break
		}
		s, err := udpFlood(ctx, p, flows, size, rate, d)
		if err != nil {
			return s, false, err
		}
		if s.Loss() < LossTarget && s.Packets > 0 {
			if !ok || s.PPS() > best.PPS() {
				best = s
			}
			ok, lo = true, rate
		} else {
			hi, last = rate, s
		}
		if !ok {
			rate /= 2
			continue
		}
		if hi-lo < 0.03*hi {
			break
		}
		rate = (lo + hi) / 2
	}
	if !ok {
		return last, false, nil
	}
	return best, true, nil
}

// RequestResponse measures round trips of 64-byte messages over one TCP
// connection for d, checking every echo.
func RequestResponse(ctx context.Context, p Path, d time.Duration) (Sample, error) {
	ln, err := listenTCP(p.Server, p.Dst)
	if err != nil {
		return Sample{}, fmt.Errorf("listen on %s: %w", p.Dst, err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
		_ = c.(*net.TCPConn).SetNoDelay(true)
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	c, err := dialTCP(ctx, p.Client, p.target(ln.Addr().String()))
	if err != nil {
		return Sample{}, fmt.Errorf("connect to %s through the tunnel: %w", ln.Addr(), err)
	}
	_ = c.(*net.TCPConn).SetNoDelay(true)
	_ = c.SetDeadline(time.Now().Add(d + 30*time.Second))
	req, resp := make([]byte, 64), make([]byte, 64)
	s := Sample{Intact: true}
	start := time.Now()
	for i := 0; time.Since(start) < d && ctx.Err() == nil; i++ {
		copy(req, pattern[(i*64)%(len(pattern)-64):])
		binary.BigEndian.PutUint64(req, uint64(i))
		t0 := time.Now()
		if _, err := c.Write(req); err != nil {
			c.Close()
			return s, fmt.Errorf("request: %w", err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			c.Close()
			return s, fmt.Errorf("response: %w", err)
		}
		s.Latencies = append(s.Latencies, time.Since(t0))
		if string(req) != string(resp) {
			s.Intact = false
			c.Close()
			return s, errors.New("data corrupted: a response differs from its request")
		}
		s.Packets++
		s.Sent++
		s.Bytes += 64
	}
	s.Elapsed = time.Since(start)
	c.Close()
	wg.Wait()
	slices.Sort(s.Latencies)
	return s, ctx.Err()
}
