package nic

// Crypto offload: the NIC side of the NDIS IPsecOV2 per-packet contract
// (and of Linux XFRM_DEV_OFFLOAD_CRYPTO), read top to bottom like
// datapath.go.
//
//	transmit (cryptoTxLoop): driver socket → handle lookup → ESP seal, AH seal (in place) [→ LSO] → wire
//	receive  (cryptoRxLoop): wire → SPI+destination lookup → AH open, ESP open (in place) → flags, status → driver socket
//
// The host stack built every header, the padding, the trailer and the
// sequence numbers; it does anti-replay and policy. The NIC only encrypts
// and authenticates, generates the IV, segments LSO packets, and on
// receive verifies and decrypts and says what it found. Every received
// packet is delivered, failures included. The crypto core (suite) and
// the bundle rules (ESP then AH outbound, AH then ESP inbound) are those
// of packet offload.

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/secnic/secnic/ah"
	"github.com/secnic/secnic/driver"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/tun"
)

// Offload modes of a NIC (Config.Offload).
const (
	// OffloadPacket: the host port is a TUN device and the NIC frames,
	// numbers and checks everything (the default).
	OffloadPacket = "packet"
	// OffloadCrypto: the host port is the driver socket (package driver)
	// and the NIC does the cryptography only.
	OffloadCrypto = "crypto"
)

// DriverPort is the host port of a crypto-offload NIC: a tun.Port that
// carries driver messages, and the status encoding the connected stack
// chose. *driver.Port implements it.
type DriverPort interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	MTU() int
	Name() string
	Close() error
	Encoding() driver.Encoding
}

// CryptoStats counts a crypto-offload NIC's per-packet outcomes.
type CryptoStats struct {
	// Transmit.
	TxProtected     uint64 `json:"tx_protected"`      // packets (segments) sealed and sent
	TxUnprotected   uint64 `json:"tx_unprotected"`    // handle 0: sent as they are
	TxLSO           uint64 `json:"tx_lso"`            // LSO packets segmented
	TxSegments      uint64 `json:"tx_segments"`       // segments made from them
	TxUnknownHandle uint64 `json:"tx_unknown_handle"` // handle not an outbound crypto-offload bundle: packet failed
	TxBadMessage    uint64 `json:"tx_bad_message"`    // not a valid transmit message, or offsets that do not fit the packet
	TxFailed        uint64 `json:"tx_failed"`         // refused by the SA (sequence number not above the last, expired, ...)
	TxTooBig        uint64 `json:"tx_too_big"`        // larger than the wire MTU (crypto offload never fragments)
	// Receive.
	RxDelivered   uint64 `json:"rx_delivered"`   // messages written to the stack
	RxCryptoDone  uint64 `json:"rx_crypto_done"` // of those, with CryptoDone
	RxFailed      uint64 `json:"rx_failed"`      // of those, with a status other than success
	RxDeleteReq   uint64 `json:"rx_delete_req"`  // of those, with SaDeleteReq
	RxUndelivered uint64 `json:"rx_undelivered"` // no stack connected, or the socket refused them
}

type cryptoCounters struct {
	txProtected, txUnprotected, txLSO, txSegments, txUnknownHandle, txBadMessage, txFailed, txTooBig atomic.Uint64
	_                                                                                                [64]byte
	rxDelivered, rxCryptoDone, rxFailed, rxDeleteReq, rxUndelivered                                  atomic.Uint64
}

// CryptoStats returns the crypto-offload counters (zero in packet mode).
func (n *NIC) CryptoStats() CryptoStats {
	if n.crypto == nil {
		return CryptoStats{}
	}
	c := &n.crypto.counters
	return CryptoStats{
		TxProtected: c.txProtected.Load(), TxUnprotected: c.txUnprotected.Load(), TxLSO: c.txLSO.Load(),
		TxSegments: c.txSegments.Load(), TxUnknownHandle: c.txUnknownHandle.Load(), TxBadMessage: c.txBadMessage.Load(),
		TxFailed: c.txFailed.Load(), TxTooBig: c.txTooBig.Load(),
		RxDelivered: c.rxDelivered.Load(), RxCryptoDone: c.rxCryptoDone.Load(), RxFailed: c.rxFailed.Load(),
		RxDeleteReq: c.rxDeleteReq.Load(), RxUndelivered: c.rxUndelivered.Load(),
	}
}

// cryptoState is a crypto-offload NIC's per-loop state.
type cryptoState struct {
	driver   DriverPort
	counters cryptoCounters
	tx       *cryptoTx
	rx       *cryptoRx
}

// cryptoReadOff is where a transmit message is read: its version-1
// header ends at packet.Headroom, where the packet starts.
const cryptoReadOff = packet.Headroom - driver.TransmitLen

type cryptoTx struct {
	bufs    []*packet.Buf
	raw     [][]byte
	sizes   []int
	out     []*packet.Buf
	outRaw  [][]byte
	segs    *spares // LSO segments
	wireOff int
	errLog  rateLog
}

type cryptoRx struct {
	in     *reader // the wire port, as the packet-offload receive loop reads it
	out    []*packet.Buf
	outRaw [][]byte
	errLog rateLog
}

func newCryptoState(n *NIC, d DriverPort) *cryptoState {
	batch := max(min(d.BatchSize(), driver.DefaultBatch), 1)
	t := &cryptoTx{wireOff: tun.MinOffset(n.wire)}
	t.bufs = make([]*packet.Buf, batch)
	t.raw = make([][]byte, batch)
	t.sizes = make([]int, batch)
	for i := range t.bufs {
		t.bufs[i] = packet.NewBuf(driver.MaxPacket + driver.MaxHeaderLen)
		// The message may fill the data area; the tailroom stays free
		// for the suites' slack.
		t.raw[i] = t.bufs[i].B[:packet.Headroom+driver.MaxPacket+driver.MaxHeaderLen-driver.TransmitLen]
	}
	nseg := fragNeed(packet.MaxPacket, 536) + batch
	t.segs = newSpares(nseg, n.wireMTU)
	t.out = make([]*packet.Buf, 0, batch+nseg)
	t.outRaw = make([][]byte, 0, batch+nseg)

	wb := max(n.wire.BatchSize(), 1)
	r := &cryptoRx{in: newReader(n, n.wire, n.wire.MTU, n.wireMTU)}
	r.out = make([]*packet.Buf, 0, wb)
	r.outRaw = make([][]byte, 0, wb)
	return &cryptoState{driver: d, tx: t, rx: r}
}

// ---------------------------------------------------------------------------
// Transmit: driver socket → wire.

func (n *NIC) cryptoTxLoop() error {
	cs := n.crypto
	t := cs.tx
	var fails int
	for {
		cnt, err := cs.driver.Read(t.raw, t.sizes, cryptoReadOff)
		if err != nil {
			if isClosed(err) {
				return nil
			}
			if fails++; fails > 100 {
				return err
			}
			t.errLog.log(n, "reading the driver socket", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		fails = 0
		snap := n.table.Snapshot()
		for i := range cnt {
			n.cryptoTransmit(t, snap, t.bufs[i], t.sizes[i])
		}
		if err := n.flushCryptoTX(t); err != nil {
			return nil
		}
	}
}

// cryptoTransmit handles one transmit message of size bytes read at
// cryptoReadOff into p.
func (n *NIC) cryptoTransmit(t *cryptoTx, snap *sadb.Snapshot, p *packet.Buf, size int) {
	c := &n.crypto.counters
	msg := p.B[cryptoReadOff : cryptoReadOff+size]
	h, pkt, err := driver.ParseTransmit(msg)
	if err != nil || len(pkt) == 0 {
		c.txBadMessage.Add(1)
		return
	}
	p.Off, p.Len = cryptoReadOff+len(h), len(pkt)
	if n.hostCap != nil {
		n.hostCap.add(p.Bytes())
	}
	info := h.Info()
	if info.OffloadHandle == 0 && info.TunnelHandle == 0 {
		// No IPsec offload for this packet (NDIS: OffloadHandle 0).
		if p.Len > n.wireMTU {
			c.txTooBig.Add(1)
			return
		}
		c.txUnprotected.Add(1)
		t.out = append(t.out, p)
		return
	}
	inner, outer, ok := n.txBundles(snap, info)
	if !ok {
		c.txUnknownHandle.Add(1)
		return
	}
	if info.MSS != 0 {
		n.cryptoLSO(t, p, info, outer, inner)
		return
	}
	if p.Len > n.wireMTU {
		c.txTooBig.Add(1)
		return
	}
	switch sealPacket(p, info, outer, inner) {
	case sealOK:
		c.txProtected.Add(1)
		t.out = append(t.out, p)
	case sealBadLayout:
		c.txBadMessage.Add(1)
	default:
		c.txFailed.Add(1)
	}
}

// txBundles resolves the handles of a transmit message: the transport (or
// only) bundle and, for transport over tunnel, the tunnel bundle, which is
// the outer one. Each must be an outbound crypto-offload bundle.
func (n *NIC) txBundles(snap *sadb.Snapshot, info driver.TxInfo) (inner, outer *sa.Bundle, ok bool) {
	get := func(h uint64) *sa.Bundle {
		b := snap.Bundle(sa.Handle(h))
		if b == nil || b.Dir != sa.Out || b.PacketOffload {
			return nil
		}
		return b
	}
	if info.TunnelHandle == 0 {
		b := get(info.OffloadHandle)
		return nil, b, b != nil
	}
	outer = get(info.TunnelHandle)
	if outer == nil || outer.Mode != sa.Tunnel {
		return nil, nil, false
	}
	if info.OffloadHandle != 0 {
		if inner = get(info.OffloadHandle); inner == nil || inner.Mode != sa.Transport {
			return nil, nil, false
		}
	}
	return inner, outer, true
}

type sealResult uint8

const (
	sealOK        sealResult = iota
	sealBadLayout            // the offsets or the headers do not fit the packet or the bundle
	sealRefused              // an SA refused (counted on it)
)

// sealPacket seals the packet in p in place: the transport part first
// (inner, of transport over tunnel), then the outer bundle, each ESP then
// AH. The outer bundle's headers are where the offsets say; the inner
// bundle's are found behind the inner IP header.
func sealPacket(p *packet.Buf, info driver.TxInfo, outer, inner *sa.Bundle) sealResult {
	pkt := p.B[p.Off : p.Off+p.Len]
	sp, err := packet.SplitIP(pkt)
	if err != nil || sp.Len != len(pkt) || sp.Fragment {
		return sealBadLayout
	}
	espOff, ahOff := int(info.EspHeaderOffset)*4, int(info.AhHeaderOffset)*4
	if (outer.ESP != nil) != (espOff != 0) || (outer.AH != nil) != (ahOff != 0) || espOff >= len(pkt) || ahOff >= len(pkt) {
		return sealBadLayout
	}
	if inner != nil {
		// The inner datagram follows the tunnel's ESP header and IV (or
		// its AH header, for an AH-only tunnel).
		var io int
		if outer.ESP != nil {
			io = espOff + esp.HeaderLen + outer.ESP.Suite.IVLen()
		} else {
			io = ahOff + ah.Len(outer.AH, packet.Version(pkt) == 6)
		}
		if io >= len(pkt) {
			return sealBadLayout
		}
		in := pkt[io:len(pkt):cap(pkt)]
		isp, err := packet.SplitIP(in)
		if err != nil || isp.Len > len(in) || isp.Fragment {
			return sealBadLayout
		}
		if r := sealBundle(p, in, inner, isp.Len, isp.HdrLen, isp.Proto); r != sealOK {
			return r
		}
	}
	off := ahOff
	if outer.AH == nil {
		off = espOff
	}
	return sealBundleAt(p, pkt, outer, len(pkt), espOff, ahOff, off)
}

// sealBundle seals a transport-mode bundle in the datagram d[:end] whose
// first header after the IP header is at hdr (protocol proto): AH there
// and ESP behind it, or ESP there.
func sealBundle(p *packet.Buf, d []byte, b *sa.Bundle, end, hdr int, proto uint8) sealResult {
	espOff, ahOff := 0, 0
	switch {
	case b.AH != nil:
		if proto != packet.ProtoAH || hdr+ah.HeaderLen > end {
			return sealBadLayout
		}
		ahOff = hdr
		if b.ESP != nil {
			espOff = hdr + (int(d[hdr+1])+2)*4
		}
	case proto == packet.ProtoESP:
		espOff = hdr
	default:
		return sealBadLayout
	}
	return sealBundleAt(p, d, b, end, espOff, ahOff, hdr)
}

// sealBundleAt seals bundle b in d[:end]: ESP at espOff to end, then AH at
// ahOff over the datagram.
func sealBundleAt(p *packet.Buf, d []byte, b *sa.Bundle, end, espOff, ahOff, _ int) sealResult {
	if b.ESP != nil {
		if espOff < 4 || espOff+esp.HeaderLen > end {
			return sealBadLayout
		}
		if esp.Seal(b.ESP, d, espOff, end, &p.CB) != sa.ReasonNone {
			return sealRefused
		}
	}
	if b.AH != nil {
		if ah.Seal(b.AH, d, ahOff, end, &p.CB) != sa.ReasonNone {
			return sealRefused
		}
	}
	return sealOK
}

// flushCryptoTX writes the output list to the wire and frees the segments.
func (n *NIC) flushCryptoTX(t *cryptoTx) error {
	defer t.segs.reset()
	if len(t.out) == 0 {
		return nil
	}
	var err error
	t.outRaw, err = n.sendWire(n.wire, t.out, t.outRaw, t.wireOff, &t.errLog)
	t.out = t.out[:0]
	return err
}

// ---------------------------------------------------------------------------
// Receive: wire → driver socket.

func (n *NIC) cryptoRxLoop() error {
	cs := n.crypto
	r := cs.rx
	for {
		pkts, err := r.in.next()
		if err != nil {
			if err == errStop {
				return nil
			}
			return err
		}
		snap := n.table.Snapshot()
		enc := cs.driver.Encoding()
		for _, p := range pkts {
			if p.Len == 0 {
				continue
			}
			if n.wireCap != nil {
				n.wireCap.add(p.Bytes())
			}
			info := n.cryptoReceive(snap, p)
			n.crypto.count(info)
			driver.Receive(p.B[p.Off-driver.ReceiveLen:p.Off]).Encode(enc, info)
			r.out = append(r.out, p)
		}
		if err := n.flushCryptoRX(r, enc); err != nil {
			return nil
		}
	}
}

func (cs *cryptoState) count(info driver.RxInfo) {
	c := &cs.counters
	if info.CryptoDone {
		c.rxCryptoDone.Add(1)
		if info.Status != driver.CryptoSuccess {
			c.rxFailed.Add(1)
		}
	}
	if info.SaDeleteReq {
		c.rxDeleteReq.Add(1)
	}
}

// cryptoReceive verifies and decrypts one packet from the wire in place
// and returns what to tell the stack. Packets that are not IPsec, are
// fragments, are malformed or match no SA are delivered unprocessed
// (CryptoDone clear).
func (n *NIC) cryptoReceive(snap *sadb.Snapshot, p *packet.Buf) driver.RxInfo {
	var info driver.RxInfo
	pkt := p.B[p.Off : p.Off+p.Len]
	loc, err := packet.Locate(pkt, n.encapPort)
	if err != nil || !loc.Kind.IsIPsec() || loc.Len > len(pkt) {
		return info
	}
	proto := sa.ESP
	if loc.IPsec == packet.ProtoAH {
		proto = sa.AH
	}
	s, b := snap.LookupIn(proto, loc.SPI, loc.Dst)
	if s == nil {
		other := sa.AH
		if proto == sa.AH {
			other = sa.ESP
		}
		if o, _ := snap.LookupIn(other, loc.SPI, loc.Dst); o != nil && !o.Retired() {
			// The SPI and destination are an SA's, of the other protocol.
			info.CryptoDone, info.Status = true, driver.CryptoInvalidProtocol
			info.SaDeleteReq = o.SoftExpired()
		}
		return info
	}
	if b.PacketOffload {
		return info
	}
	info.CryptoDone = true
	d := pkt[:loc.Len:cap(pkt)]
	innerOff, st := openBundle(p, d, b, &loc, &info)
	info.Status = st
	info.SaDeleteReq = softExpired(b)
	if st != driver.CryptoSuccess || b.Mode != sa.Tunnel || innerOff <= 0 {
		return info
	}
	// Transport over tunnel: the decrypted inner datagram may carry a
	// transport-mode SA of ours.
	in := d[innerOff:len(d):cap(d)]
	iloc, err := packet.Locate(in, n.encapPort)
	if err != nil || !iloc.Kind.IsIPsec() || iloc.Len > len(in) {
		return info
	}
	iproto := sa.ESP
	if iloc.IPsec == packet.ProtoAH {
		iproto = sa.AH
	}
	is, ib := snap.LookupIn(iproto, iloc.SPI, iloc.Dst)
	if is == nil || ib.PacketOffload || ib.Mode != sa.Transport {
		return info
	}
	var iinfo driver.RxInfo
	_, ist := openBundle(p, in[:iloc.Len:cap(in)], ib, &iloc, &iinfo)
	info.Status = ist
	info.NextCryptoDone = true
	info.SaDeleteReq = info.SaDeleteReq || softExpired(ib)
	return info
}

// openBundle verifies and decrypts bundle b in the datagram d (AH first,
// then ESP) with the headers in place. It returns the offset of the inner
// datagram of a tunnel bundle and the status; the header info of the
// bundle's ESP goes into info.
func openBundle(p *packet.Buf, d []byte, b *sa.Bundle, loc *packet.Loc, info *driver.RxInfo) (int, driver.Status) {
	tunnel := b.Mode == sa.Tunnel
	off := loc.Off
	if b.AH != nil {
		if loc.IPsec != packet.ProtoAH || loc.SPI != b.AH.SPI {
			return 0, driver.CryptoInvalidProtocol
		}
		switch ah.Open(b.AH, d, off, len(d), &p.CB) {
		case ah.OpenOK:
		case ah.OpenAuthFailed:
			if tunnel {
				return 0, driver.CryptoTunnelAHAuthFailed
			}
			return 0, driver.CryptoTransportAHAuthFailed
		case ah.OpenShort:
			return 0, driver.CryptoInvalidPacketSyntax
		default:
			return 0, driver.CryptoGenericError
		}
		next := d[off]
		off += (int(d[off+1]) + 2) * 4
		if b.ESP == nil {
			if tunnel && (next == packet.ProtoIPv4 || next == packet.ProtoIPv6) {
				return off, driver.CryptoSuccess
			}
			return 0, driver.CryptoSuccess
		}
		if next != packet.ProtoESP || off+esp.HeaderLen > len(d) || binary.BigEndian.Uint32(d[off:]) != b.ESP.SPI {
			return 0, driver.CryptoInvalidProtocol
		}
	} else if loc.IPsec != packet.ProtoESP {
		return 0, driver.CryptoInvalidProtocol
	}
	s := b.ESP
	if loc.UDP != (s.Encap != nil) && b.AH == nil {
		return 0, driver.CryptoGenericError
	}
	next, pad, r := esp.Open(s, d, off, len(d), &p.CB)
	switch r {
	case esp.OpenOK:
	case esp.OpenAuthFailed:
		if tunnel {
			return 0, driver.CryptoTunnelESPAuthFailed
		}
		return 0, driver.CryptoTransportESPAuthFailed
	case esp.OpenShort:
		return 0, driver.CryptoInvalidPacketSyntax
	default:
		return 0, driver.CryptoGenericError
	}
	info.NextHeader, info.PadLength, info.HeaderInfoSet = next, pad, true
	if tunnel && (next == packet.ProtoIPv4 || next == packet.ProtoIPv6) {
		return off + esp.HeaderLen + s.Suite.IVLen(), driver.CryptoSuccess
	}
	return 0, driver.CryptoSuccess
}

func softExpired(b *sa.Bundle) bool {
	return (b.ESP != nil && b.ESP.SoftExpired()) || (b.AH != nil && b.AH.SoftExpired())
}

// flushCryptoRX writes the batch to the stack. Without a stack the
// packets are counted as undelivered.
func (n *NIC) flushCryptoRX(r *cryptoRx, enc driver.Encoding) error {
	defer func() { r.out = r.out[:0] }()
	if len(r.out) == 0 {
		return nil
	}
	c := &n.crypto.counters
	if enc == 0 {
		c.rxUndelivered.Add(uint64(len(r.out)))
		return nil
	}
	r.outRaw = r.outRaw[:0]
	var bytes uint64
	for _, p := range r.out {
		if n.hostCap != nil {
			n.hostCap.add(p.Bytes())
		}
		r.outRaw = append(r.outRaw, p.B[p.Off-driver.ReceiveLen:p.Off+p.Len])
		bytes += uint64(p.Len)
	}
	w, err := n.crypto.driver.Write(r.outRaw, 0)
	if err != nil {
		if isClosed(err) {
			return err
		}
		if !errors.Is(err, driver.ErrNoClient) {
			r.errLog.log(n, "writing to the driver socket", err)
		}
		c.rxUndelivered.Add(uint64(len(r.out) - w))
	}
	c.rxDelivered.Add(uint64(w))
	n.rx.packets.Add(uint64(w))
	n.rx.bytes.Add(bytes)
	return nil
}
