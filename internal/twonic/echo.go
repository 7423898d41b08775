//go:build linux

package twonic

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/netns"
)

// Echo sends ICMP (ICMPv6) echo requests from inside the namespace to dst
// and counts the matching replies, like ping(8) but built in: it needs no
// ping binary, only a raw socket (root or CAP_NET_RAW). Only Count,
// Size, Interval and Wait of the options apply. An unanswered request is
// not an error: look at the result.
func Echo(ctx context.Context, ns netlab.Side, dst netip.Addr, o PingOptions) (PingResult, error) {
	if o.Count == 0 {
		o.Count = 3
	}
	if o.Size == 0 {
		o.Size = 56
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Wait == 0 {
		o.Wait = 2 * time.Second
	}
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var conn *icmp.PacketConn
	err := netns.Do(ns.Path, func() (err error) {
		conn, err = icmp.ListenPacket(network, "")
		return err
	})
	if err != nil {
		return PingResult{}, fmt.Errorf("ICMP socket in %s: %w (needs root or CAP_NET_RAW)", ns.Name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	id := os.Getpid() & 0xffff
	payload := make([]byte, o.Size)
	_, _ = rand.Read(payload)
	var out strings.Builder
	res := PingResult{}
	replied := make(map[int]bool)
	got := make(chan int, o.Count)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				readErr <- err
				return
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			e, ok := m.Body.(*icmp.Echo)
			if !ok || e.ID != id || string(e.Data) != string(payload) {
				continue
			}
			if a, ok := netip.AddrFromSlice(peer.(*net.IPAddr).IP); !ok || a.Unmap() != dst {
				continue
			}
			got <- e.Seq
		}
	}()
	sent := make(map[int]time.Time)
	collect := func(until time.Time) {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		for {
			select {
			case seq := <-got:
				if t0, ok := sent[seq]; ok && !replied[seq] {
					replied[seq] = true
					res.Received++
					fmt.Fprintf(&out, "%d bytes from %s: icmp_seq=%d time=%.3f ms\n", o.Size+8, dst, seq, float64(time.Since(t0).Microseconds())/1000)
				}
				if res.Received == o.Count {
					return
				}
			case <-t.C:
				return
			case <-ctx.Done():
				return
			}
		}
	}
	for seq := 1; seq <= o.Count && ctx.Err() == nil; seq++ {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
		b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
		if err != nil {
			return res, err
		}
		sent[seq] = time.Now()
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			fmt.Fprintf(&out, "icmp_seq=%d: send: %v\n", seq, err)
		}
		res.Sent++
		if seq < o.Count {
			collect(time.Now().Add(o.Interval))
		}
	}
	collect(time.Now().Add(o.Wait))
	select {
	case err := <-readErr:
		if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			return res, fmt.Errorf("ICMP receive in %s: %w", ns.Name, err)
		}
	default:
	}
	fmt.Fprintf(&out, "%d packets transmitted, %d received\n", res.Sent, res.Received)
	res.Output = out.String()
	return res, ctx.Err()
}
