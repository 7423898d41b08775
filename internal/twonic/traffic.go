//go:build linux

package twonic

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
)

// PingResult is what ping(8) reported.
type PingResult struct {
	Sent, Received int
	// Output is ping's output.
	Output string
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// PingOptions tune Ping.
type PingOptions struct {
	// Count of echo requests (default 3).
	Count int
	// Size of the ICMP payload (ping -s; default 56).
	Size int
	// DF forbids fragmentation (ping -M do); NoDF clears DF and lets the
	// host fragment (ping -M dont). Neither: ping's default (DF set, the
	// path MTU learned from ICMP honoured).
	DF, NoDF bool
	// Interval between requests (default 200ms).
	Interval time.Duration
	// Wait is how long ping waits for the last reply (default 2s).
	Wait time.Duration
}

// Ping runs ping(8) inside the namespace (ip netns exec) towards dst. An
// unanswered ping is not an error: look at the result.
func Ping(ctx context.Context, ns netlab.Side, dst netip.Addr, o PingOptions) (PingResult, error) {
	if o.Count == 0 {
		o.Count = 3
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Wait == 0 {
		o.Wait = 2 * time.Second
	}
	args := []string{"netns", "exec", ns.Name, "ping", "-n", "-c", strconv.Itoa(o.Count),
		"-i", fmt.Sprintf("%.3f", o.Interval.Seconds()), "-W", fmt.Sprintf("%.3f", o.Wait.Seconds())}
	if o.Size > 0 {
		args = append(args, "-s", strconv.Itoa(o.Size))
	}
	switch {
	case o.DF:
		args = append(args, "-M", "do")
	case o.NoDF:
		args = append(args, "-M", "dont")
	}
	args = append(args, dst.String())
	cmd := exec.CommandContext(ctx, "ip", args...)
	out, err := cmd.CombinedOutput()
	res := PingResult{Output: string(out)}
	m := pingStats.FindSubmatch(out)
	if m == nil {
		if err != nil {
			return res, fmt.Errorf("ping %s in %s: %w: %s", dst, ns.Name, err, bytes.TrimSpace(out))
		}
		return res, fmt.Errorf("ping %s in %s: unexpected output: %s", dst, ns.Name, bytes.TrimSpace(out))
	}
	res.Sent, _ = strconv.Atoi(string(m[1]))
	res.Received, _ = strconv.Atoi(string(m[2]))
	return res, nil
}

// Transfer is the outcome of a TCP transfer.
type Transfer struct {
	Bytes    int64
	Duration time.Duration
	// Sent and Received are the SHA-256 digests of both ends.
	Sent, Received [32]byte
}

// OK reports whether every byte arrived intact.
func (t Transfer) OK() bool { return t.Sent == t.Received }

// Mbps is the goodput in megabits per second.
func (t Transfer) Mbps() float64 {
	if t.Duration <= 0 {
		return 0
	}
	return float64(t.Bytes) * 8 / t.Duration.Seconds() / 1e6
}

// TCPTransfer sends n random bytes from a TCP server at serverAddr in
// server's namespace to a client in client's namespace, and returns both
// ends' SHA-256 digests.
func TCPTransfer(ctx context.Context, server netlab.Side, serverAddr netip.Addr, client netlab.Side, n int64) (Transfer, error) {
	var ln net.Listener
	err := netns.Do(server.Path, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(serverAddr, 0).String())
		return err
	})
	if err != nil {
		return Transfer{}, fmt.Errorf("listen in %s: %w", server.Name, err)
	}
	defer ln.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}

	type srvResult struct {
		sum [32]byte
		err error
	}
	srv := make(chan srvResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- srvResult{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		h := sha256.New()
		_, err = io.CopyN(io.MultiWriter(c, h), rand.Reader, n)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		srv <- srvResult{sum: sum, err: err}
	}()

	var conn net.Conn
	start := time.Now()
	err = netns.Do(client.Path, func() (err error) {
		d := net.Dialer{Deadline: deadline}
		conn, err = d.DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		ln.Close()
		<-srv
		return Transfer{}, fmt.Errorf("connect from %s to %s: %w", client.Name, ln.Addr(), err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close(); ln.Close() })
	defer stop()
	_ = conn.SetDeadline(deadline)
	h := sha256.New()
	got, err := io.Copy(h, conn)
	t := Transfer{Bytes: got, Duration: time.Since(start)}
	copy(t.Received[:], h.Sum(nil))
	r := <-srv
	t.Sent = r.sum
	if err != nil {
		return t, fmt.Errorf("receive: %w after %d bytes", err, got)
	}
	if r.err != nil {
		return t, fmt.Errorf("send: %w", r.err)
	}
	if got != n {
		return t, fmt.Errorf("received %d bytes, want %d", got, n)
	}
	return t, nil
}

// InjectIPv4 sends complete IPv4 datagrams from the namespace as they are
// (a raw IPPROTO_RAW socket, header included), so that they reach the
// other side's wire as if a peer had sent them.
func InjectIPv4(ns netlab.Side, pkts ...[]byte) error {
	return netns.Do(ns.Path, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			if len(p) < 20 || p[0]>>4 != 4 {
				return errors.New("InjectIPv4: not an IPv4 datagram")
			}
			var dst [4]byte
			copy(dst[:], p[16:20])
			if err := unix.Sendto(fd, p, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
				return fmt.Errorf("send: %w", err)
			}
		}
		return nil
	})
}

// CapturePath returns the pcap file of side's "host" or "wire" capture.
func (l *Lab) CapturePath(side, which string) string {
	return filepath.Join(l.Scenario.CaptureDir, side+"-"+which+".pcap")
}
