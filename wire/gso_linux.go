package wire

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/secnic/secnic/internal/mmsg"
)

// UDP segmentation offload (GSO, UDP_SEGMENT, Linux 4.18) and receive
// coalescing (GRO, UDP_GRO, Linux 5.0) for the UDP wire.
//
// Send: a run of consecutive packets to one destination, all of one size
// but the last (which may be shorter), goes to the kernel as one message
// whose iovec list points at the packets where they lie (no copy) and whose
// control message carries the segment size. The kernel builds one
// super-datagram and cuts it into one UDP datagram per packet at the
// device, or hands it whole to a receiving socket that asked for UDP_GRO
// (loopback, veth). A batch of runs is still one sendmmsg.
//
// Receive: with UDP_GRO on, the kernel may deliver several datagrams of one
// flow as one buffer with the segment size in a control message; the
// reader cuts it back into the caller's buffers.

const (
	// udpMaxSegments is the kernel's UDP_MAX_SEGMENTS: the most datagrams
	// one UDP_SEGMENT send may carry.
	udpMaxSegments = 64
	// gsoMaxBytes4 and gsoMaxBytes6 bound the UDP payload of one
	// segmented send: the kernel refuses (EMSGSIZE) a super-datagram
	// whose IP header, UDP header and payload exceed 65535 bytes (IPv6
	// too, although its payload length field would allow 40 more).
	gsoMaxBytes4 = 0xffff - 20 - 8
	gsoMaxBytes6 = 0xffff - 40 - 8
	// groBufSize holds the largest coalesced datagram the kernel delivers.
	groBufSize = 1 << 16
)

var (
	// gsoCmsgSpace is the room for one UDP_SEGMENT control message (a
	// 16-bit segment size).
	gsoCmsgSpace = unix.CmsgSpace(2)
	// groCmsgSpace is the control room per received message: UDP_GRO
	// (an int), with space to spare should the kernel add another.
	groCmsgSpace = 2 * unix.CmsgSpace(4)
)

// probeGSO reports whether the socket supports UDP_SEGMENT (the getsockopt
// fails with ENOPROTOOPT on kernels without it).
func probeGSO(fd int) bool {
	_, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_SEGMENT)
	return err == nil
}

// enableGRO asks the kernel for coalesced receives and reports whether it
// agreed.
func enableGRO(fd int) bool {
	return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
}

// gsoSender writes batches of packets with sendmmsg, one message per run of
// equal-size packets to one destination, each run segmented by the kernel
// (UDP_SEGMENT). Everything it needs is allocated once; write does not
// allocate. It is used by one goroutine at a time.
type gsoSender struct {
	rc syscall.RawConn
	// iov has one entry per packet of a chunk; a message's iovec list is
	// the slice of it that covers its run.
	iov  []unix.Iovec
	hdrs []mmsg.Hdr
	ctrl []byte // gsoCmsgSpace bytes per message
	// first and count give each message's packets (indices into iov).
	first, count []int
	// names holds a destination per message for an unconnected socket.
	names    []unix.RawSockaddrInet6
	maxBytes int
	log      *slog.Logger
	name     string

	// on is true while segmentation is used; confirmed once a segmented
	// message has gone out (a refusal after that does not switch it off).
	on        atomic.Bool
	confirmed bool
	// fallbacks counts runs that went out one datagram each after the
	// kernel refused them segmented.
	fallbacks atomic.Uint64

	// State of one sendmmsg call.
	cur  *mmsg.Hdr
	ncur int
	wn   int
	werr error
	fn   func(fd uintptr) bool
	one  mmsg.Hdr
}

// newGSOSender returns a sender for batches of up to batch packets. maxBytes
// is gsoMaxBytes4 or gsoMaxBytes6; on says whether to segment at all.
func newGSOSender(rc syscall.RawConn, batch, maxBytes int, on bool, log *slog.Logger, name string) *gsoSender {
	s := &gsoSender{
		rc:       rc,
		iov:      make([]unix.Iovec, batch),
		hdrs:     make([]mmsg.Hdr, batch),
		ctrl:     make([]byte, batch*gsoCmsgSpace),
		first:    make([]int, batch),
		count:    make([]int, batch),
		names:    make([]unix.RawSockaddrInet6, batch),
		maxBytes: maxBytes,
		log:      log,
		name:     name,
	}
	s.on.Store(on)
	s.fn = s.doSend
	return s
}

func (s *gsoSender) doSend(fd uintptr) bool {
	for {
		// Never blocks (MSG_DONTWAIT): a raw system call, see internal/mmsg.
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(s.cur)), uintptr(s.ncur), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			s.wn, s.werr = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.wn, s.werr = 0, e
		return true
	}
}

// runEnd returns the end of the run that starts at packet i of bufs[:n]:
// at most udpMaxSegments packets and maxBytes bytes, one destination, every
// packet as long as the first but the last, which may be shorter. Without
// segmentation every run is one packet.
func runEnd(bufs [][]byte, offset, i, n, maxBytes int, dst []netip.AddrPort) int {
	size := len(bufs[i]) - offset
	total := size
	j := i + 1
	for ; j < n && j-i < udpMaxSegments; j++ {
		l := len(bufs[j]) - offset
		if l > size || l == 0 || total+l > maxBytes || (dst != nil && dst[j] != dst[i]) {
			break
		}
		total += l
		if l < size {
			return j + 1
		}
	}
	return j
}

// write sends bufs[i][offset:] for every i, each run segmented by the
// kernel; dst, if not nil, gives each packet's destination (unconnected
// sockets). It follows tun.Port's Write contract: it tries every packet,
// counts only those that went out and never sends a packet twice. A
// segmented message the kernel refuses before sending anything (EIO,
// EINVAL, EMSGSIZE) is sent again one datagram per packet; if segmentation
// itself is the cause (EIO: the route's device cannot checksum; or the
// first segmented send fails where single datagrams go through), it is
// switched off for good, with one log line.
func (s *gsoSender) write(bufs [][]byte, offset int, dst []netip.AddrPort) (int, error) {
	total := 0
	var last error
	for len(bufs) > 0 {
		n := min(len(bufs), len(s.iov))
		sent, stop, err := s.writeChunk(bufs[:n], offset, dst)
		total += sent
		if stop {
			return total, err
		}
		if err != nil {
			last = err
		}
		bufs = bufs[n:]
		if dst != nil {
			dst = dst[n:]
		}
	}
	return total, last
}

// writeChunk sends up to len(s.iov) packets; stop reports an error after
// which nothing more can be sent (the socket is closed).
func (s *gsoSender) writeChunk(bufs [][]byte, offset int, dst []netip.AddrPort) (total int, stop bool, last error) {
	n := len(bufs)
	maxBytes := 0
	if s.on.Load() {
		maxBytes = s.maxBytes
	}
	msgs := 0
	for i := 0; i < n; {
		b := bufs[i][offset:]
		s.iov[i].Base = unsafe.SliceData(b)
		s.iov[i].SetLen(len(b))
		j := i + 1
		if maxBytes > 0 && len(b) > 0 {
			j = runEnd(bufs, offset, i, n, maxBytes, dst)
		}
		for k := i + 1; k < j; k++ {
			bk := bufs[k][offset:]
			s.iov[k].Base = unsafe.SliceData(bk)
			s.iov[k].SetLen(len(bk))
		}
		h := &s.hdrs[msgs].Hdr
		h.Iov = &s.iov[i]
		h.SetIovlen(j - i)
		if j-i > 1 {
			c := s.ctrl[msgs*gsoCmsgSpace : (msgs+1)*gsoCmsgSpace]
			putSegmentSize(c, len(b))
			h.Control = &c[0]
			h.SetControllen(len(c))
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		s.setName(h, msgs, dst, i)
		s.first[msgs], s.count[msgs] = i, j-i
		msgs++
		i = j
	}

	refused := false // ECONNREFUSED was reported once for this message
	for from := 0; from < msgs; {
		s.cur, s.ncur = &s.hdrs[from], msgs-from
		if err := s.rc.Write(s.fn); err != nil {
			return total, true, err
		}
		if s.werr == nil {
			for k := from; k < from+s.wn; k++ {
				total += s.count[k]
				if s.count[k] > 1 {
					s.confirmed = true
				}
			}
			from += s.wn
			refused = false
			continue
		}
		err := s.werr
		if errors.Is(err, unix.EBADF) {
			return total, true, err
		}
		if errors.Is(err, unix.ECONNREFUSED) && !refused {
			// A connected socket reports an earlier ICMP port
			// unreachable on the next send, which then sent nothing
			// (the error is cleared): try the message again once.
			refused = true
			continue
		}
		refused = false
		msg := from
		from++
		if s.count[msg] > 1 && (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EMSGSIZE)) {
			sent, stop, serr := s.singles(msg)
			total += sent
			if stop {
				return total, true, serr
			}
			s.fallbacks.Add(1)
			if errors.Is(err, unix.EIO) || (!s.confirmed && sent == s.count[msg]) {
				s.disable(err)
				// The rest of the chunk was laid out for
				// segmentation; it is sent one datagram each too.
				for ; from < msgs; from++ {
					sent, stop, serr2 := s.singles(from)
					total += sent
					if stop {
						return total, true, serr2
					}
					if serr2 != nil {
						last = serr2
					}
				}
			}
			if serr != nil {
				last = serr
			}
			continue
		}
		last = err
	}
	return total, false, last
}

// singles sends the packets of message msg one datagram each (to the
// message's destination) and returns how many went out and the last error;
// stop as in writeChunk.
func (s *gsoSender) singles(msg int) (sent int, stop bool, last error) {
	ref := &s.hdrs[msg].Hdr
	for k := s.first[msg]; k < s.first[msg]+s.count[msg]; k++ {
		s.one.Hdr = unix.Msghdr{Name: ref.Name, Namelen: ref.Namelen, Iov: &s.iov[k]}
		s.one.Hdr.SetIovlen(1)
		for attempt := 0; ; attempt++ {
			s.cur, s.ncur = &s.one, 1
			if err := s.rc.Write(s.fn); err != nil {
				return sent, true, err
			}
			if s.werr == nil {
				sent += s.wn
				break
			}
			if errors.Is(s.werr, unix.EBADF) {
				return sent, true, s.werr
			}
			if errors.Is(s.werr, unix.ECONNREFUSED) && attempt == 0 {
				continue
			}
			last = s.werr
			break
		}
	}
	return sent, false, last
}

// disable switches segmentation off and says so once.
func (s *gsoSender) disable(cause error) {
	if s.on.Swap(false) && s.log != nil {
		s.log.Warn("udp wire: the kernel refuses segmented sends (UDP_SEGMENT) on this socket; sending one datagram per packet from now on",
			"port", s.name, "err", cause)
	}
}

// setName points message msg's header at packet i's destination, if any.
func (s *gsoSender) setName(h *unix.Msghdr, msg int, dst []netip.AddrPort, i int) {
	if dst == nil {
		h.Name, h.Namelen = nil, 0
		return
	}
	h.Name = (*byte)(unsafe.Pointer(&s.names[msg]))
	h.Namelen = putSockaddr(&s.names[msg], dst[i])
}

// putSockaddr writes a as a sockaddr_in or sockaddr_in6 into sa and
// returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) uint32 {
	port := a.Port()
	if a.Addr().Is4() {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().As4()}
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}

// putSegmentSize writes a UDP_SEGMENT control message with size into c
// (gsoCmsgSpace bytes).
func putSegmentSize(c []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(size)
}

// groSize returns the segment size of a coalesced receive from its control
// messages, or 0 if there is none (one datagram). It reads any bytes
// (alignment included) without panicking: a malformed control area yields 0.
func groSize(control []byte) int {
	for len(control) >= unix.SizeofCmsghdr {
		// struct cmsghdr: a size_t length, then level and type (int).
		var l int
		if unix.SizeofCmsghdr == 16 {
			v := binary.NativeEndian.Uint64(control)
			if v > uint64(len(control)) {
				return 0
			}
			l = int(v)
		} else {
			l = int(binary.NativeEndian.Uint32(control))
		}
		lw := unix.SizeofCmsghdr - 8 // where level and type start
		if l < unix.SizeofCmsghdr || l > len(control) {
			return 0
		}
		level := int32(binary.NativeEndian.Uint32(control[lw:]))
		typ := int32(binary.NativeEndian.Uint32(control[lw+4:]))
		data := control[unix.CmsgLen(0):l]
		if level == unix.IPPROTO_UDP && typ == unix.UDP_GRO {
			switch {
			case len(data) >= 4:
				return int(int32(binary.NativeEndian.Uint32(data)))
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data))
			}
			return 0
		}
		space := unix.CmsgSpace(len(data))
		if space >= len(control) {
			return 0
		}
		control = control[space:]
	}
	return 0
}

// splitGRO copies the datagrams of one received buffer src, starting at
// byte pos and cut every seg bytes (seg <= 0: src is one datagram), into
// dst[k][offset:], dst[k+1][offset:], … with their lengths in sizes. A
// datagram longer than its buffer is reported with size 0. It stops when
// dst is full or src is done and returns the next k and pos.
func splitGRO(dst [][]byte, sizes []int, offset, k int, src []byte, seg, pos int) (int, int) {
	if seg <= 0 {
		seg = len(src)
	}
	for k < len(dst) && pos < len(src) {
		end := min(pos+seg, len(src))
		if end-pos > len(dst[k])-offset {
			sizes[k] = 0
		} else {
			sizes[k] = copy(dst[k][offset:], src[pos:end])
		}
		k++
		pos = end
	}
	return k, pos
}

// groReader receives with recvmmsg into preallocated scratch buffers of
// groBufSize bytes and splits coalesced receives into the caller's buffers.
// What does not fit into one Read stays for the next. It is used by one
// goroutine at a time and does not allocate.
type groReader struct {
	rc      syscall.RawConn
	hdrs    []mmsg.Hdr
	iov     []unix.Iovec
	scratch []byte
	ctrl    []byte

	// Messages [next, n) of the last recvmmsg are not yet delivered; pos
	// is how far into message next, seg its segment size.
	n, next, pos, seg int

	rcnt int
	rn   int
	rerr error
	fn   func(fd uintptr) bool
	// coalesced counts receives that carried more than one datagram.
	coalesced atomic.Uint64
}

func newGROReader(rc syscall.RawConn, batch int) *groReader {
	r := &groReader{
		rc:      rc,
		hdrs:    make([]mmsg.Hdr, batch),
		iov:     make([]unix.Iovec, batch),
		scratch: make([]byte, batch*groBufSize),
		ctrl:    make([]byte, batch*groCmsgSpace),
	}
	for i := range r.hdrs {
		r.iov[i].Base = &r.scratch[i*groBufSize]
		r.iov[i].SetLen(groBufSize)
		r.hdrs[i].Hdr.Iov = &r.iov[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	r.fn = r.doRecv
	return r
}

func (r *groReader) doRecv(fd uintptr) bool {
	for {
		// Never blocks (MSG_DONTWAIT): a raw system call, see internal/mmsg.
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.rcnt), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.rn, r.rerr = int(n), nil
			return true
		case unix.EINTR, unix.ECONNREFUSED:
			// ECONNREFUSED: an earlier ICMP port unreachable on a
			// connected socket; nothing was read.
			continue
		case unix.EAGAIN:
			return false
		}
		r.rn, r.rerr = 0, e
		return true
	}
}

// recv fills bufs[k][offset:] with datagrams and sizes[k] with their
// lengths, first from what the last receive left, and returns the count.
// It blocks only when nothing is left.
func (r *groReader) recv(bufs [][]byte, sizes []int, offset int) (int, error) {
	k := 0
	for k == 0 {
		if r.next >= r.n {
			// Each message can hold many datagrams: ask for no more
			// messages than there are buffers.
			r.rcnt = min(len(bufs), len(r.hdrs))
			for i := range r.rcnt {
				c := r.ctrl[i*groCmsgSpace : (i+1)*groCmsgSpace]
				r.hdrs[i].Hdr.Control = &c[0]
				r.hdrs[i].Hdr.SetControllen(len(c))
				r.hdrs[i].Hdr.Flags = 0
			}
			if err := r.rc.Read(r.fn); err != nil {
				return 0, err
			}
			if r.rerr != nil {
				return 0, r.rerr
			}
			r.n, r.next, r.pos, r.seg = r.rn, 0, 0, -1
		}
		for k < len(bufs) && r.next < r.n {
			h := &r.hdrs[r.next]
			size := int(h.N)
			if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
				sizes[k] = 0
				k++
				r.advance()
				continue
			}
			if r.seg < 0 {
				cl := min(int(h.Hdr.Controllen), groCmsgSpace)
				r.seg = groSize(r.ctrl[r.next*groCmsgSpace : r.next*groCmsgSpace+cl])
				if r.seg > 0 && r.seg < size {
					r.coalesced.Add(1)
				}
			}
			src := r.scratch[r.next*groBufSize : r.next*groBufSize+size]
			k, r.pos = splitGRO(bufs, sizes, offset, k, src, r.seg, r.pos)
			if r.pos >= size {
				r.advance()
			}
		}
	}
	return k, nil
}

func (r *groReader) advance() {
	r.next++
	r.pos, r.seg = 0, -1
}
