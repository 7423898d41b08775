package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The link port's XDP program and the bpf(2) calls that load it, written
// out by hand (no compiler, no BPF library): a program of a few dozen
// instructions that sends ESP, AH and UDP-to-EncapPort frames addressed to
// the interface's MAC to the AF_XDP socket of their receive queue, and
// passes everything else to the kernel.

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code uint8
	regs uint8 // dst | src<<4
	off  int16
	imm  int32
}

// Instruction classes and operations (linux/bpf.h).
const (
	bpfLdxW     = 0x61
	bpfLdxH     = 0x69
	bpfLdxB     = 0x71
	bpfMovK     = 0xb7
	bpfMovX     = 0xbf
	bpfAddK     = 0x07
	bpfAddX     = 0x0f
	bpfAndK     = 0x57
	bpfLshK     = 0x67
	bpfJgtX     = 0x2d // 64-bit unsigned >
	bpfJeq32K   = 0x16
	bpfJne32K   = 0x56
	bpfJset32K  = 0x46
	bpfJa       = 0x05
	bpfCallOp   = 0x85
	bpfExit     = 0x95
	bpfLdImm64  = 0x18
	xdpPass     = 2
	redirectMap = 51 // BPF_FUNC_redirect_map
)

// xdpAsm assembles instructions with forward jumps to labels.
type xdpAsm struct {
	ins    []bpfInsn
	fix    map[int]string
	labels map[string]int
}

func (a *xdpAsm) emit(code uint8, dst, src uint8, off int16, imm int32) {
	a.ins = append(a.ins, bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm})
}

func (a *xdpAsm) jump(code uint8, dst, src uint8, imm int32, to string) {
	if a.fix == nil {
		a.fix = map[int]string{}
	}
	a.fix[len(a.ins)] = to
	a.emit(code, dst, src, 0, imm)
}

func (a *xdpAsm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *xdpAsm) assemble() ([]bpfInsn, error) {
	for at, name := range a.fix {
		t, ok := a.labels[name]
		if !ok || t <= at {
			return nil, fmt.Errorf("xdp: bad jump target %q", name)
		}
		a.ins[at].off = int16(t - at - 1)
	}
	return a.ins, nil
}

// le16 and le32 are what a BPF load (host order) reads from big-endian
// bytes b.
func le16(b []byte) int32 { return int32(binary.NativeEndian.Uint16(b)) }
func le32(b []byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

// xdpProgram builds the redirect program for an interface with MAC mac;
// mapFD is the XSKMAP indexed by receive queue.
func xdpProgram(mac net.HardwareAddr, encapPort uint16, mapFD int) ([]bpfInsn, error) {
	const (
		r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
		eth                                    = ethHdrLen
	)
	var be [2]byte
	binary.BigEndian.PutUint16(be[:], encapPort)
	port := le16(be[:])
	var a xdpAsm
	a.emit(bpfMovX, r6, r1, 0, 0)
	a.emit(bpfLdxW, r2, r6, 0, 0) // data
	a.emit(bpfLdxW, r3, r6, 4, 0) // data_end
	a.emit(bpfMovX, r4, r2, 0, 0)
	a.emit(bpfAddK, r4, 0, 0, eth+20)
	a.jump(bpfJgtX, r4, r3, 0, "pass")
	// Addressed to this interface (PACKET_HOST).
	a.emit(bpfLdxW, r5, r2, 0, 0)
	a.jump(bpfJne32K, r5, 0, le32(mac[0:4]), "pass")
	a.emit(bpfLdxH, r5, r2, 4, 0)
	a.jump(bpfJne32K, r5, 0, le16(mac[4:6]), "pass")
	a.emit(bpfLdxH, r5, r2, 12, 0)
	a.jump(bpfJeq32K, r5, 0, le16([]byte{0x08, 0x00}), "v4")
	a.jump(bpfJeq32K, r5, 0, le16([]byte{0x86, 0xdd}), "v6")
	a.jump(bpfJa, 0, 0, 0, "pass")

	// toSocketIfIPsec sends the frame to the socket when r7, the next
	// header, is ESP (50) or AH (51).
	toSocketIfIPsec := func() {
		a.jump(bpfJeq32K, r7, 0, 50, "redirect")
		a.jump(bpfJeq32K, r7, 0, 51, "redirect")
	}

	a.label("v4")
	a.emit(bpfLdxB, r7, r2, eth+9, 0)
	toSocketIfIPsec()
	if encapPort != 0 {
		a.jump(bpfJne32K, r7, 0, 17, "pass")
		a.emit(bpfLdxH, r8, r2, eth+6, 0)
		a.jump(bpfJset32K, r8, 0, le16([]byte{0x1f, 0xff}), "redirect") // not the first fragment
		a.emit(bpfLdxB, r5, r2, eth, 0)
		a.emit(bpfAndK, r5, 0, 0, 0x0f)
		a.emit(bpfLshK, r5, 0, 0, 2)
		a.emit(bpfMovX, r4, r2, 0, 0)
		a.emit(bpfAddX, r4, r5, 0, 0) // data + IHL
		a.emit(bpfMovX, r9, r4, 0, 0)
		a.emit(bpfAddK, r9, 0, 0, eth+8)
		a.jump(bpfJgtX, r9, r3, 0, "pass")
		a.emit(bpfLdxH, r8, r4, eth+2, 0)
		a.jump(bpfJeq32K, r8, 0, port, "redirect")
	}
	a.jump(bpfJa, 0, 0, 0, "pass")

	a.label("v6")
	a.emit(bpfMovX, r4, r2, 0, 0)
	a.emit(bpfAddK, r4, 0, 0, eth+40+8)
	a.jump(bpfJgtX, r4, r3, 0, "v6short")
	a.emit(bpfLdxB, r7, r2, eth+6, 0)
	toSocketIfIPsec()
	a.jump(bpfJeq32K, r7, 0, 44, "frag6")
	if encapPort != 0 {
		a.jump(bpfJne32K, r7, 0, 17, "pass")
		a.emit(bpfLdxH, r8, r2, eth+40+2, 0)
		a.jump(bpfJeq32K, r8, 0, port, "redirect")
	}
	a.jump(bpfJa, 0, 0, 0, "pass")
	a.label("frag6")
	a.emit(bpfLdxB, r7, r2, eth+40, 0)
	toSocketIfIPsec()
	if encapPort != 0 {
		a.jump(bpfJeq32K, r7, 0, 17, "redirect")
	}
	a.jump(bpfJa, 0, 0, 0, "pass")
	// IPv6 shorter than 48 bytes of header and payload: ESP or AH
	// directly after the fixed header still count.
	a.label("v6short")
	a.emit(bpfMovX, r4, r2, 0, 0)
	a.emit(bpfAddK, r4, 0, 0, eth+40)
	a.jump(bpfJgtX, r4, r3, 0, "pass")
	a.emit(bpfLdxB, r7, r2, eth+6, 0)
	toSocketIfIPsec()
	a.jump(bpfJa, 0, 0, 0, "pass")

	a.label("redirect")
	a.emit(bpfLdxW, r2, r6, 16, 0) // rx_queue_index
	a.emit(bpfLdImm64, r1, unix.BPF_PSEUDO_MAP_FD, 0, int32(mapFD))
	a.emit(0, 0, 0, 0, 0)
	a.emit(bpfMovK, r3, 0, 0, xdpPass) // no socket on that queue: pass
	a.emit(bpfCallOp, 0, 0, 0, redirectMap)
	a.emit(bpfExit, 0, 0, 0, 0)
	a.label("pass")
	a.emit(bpfMovK, r0, 0, 0, xdpPass)
	a.emit(bpfExit, 0, 0, 0, 0)
	return a.assemble()
}

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// newXSKMap creates an XSKMAP with n entries.
func newXSKMap(n int) (int, error) {
	attr := struct {
		typ, keySize, valueSize, maxEntries, flags uint32
	}{unix.BPF_MAP_TYPE_XSKMAP, 4, 4, uint32(n), 0}
	return bpfCall(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

func xskMapSet(mapFD int, key uint32, fd uint32) error {
	attr := struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{mapFD: uint32(mapFD), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&fd)))}
	_, err := bpfCall(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// loadXDP loads prog as an XDP program; the verifier's log is in the error.
func loadXDP(prog []bpfInsn) (int, error) {
	license := []byte("GPL\x00")
	log := make([]byte, 64<<10)
	attr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		logLevel, logSize uint32
		logBuf            uint64
		kernVersion       uint32
		progFlags         uint32
		name              [16]byte
		ifindex           uint32
		expectedAttach    uint32
	}{
		progType: unix.BPF_PROG_TYPE_XDP, insnCnt: uint32(len(prog)),
		insns: uint64(uintptr(unsafe.Pointer(&prog[0]))), license: uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1, logSize: uint32(len(log)), logBuf: uint64(uintptr(unsafe.Pointer(&log[0]))),
		expectedAttach: unix.BPF_XDP,
	}
	copy(attr.name[:], "secnic_link")
	fd, err := bpfCall(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		n := 0
		for n < len(log) && log[n] != 0 {
			n++
		}
		return -1, fmt.Errorf("load XDP program: %w: %s", err, log[:n])
	}
	return fd, nil
}

// attachXDP attaches prog to the interface through a BPF link, which the
// kernel detaches when the link's fd is closed (or the process dies):
// native (driver) mode first, then generic. It returns the link fd and
// whether the program runs natively.
func attachXDP(prog, ifindex int) (int, bool, error) {
	var last error
	for _, mode := range []uint32{unix.XDP_FLAGS_DRV_MODE, unix.XDP_FLAGS_SKB_MODE} {
		attr := struct {
			progFD, ifindex, attachType, flags uint32
		}{uint32(prog), uint32(ifindex), unix.BPF_XDP, mode}
		fd, err := bpfCall(unix.BPF_LINK_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		if err == nil {
			return fd, mode == unix.XDP_FLAGS_DRV_MODE, nil
		}
		last = err
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			break // another XDP program is attached: leave it alone
		}
	}
	return -1, false, fmt.Errorf("attach XDP program: %w", last)
}
