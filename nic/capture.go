package nic

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet captures. The datapath copies a packet into a free slot of a
// bounded queue and moves on; a writer goroutine writes the slots to a pcap
// file (link type 101, raw IP, nanosecond timestamps) through a buffered
// writer and hands them back. When no slot is free the packet is not
// captured and the capture's drop counter says so: a capture never slows
// the datapath down or makes it allocate. Slots are snapLen bytes; longer
// packets are truncated in the file (the pcap record keeps the original length).

// Capture defaults.
const (
	DefaultCaptureSnapLen = 65535
	DefaultCaptureQueue   = 1024
)

type capture struct {
	side, path string
	f          *os.File
	bw         *bufio.Writer
	pw         *pcapgo.Writer
	log        *slog.Logger

	slots   [][]byte
	lens    []int // bytes stored
	origs   []int // original lengths
	stamps  []int64
	free    chan int32
	full    chan int32
	packets atomic.Uint64
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
	err     error
}

func openCapture(path, side string, snapLen, depth int, log *slog.Logger) (*capture, error) {
	if snapLen <= 0 {
		snapLen = DefaultCaptureSnapLen
	}
	if depth <= 0 {
		depth = DefaultCaptureQueue
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("nic: %s capture: %w (check the directory exists and is writable)", side, err)
	}
	c := &capture{
		side: side, path: path, f: f, log: log,
		bw:     bufio.NewWriterSize(f, 1<<20),
		slots:  make([][]byte, depth),
		lens:   make([]int, depth),
		origs:  make([]int, depth),
		stamps: make([]int64, depth),
		free:   make(chan int32, depth),
		full:   make(chan int32, depth),
		done:   make(chan struct{}),
	}
	c.pw = pcapgo.NewWriterNanos(c.bw)
	if err := c.pw.WriteFileHeader(uint32(snapLen), layers.LinkTypeRaw); err != nil {
		f.Close()
		return nil, fmt.Errorf("nic: %s capture %s: %w", side, path, err)
	}
	backing := make([]byte, depth*snapLen)
	for i := range c.slots {
		c.slots[i] = backing[i*snapLen : (i+1)*snapLen : (i+1)*snapLen]
		c.free <- int32(i)
	}
	go c.writer()
	return c, nil
}

// add copies pkt into the queue, or counts it as dropped when the queue is
// full. It never blocks and never allocates.
func (c *capture) add(pkt []byte) {
	select {
	case i := <-c.free:
		c.lens[i] = copy(c.slots[i], pkt)
		c.origs[i] = len(pkt)
		c.stamps[i] = time.Now().UnixNano()
		c.full <- i
	default:
		c.dropped.Add(1)
	}
}

func (c *capture) writer() {
	defer close(c.done)
	for i := range c.full {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, c.stamps[i]), CaptureLength: c.lens[i], Length: c.origs[i]}
		if err := c.pw.WritePacket(ci, c.slots[i][:c.lens[i]]); err != nil && c.err == nil {
			c.err = err
			c.log.Error("packet capture write failed; later packets are lost", "side", c.side, "path", c.path, "err", err)
		} else if err == nil {
			c.packets.Add(1)
		}
		c.free <- i
		if len(c.full) == 0 {
			if err := c.bw.Flush(); err != nil && c.err == nil {
				c.err = err
			}
		}
	}
}

// close stops the writer after the queued packets are written. The
// datapath must not call add afterwards.
func (c *capture) close() error {
	c.once.Do(func() {
		close(c.full)
		<-c.done
		if err := c.bw.Flush(); err != nil && c.err == nil {
			c.err = err
		}
		if err := c.f.Close(); err != nil && c.err == nil {
			c.err = err
		}
	})
	return c.err
}

func (c *capture) stats() CaptureStats {
	return CaptureStats{Side: c.side, Path: c.path, Packets: c.packets.Load(), Dropped: c.dropped.Load()}
}
