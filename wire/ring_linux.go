package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PACKET_MMAP rings (Documentation/networking/packet_mmap.rst): the kernel
// and secnic share the frames of a packet socket through mmap, and a
// status word at the start of each frame (TPACKET_V2) or block
// (TPACKET_V3) says whose turn it is. Receiving costs no system call while
// frames are waiting; sending fills frames and kicks the kernel with one
// sendto per batch, which sends them all (with PACKET_QDISC_BYPASS straight
// to the driver).

// Frame and block header layouts (linux/if_packet.h), as offsets.
const (
	// struct tpacket2_hdr
	tp2Status  = 0
	tp2Len     = 4
	tp2Snaplen = 8
	tp2Mac     = 12
	tp2Net     = 14
	tp2HdrLen  = 32 // TPACKET_ALIGN(sizeof(struct tpacket2_hdr))

	// struct tpacket3_hdr
	tp3NextOffset = 0
	tp3Snaplen    = 12
	tp3Len        = 16
	tp3Status     = 20
	tp3Mac        = 24
	tp3Net        = 26
	tp3HdrLen     = 48

	// struct tpacket_block_desc with struct tpacket_hdr_v1
	bdStatus  = 8
	bdNumPkts = 12
	bdFirst   = 16
	bdHdrLen  = 48

	ethHdrLen = 14
)

// loadStatus and storeStatus access a status word the kernel shares. The
// atomics order the accesses to the frame around them (acquire / release).
func loadStatus(mem []byte, off int) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&mem[off])))
}

func storeStatus(mem []byte, off int, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&mem[off])), v)
}

// v2Frame parses the TPACKET_V2 frame hdr (one frame of the ring) and
// returns the packet, or ok=false if the header does not describe bytes
// inside the frame. A packet cut to the frame (snaplen < len) is returned
// with trunc=true.
func v2Frame(hdr []byte) (pkt []byte, trunc, ok bool) {
	if len(hdr) < tp2HdrLen {
		return nil, false, false
	}
	plen := binary.NativeEndian.Uint32(hdr[tp2Len:])
	snap := binary.NativeEndian.Uint32(hdr[tp2Snaplen:])
	net := int(binary.NativeEndian.Uint16(hdr[tp2Net:]))
	if net < tp2HdrLen || net > len(hdr) || uint64(snap) > uint64(len(hdr)-net) {
		return nil, false, false
	}
	return hdr[net : net+int(snap)], snap < plen, true
}

// v3Frame parses the TPACKET_V3 frame at off in block. It returns the
// packet, whether it was cut short, and the offset of the next frame
// (0 if this is the block's last one).
func v3Frame(block []byte, off int) (pkt []byte, trunc bool, next int, ok bool) {
	if off < bdHdrLen || off > len(block)-tp3HdrLen {
		return nil, false, 0, false
	}
	h := block[off:]
	nextOff := int(binary.NativeEndian.Uint32(h[tp3NextOffset:]))
	snap := binary.NativeEndian.Uint32(h[tp3Snaplen:])
	plen := binary.NativeEndian.Uint32(h[tp3Len:])
	net := int(binary.NativeEndian.Uint16(h[tp3Net:]))
	if net < tp3HdrLen || net > len(h) || uint64(snap) > uint64(len(h)-net) {
		return nil, false, 0, false
	}
	if nextOff != 0 {
		if nextOff < tp3HdrLen || nextOff > len(h)-tp3HdrLen {
			return nil, false, 0, false
		}
		next = off + nextOff
	}
	return h[net : net+int(snap)], snap < plen, next, true
}

// ring is the memory of one mmapped ring and the lock that keeps Close from
// unmapping it under a reader or writer.
type ring struct {
	f   *os.File
	fd  int
	rc  syscall.RawConn
	mu  sync.RWMutex
	mem []byte // nil after close
}

func (r *ring) close() {
	if r.f != nil {
		r.f.Close() // wakes a goroutine parked in rc.Read / rc.Write
	}
	r.mu.Lock()
	if r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
	r.mu.Unlock()
}

// rxRing is the receive ring of a packet socket, TPACKET_V3 (blocks of
// frames handed over as a whole) or TPACKET_V2 (one frame at a time).
type rxRing struct {
	ring
	version int
	// V3: block geometry and the reader's place in the current block.
	blockSize, blocks int
	blk               int // current block (V3) or frame (V2)
	left, next        int // V3: frames left in the current block, next frame's offset
	// V2: frame geometry.
	frameSize, frames int

	// arguments and result of one read, for readFn (bound once).
	bufs   [][]byte
	sizes  []int
	offset int
	n      int
	bad    uint64 // frames whose header made no sense (kernel bug or torn ring)
	readFn func(fd uintptr) bool
	// cur is blk for ready, which runs on other goroutines than read (V2).
	cur atomic.Int32
}

// rxGeometry is the size of an RX ring.
type rxGeometry struct {
	Version   int // unix.TPACKET_V2 or unix.TPACKET_V3
	BlockSize int // bytes per block, a multiple of the page size
	Blocks    int
	FrameSize int // V2: bytes per frame (header + packet), power of two
	// RetireMs is V3's block retire timeout: a block that is not full is
	// handed over after this many milliseconds (at least 1).
	RetireMs int
}

// setupRX turns the packet socket fd into a ring receiver. fd must still be
// unbound (so no packet arrives before the ring exists).
func setupRX(fd int, g rxGeometry) (*rxRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, g.Version); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION %d: %w", g.Version+1, err)
	}
	r := &rxRing{version: g.Version}
	switch g.Version {
	case unix.TPACKET_V3:
		req := unix.TpacketReq3{
			Block_size:       uint32(g.BlockSize),
			Block_nr:         uint32(g.Blocks),
			Frame_size:       uint32(g.FrameSize),
			Frame_nr:         uint32(g.BlockSize / g.FrameSize * g.Blocks),
			Retire_blk_tov:   uint32(max(g.RetireMs, 1)),
			Feature_req_word: 0,
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return nil, fmt.Errorf("PACKET_RX_RING (TPACKET_V3, %d × %d bytes): %w", g.Blocks, g.BlockSize, err)
		}
		r.blockSize, r.blocks = g.BlockSize, g.Blocks
	case unix.TPACKET_V2:
		req := unix.TpacketReq{
			Block_size: uint32(g.BlockSize),
			Block_nr:   uint32(g.Blocks),
			Frame_size: uint32(g.FrameSize),
			Frame_nr:   uint32(g.BlockSize / g.FrameSize * g.Blocks),
		}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
			return nil, fmt.Errorf("PACKET_RX_RING (TPACKET_V2, %d × %d bytes): %w", req.Frame_nr, g.FrameSize, err)
		}
		r.frameSize, r.frames = g.FrameSize, int(req.Frame_nr)
	default:
		return nil, fmt.Errorf("TPACKET version %d is not supported", g.Version+1)
	}
	mem, err := unix.Mmap(fd, 0, g.BlockSize*g.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap RX ring: %w", err)
	}
	r.mem, r.fd = mem, fd
	r.readFn = r.doRead
	return r, nil
}

// read copies up to len(bufs) waiting packets into bufs[i][offset:],
// waiting (in the netpoller) until there is at least one. A packet that
// does not fit, or that the ring cut short, gets size 0.
func (r *rxRing) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	r.bufs, r.sizes, r.offset, r.n = bufs, sizes, offset, 0
	err := r.rc.Read(r.readFn)
	r.bufs, r.sizes = nil, nil
	if err != nil {
		return 0, err
	}
	if r.n < 0 {
		return 0, os.ErrClosed
	}
	return r.n, nil
}

func (r *rxRing) doRead(uintptr) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.mem == nil {
		r.n = -1
		return true
	}
	if r.version == unix.TPACKET_V3 {
		r.n = r.fillV3(r.bufs, r.sizes, r.offset)
	} else {
		r.n = r.fillV2(r.bufs, r.sizes, r.offset)
	}
	return r.n > 0
}

// deliver copies pkt into bufs[i][offset:] and records its size.
func deliver(bufs [][]byte, sizes []int, i, offset int, pkt []byte, trunc bool) {
	dst := bufs[i][offset:]
	if trunc || len(pkt) > len(dst) {
		sizes[i] = 0
		return
	}
	sizes[i] = copy(dst, pkt)
}

func (r *rxRing) fillV2(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for n < len(bufs) {
		off := r.blk * r.frameSize
		if loadStatus(r.mem, off+tp2Status)&unix.TP_STATUS_USER == 0 {
			break
		}
		pkt, trunc, ok := v2Frame(r.mem[off : off+r.frameSize])
		if ok {
			deliver(bufs, sizes, n, offset, pkt, trunc)
			n++
		} else {
			r.bad++
		}
		storeStatus(r.mem, off+tp2Status, unix.TP_STATUS_KERNEL)
		if r.blk++; r.blk == r.frames {
			r.blk = 0
		}
	}
	r.cur.Store(int32(r.blk))
	return n
}

// ready reports, without a system call, whether the next frame of a V2
// ring holds a packet (the kernel has handed it to user space). A V3 ring
// reports false: its blocks are handed over by a timer anyway.
func (r *rxRing) ready() bool {
	if r.version != unix.TPACKET_V2 {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.mem == nil {
		return true // closed: a Read returns at once
	}
	off := int(r.cur.Load()) * r.frameSize
	return loadStatus(r.mem, off+tp2Status)&unix.TP_STATUS_USER != 0
}

func (r *rxRing) fillV3(bufs [][]byte, sizes []int, offset int) int {
	n := 0
	for n < len(bufs) {
		base := r.blk * r.blockSize
		block := r.mem[base : base+r.blockSize]
		if r.left == 0 {
			if loadStatus(block, bdStatus)&unix.TP_STATUS_USER == 0 {
				break
			}
			r.left = int(binary.NativeEndian.Uint32(block[bdNumPkts:]))
			r.next = int(binary.NativeEndian.Uint32(block[bdFirst:]))
			if r.left == 0 {
				r.releaseBlock(block)
				continue
			}
		}
		pkt, trunc, next, ok := v3Frame(block, r.next)
		if !ok || (next == 0 && r.left > 1) {
			// The rest of the block cannot be walked: give it back.
			r.bad++
			r.left = 0
			r.releaseBlock(block)
			continue
		}
		deliver(bufs, sizes, n, offset, pkt, trunc)
		n++
		r.next = next
		if r.left--; r.left == 0 {
			r.releaseBlock(block)
		}
	}
	return n
}

func (r *rxRing) releaseBlock(block []byte) {
	storeStatus(block, bdStatus, unix.TP_STATUS_KERNEL)
	if r.blk++; r.blk == r.blocks {
		r.blk = 0
	}
}

// errTXRingStuck is returned when the kernel keeps refusing the frame at
// the head of the TX ring.
var errTXRingStuck = errors.New("the interface keeps refusing packets (ENOBUFS): its queue is full or it is down")

// txRing is a TPACKET_V2 transmit ring on a SOCK_RAW packet socket: each
// frame holds a whole Ethernet frame.
type txRing struct {
	ring
	frameSize, frames int
	head              int // next frame to fill; equals the kernel's head between writes

	// kick asks the kernel to send every frame marked SEND_REQUEST from
	// its head on (sendto with MSG_DONTWAIT); tests replace it.
	kick   func() error
	waitFn func(fd uintptr) bool
	ready  bool
	sent   atomic.Uint64 // frames the kernel took
}

// setupTX turns the packet socket fd into a ring sender with frames of
// frameSize bytes (a power of two holding tp2HdrLen + Ethernet + MTU).
func setupTX(fd, frameSize, frames int) (*txRing, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION 2: %w", err)
	}
	page := os.Getpagesize()
	blockSize := max(frameSize, page)
	perBlock := blockSize / frameSize
	blocks := (frames + perBlock - 1) / perBlock
	req := unix.TpacketReq{Block_size: uint32(blockSize), Block_nr: uint32(blocks), Frame_size: uint32(frameSize), Frame_nr: uint32(blocks * perBlock)}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_TX_RING (%d × %d bytes): %w", req.Frame_nr, frameSize, err)
	}
	mem, err := unix.Mmap(fd, 0, blockSize*blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap TX ring: %w", err)
	}
	t := &txRing{frameSize: frameSize, frames: int(req.Frame_nr)}
	t.mem, t.fd = mem, fd
	t.kick = t.sendto
	t.waitFn = t.doWait
	return t, nil
}

func (t *txRing) sendto() error { return kickTX(t.fd) }

// kickTX asks the kernel to send what the TX ring of socket fd holds (a
// packet socket's TPACKET ring or an AF_XDP socket's). The call never
// blocks (MSG_DONTWAIT), so it is a raw system call, see internal/mmsg: it
// can take tens of microseconds on a veth, whose receive side (the peer's
// XDP program or packet socket) runs inside it, and as an ordinary system
// call the Go runtime's sysmon would hand the P to another thread
// meanwhile and back after (measured on AF_XDP: link TCP +14 %, CPU per
// GB −9 %, docs/performance.md).
func kickTX(fd int) error {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// frame returns frame i's bytes.
func (t *txRing) frame(i int) []byte {
	off := i * t.frameSize
	return t.mem[off : off+t.frameSize]
}

// slot returns the data area of the frame head+k, or nil if the kernel
// still owns it (a packet on its way out).
func (t *txRing) slot(k int) []byte {
	i := (t.head + k) % t.frames
	if loadStatus(t.mem, i*t.frameSize+tp2Status) != unix.TP_STATUS_AVAILABLE {
		return nil
	}
	return t.frame(i)[tp2HdrLen:]
}

// fill marks frame head+k, whose data area holds n bytes, ready to send.
func (t *txRing) fill(k, n int) {
	f := t.frame((t.head + k) % t.frames)
	binary.NativeEndian.PutUint32(f[tp2Len:], uint32(n))
	storeStatus(f, tp2Status, unix.TP_STATUS_SEND_REQUEST)
}

// waitSlot waits until frame head is free again (its packet has left).
func (t *txRing) waitSlot() error {
	t.ready = false
	if err := t.rc.Write(t.waitFn); err != nil {
		return err
	}
	if !t.ready {
		return os.ErrClosed
	}
	return nil
}

func (t *txRing) doWait(uintptr) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.mem == nil {
		return true
	}
	t.ready = loadStatus(t.mem, t.head*t.frameSize+tp2Status) == unix.TP_STATUS_AVAILABLE
	return t.ready
}

// flush sends frames head .. head+cnt-1, which fill marked. It returns how
// many went out (handed to the driver) and the last error. A frame the
// kernel gives back (the driver refused it, e.g. a full queue) is retried
// a few times, then dropped: the frames behind it move up one place so
// that the kernel, which sends from its head in order, reaches them. The
// ring is left with no frame marked, head just past the last one sent.
func (t *txRing) flush(cnt int) (sent int, last error) {
	retries := 0
	for cnt > 0 {
		err := t.kick()
		// The kernel consumed a prefix of the marked frames.
		k := 0
		for k < cnt && loadStatus(t.mem, ((t.head+k)%t.frames)*t.frameSize+tp2Status) != unix.TP_STATUS_SEND_REQUEST {
			k++
		}
		sent += k
		t.sent.Add(uint64(k))
		t.head = (t.head + k) % t.frames
		cnt -= k
		if cnt == 0 {
			break
		}
		if k > 0 {
			retries = 0
		}
		if err == nil || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS) {
			if retries++; retries <= 8 {
				osYield()
				continue
			}
			if err == nil || errors.Is(err, unix.EAGAIN) {
				err = errTXRingStuck
			}
		}
		if errors.Is(err, unix.EBADF) {
			t.unmark(cnt)
			return sent, err
		}
		last = err
		t.dropHead(cnt)
		cnt--
		retries = 0
	}
	return sent, last
}

// dropHead removes the marked frame at head from a run of cnt marked
// frames by moving the others up one place.
func (t *txRing) dropHead(cnt int) {
	for j := 0; j < cnt-1; j++ {
		dst := t.frame((t.head + j) % t.frames)
		src := t.frame((t.head + j + 1) % t.frames)
		n := int(binary.NativeEndian.Uint32(src[tp2Len:]))
		copy(dst[tp2HdrLen:tp2HdrLen+n], src[tp2HdrLen:tp2HdrLen+n])
		binary.NativeEndian.PutUint32(dst[tp2Len:], uint32(n))
	}
	last := t.frame((t.head + cnt - 1) % t.frames)
	storeStatus(last, tp2Status, unix.TP_STATUS_AVAILABLE)
}

// unmark gives back cnt marked frames from head without sending them.
func (t *txRing) unmark(cnt int) {
	for j := range cnt {
		storeStatus(t.frame((t.head+j)%t.frames), tp2Status, unix.TP_STATUS_AVAILABLE)
	}
}

// osYield gives the driver a moment to drain its queue.
func osYield() { _ = unix.Nanosleep(&unix.Timespec{Nsec: 20_000}, nil) }
