package wire

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

// mmsg does batched recvmmsg/sendmmsg on one socket through the Go
// netpoller without allocating: the message headers, iovecs and address
// slots are allocated once, and the functions handed to RawConn are method
// values bound once. x/net's ipv4.PacketConn.ReadBatch does the same system
// call but allocates a net.Addr for every datagram received.
//
// An mmsg is used by one goroutine at a time per direction (the NIC has one
// reader and one writer per port); recv and send have separate state.
type mmsg struct {
	rc syscall.RawConn

	rhdrs []mmsghdr
	riov  []unix.Iovec
	rn    int
	rerr  error
	rcnt  int
	rfn   func(fd uintptr) bool

	whdrs []mmsghdr
	wiov  []unix.Iovec
	wn    int
	wcnt  int
	wfrom int
	werr  error
	wfn   func(fd uintptr) bool
	// names, if set, holds one destination address per message (unconnected
	// raw sockets); namelen is the length used.
	names   []unix.RawSockaddrInet6
	namelen uint32
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
	m.rfn = m.doRecv
	m.wfn = m.doSend
	return m
}

// withNames gives every outgoing message an address slot of namelen bytes,
// filled by the caller through name(i) before send.
func (m *mmsg) withNames(namelen uint32) {
	m.names = make([]unix.RawSockaddrInet6, len(m.whdrs))
	m.namelen = namelen
	for i := range m.whdrs {
		m.whdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.whdrs[i].hdr.Namelen = namelen
	}
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
		case unix.ECONNREFUSED:
			// A connected UDP socket reports an earlier ICMP port
			// unreachable here (the peer was not up yet); nothing was read.
			continue
		}
		m.rn, m.rerr = 0, e
		return true
	}
}

// recv reads up to len(bufs) datagrams into bufs[i][offset:]. A datagram
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

// prepSend points message i at b.
func (m *mmsg) prepSend(i int, b []byte) {
	m.wiov[i].Base = &b[0]
	m.wiov[i].SetLen(len(b))
}

// send sends messages [0, cnt) prepared with prepSend. A message the
// kernel refuses is skipped and counted; the rest are still sent. It
// returns the number sent and the last per-message error.
func (m *mmsg) send(cnt int) (int, error) {
	sent := 0
	var last error
	m.wcnt, m.wfrom = cnt, 0
	for m.wfrom < cnt {
		if err := m.rc.Write(m.wfn); err != nil {
			return sent, err
		}
		if m.werr != nil {
			if errors.Is(m.werr, unix.EBADF) {
				return sent, m.werr
			}
			// The first remaining message failed: skip it.
			last = m.werr
			m.wfrom++
			continue
		}
		sent += m.wn
		m.wfrom += m.wn
	}
	return sent, last
}
