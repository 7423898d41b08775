package driver

import (
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsg does batched recvmmsg/sendmmsg on one SOCK_SEQPACKET socket through
// the Go netpoller without allocating: the headers and iovecs are
// allocated once and the functions handed to RawConn are method values
// bound once. One goroutine at a time per direction.
type mmsg struct {
	rc syscall.RawConn

	rhdrs []mmsghdr
	riov  []unix.Iovec
	rn    int
	rcnt  int
	rerr  error
	rfn   func(fd uintptr) bool

	whdrs []mmsghdr
	wiov  []unix.Iovec
	wn    int
	wcnt  int
	wfrom int
	werr  error
	wfn   func(fd uintptr) bool
}

func newMmsg(rc syscall.RawConn, batch int) *mmsg {
	m := &mmsg{
		rc:    rc,
		rhdrs: make([]mmsghdr, batch),
		riov:  make([]unix.Iovec, batch),
		whdrs: make([]mmsghdr, batch),
		wiov:  make([]unix.Iovec, batch),
	}
	for i := range m.rhdrs {
		m.rhdrs[i].hdr.Iov = &m.riov[i]
		m.rhdrs[i].hdr.SetIovlen(1)
		m.whdrs[i].hdr.Iov = &m.wiov[i]
		m.whdrs[i].hdr.SetIovlen(1)
	}
	m.rfn, m.wfn = m.doRecv, m.doSend
	return m
}

func (m *mmsg) doRecv(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.rhdrs[0])), uintptr(m.rcnt), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.rn, m.rerr = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		m.rn, m.rerr = 0, e
		return true
	}
}

// errEOF is the peer's orderly shutdown (a zero-length message: every
// message of the format is at least PrefixLen bytes).
var errEOF = errors.New("driver: peer closed the connection")

// recv reads up to len(bufs) messages into bufs[i][offset:]. A message
// that did not fit is reported with size 0.
func (m *mmsg) recv(bufs [][]byte, sizes []int, offset int) (int, error) {
	cnt := min(len(bufs), len(m.rhdrs))
	for i := range cnt {
		b := bufs[i][offset:]
		m.riov[i].Base = &b[0]
		m.riov[i].SetLen(len(b))
		m.rhdrs[i].hdr.Flags = 0
	}
	m.rcnt = cnt
	if err := m.rc.Read(m.rfn); err != nil {
		return 0, err
	}
	if m.rerr != nil {
		return 0, m.rerr
	}
	for i := range m.rn {
		sizes[i] = int(m.rhdrs[i].n)
		if sizes[i] == 0 {
			return i, errEOF
		}
		if m.rhdrs[i].hdr.Flags&unix.MSG_TRUNC != 0 {
			sizes[i] = 0
		}
	}
	return m.rn, nil
}

func (m *mmsg) doSend(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.whdrs[m.wfrom])), uintptr(m.wcnt-m.wfrom), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			m.wn, m.werr = int(r), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		m.wn, m.werr = 0, e
		return true
	}
}

// send sends bufs[i][offset:] in batches of the mmsg's size. A message
// the kernel refuses is skipped; the rest still go. It returns the number
// sent and the last error.
func (m *mmsg) send(bufs [][]byte, offset int) (int, error) {
	sent := 0
	var last error
	for len(bufs) > 0 {
		cnt := min(len(bufs), len(m.whdrs))
		for i := range cnt {
			b := bufs[i][offset:]
			m.wiov[i].Base = &b[0]
			m.wiov[i].SetLen(len(b))
		}
		m.wcnt, m.wfrom = cnt, 0
		for m.wfrom < cnt {
			if err := m.rc.Write(m.wfn); err != nil {
				return sent, err
			}
			if m.werr != nil {
				if errors.Is(m.werr, unix.EBADF) || errors.Is(m.werr, unix.EPIPE) || errors.Is(m.werr, unix.ECONNRESET) {
					return sent, m.werr
				}
				last = m.werr
				m.wfrom++
				continue
			}
			sent += m.wn
			m.wfrom += m.wn
		}
		bufs = bufs[cnt:]
	}
	return sent, last
}

var (
	syscallEPIPE      error = unix.EPIPE
	syscallECONNRESET error = unix.ECONNRESET
	syscallEBADF      error = unix.EBADF
)
