package nic

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/secnic/secnic/sa"
)

type uint64Counter = atomic.Uint64

// dropReason numbers every reason the NIC drops a packet for: the SA-level
// reasons of package sa first (same values), then the NIC's own.
type dropReason int

const (
	// NIC-level reasons, after sa's.
	dropReasmTimeout dropReason = iota + dropReason(sa.NumReasons)
	dropReasmOverlap
	dropReasmDuplicate
	dropReasmOverflow
	dropReasmInvalid
	dropFragNeeded
	dropFragFailed
	dropTooBig
	dropICMPRateLimited
	dropWireWrite
	dropHostWrite
	dropUDPLength
	numDrops
)

var nicDropNames = [...]string{
	dropReasmTimeout:    "SecnicReasmTimeout",
	dropReasmOverlap:    "SecnicReasmOverlap",
	dropReasmDuplicate:  "SecnicReasmDuplicate",
	dropReasmOverflow:   "SecnicReasmOverflow",
	dropReasmInvalid:    "SecnicReasmInvalid",
	dropFragNeeded:      "SecnicFragNeeded",
	dropFragFailed:      "SecnicFragFailed",
	dropTooBig:          "SecnicTooBig",
	dropICMPRateLimited: "SecnicICMPRateLimited",
	dropWireWrite:       "SecnicWireWriteError",
	dropHostWrite:       "SecnicHostWriteError",
	dropUDPLength:       "SecnicUDPLengthError",
}

var nicDropHelp = [...]string{
	dropReasmTimeout:    "incomplete fragmented datagram timed out",
	dropReasmOverlap:    "overlapping fragments: the whole datagram was dropped",
	dropReasmDuplicate:  "duplicate fragment",
	dropReasmOverflow:   "reassembly table full: the oldest incomplete datagram was evicted",
	dropReasmInvalid:    "malformed fragment or reassembled datagram too large",
	dropFragNeeded:      "too big for the wire with DF set (or IPv6): ICMP fragmentation needed / packet too big sent to the host",
	dropFragFailed:      "could not be fragmented",
	dropTooBig:          "too big for the wire and cannot be fragmented",
	dropICMPRateLimited: "too big; the ICMP answer was rate-limited",
	dropWireWrite:       "the wire port refused the packet",
	dropHostWrite:       "the host port refused the packet",
	dropUDPLength:       "UDP-encapsulated ESP whose UDP length field disagrees with the datagram",
}

func (d dropReason) String() string {
	if d < dropReason(sa.NumReasons) {
		return sa.Reason(d).String()
	}
	if d < numDrops {
		return nicDropNames[d]
	}
	return "Unknown"
}

// DropReasons returns the name and meaning of every drop counter of a NIC
// (the sa.Reason names followed by the NIC's own), in a fixed order.
func DropReasons() [][2]string {
	var out [][2]string
	for d := dropReason(1); d < numDrops; d++ {
		help := ""
		if d < dropReason(sa.NumReasons) {
			help = sa.Reason(d).Error()
		} else {
			help = d.String() + ": " + nicDropHelp[d]
		}
		out = append(out, [2]string{d.String(), help})
	}
	return out
}

// loopCounters are the counters of one datapath loop. Only that loop's
// goroutine writes them (atomically, so Stats can read them at any time
// without a lock), and each loop has its own, so the two directions never
// share a cache line.
type loopCounters struct {
	packets   uint64Counter // packets leaving the NIC in this direction
	bytes     uint64Counter
	protected uint64Counter // tx: protected; rx: decapsulated
	bypassed  uint64Counter // sent or delivered without IPsec
	drops     [numDrops]uint64Counter

	keepalives  uint64Counter // rx: NAT-keepalives absorbed
	ike         uint64Counter // rx: non-ESP-marker packets passed to the host
	fragsOut    uint64Counter // tx: fragments created
	fragsIn     uint64Counter // rx: fragments received
	reassembled uint64Counter // rx: datagrams reassembled
	icmp        uint64Counter // tx: ICMP too-big messages sent to the host
	_           [64]byte
}

func (c *loopCounters) drop(d dropReason) { c.drops[d].Add(1) }

// DirStats counts one direction of the NIC.
type DirStats struct {
	// Packets and Bytes count what left the NIC in this direction: tx to
	// the wire (fragments each count), rx to the host.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	// Protected counts packets protected (tx) or decapsulated (rx).
	Protected uint64 `json:"protected"`
	// Bypassed counts packets passed without IPsec by policy.
	Bypassed uint64 `json:"bypassed"`
	// Dropped is the sum of the drops of this direction.
	Dropped uint64 `json:"dropped"`
	// Drops are the non-zero drop counters of this direction by name.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// SAStats are the counters of one SA.
type SAStats struct {
	SPI    string `json:"spi"` // 0x%08x
	Proto  string `json:"proto"`
	Dir    string `json:"dir"`
	Mode   string `json:"mode"`
	Src    string `json:"src,omitempty"`
	Dst    string `json:"dst,omitempty"`
	Bundle uint64 `json:"bundle"`
	// Seq is the last sequence number sent (outbound) or the top of the
	// replay window (inbound).
	Seq     uint64 `json:"seq"`
	Expired bool   `json:"expired,omitempty"`
	sa.CounterSnapshot
}

// CaptureStats describes a packet capture.
type CaptureStats struct {
	Side    string `json:"side"`
	Path    string `json:"path"`
	Packets uint64 `json:"packets"`
	Dropped uint64 `json:"dropped"`
}

// Stats is a point-in-time copy of a NIC's counters, ready for JSON.
type Stats struct {
	Name     string `json:"name"`
	HostPort string `json:"host_port"`
	WirePort string `json:"wire_port"`
	// WireMethod is how the wire port moves packets, for ports that say
	// (the link port: ring or mmsg).
	WireMethod string `json:"wire_method,omitempty"`
	// WireMTU is the MTU the NIC protects for; HostMTU the largest inner
	// packet that always fits after protection (see Config.HostMTU).
	WireMTU int `json:"wire_mtu"`
	HostMTU int `json:"host_mtu"`
	// TX is host to wire, RX wire to host.
	TX DirStats `json:"tx"`
	RX DirStats `json:"rx"`
	// Crypto counts the per-packet outcomes of a crypto-offload NIC (nil
	// in packet mode).
	Crypto *CryptoStats `json:"crypto,omitempty"`
	// Keepalives counts RFC 3948 NAT-keepalives absorbed.
	Keepalives uint64 `json:"keepalives"`
	// IKEPassthrough counts non-ESP-marker (IKE) packets on the encapsulation
	// port passed to the host untouched.
	IKEPassthrough uint64 `json:"ike_passthrough"`
	// FragmentsOut counts fragments sent to the wire; FragmentsIn fragments
	// received; Reassembled datagrams rebuilt from them.
	FragmentsOut uint64 `json:"fragments_out"`
	FragmentsIn  uint64 `json:"fragments_in"`
	Reassembled  uint64 `json:"reassembled"`
	// ICMPTooBig counts ICMP fragmentation-needed / packet-too-big messages
	// sent to the host.
	ICMPTooBig uint64         `json:"icmp_too_big"`
	Captures   []CaptureStats `json:"captures,omitempty"`
	SAs        []SAStats      `json:"sas"`
}

func (c *loopCounters) dir() DirStats {
	d := DirStats{
		Packets:   c.packets.Load(),
		Bytes:     c.bytes.Load(),
		Protected: c.protected.Load(),
		Bypassed:  c.bypassed.Load(),
	}
	for r := dropReason(1); r < numDrops; r++ {
		if v := c.drops[r].Load(); v != 0 {
			if d.Drops == nil {
				d.Drops = map[string]uint64{}
			}
			d.Drops[r.String()] = v
			d.Dropped += v
		}
	}
	return d
}

// Stats returns the NIC's counters and those of every SA in the table.
func (n *NIC) Stats() Stats {
	s := Stats{
		Name:           n.cfg.Name,
		HostPort:       n.host.Name(),
		WirePort:       n.wire.Name(),
		WireMTU:        n.wireMTU,
		HostMTU:        n.HostMTU(),
		TX:             n.tx.dir(),
		RX:             n.rx.dir(),
		Keepalives:     n.rx.keepalives.Load(),
		IKEPassthrough: n.rx.ike.Load(),
		FragmentsOut:   n.tx.fragsOut.Load(),
		FragmentsIn:    n.rx.fragsIn.Load(),
		Reassembled:    n.rx.reassembled.Load(),
		ICMPTooBig:     n.tx.icmp.Load(),
		SAs:            []SAStats{},
	}
	if n.crypto != nil {
		cs := n.CryptoStats()
		s.Crypto = &cs
	}
	if m, ok := n.wire.(interface{ Method() string }); ok {
		s.WireMethod = m.Method()
	}
	for _, c := range []*capture{n.hostCap, n.wireCap} {
		if c != nil {
			s.Captures = append(s.Captures, c.stats())
		}
	}
	var bundles []*sa.Bundle
	n.table.Snapshot().EachBundle(func(b *sa.Bundle) bool {
		bundles = append(bundles, b)
		return true
	})
	slices.SortFunc(bundles, func(a, b *sa.Bundle) int { return cmp.Compare(a.Handle, b.Handle) })
	for _, b := range bundles {
		for _, x := range b.SAs() {
			st := SAStats{
				SPI:             fmt.Sprintf("0x%08x", x.SPI),
				Proto:           x.Proto.String(),
				Dir:             x.Dir.String(),
				Mode:            x.Mode.String(),
				Bundle:          uint64(b.Handle),
				Expired:         x.Expired(),
				CounterSnapshot: x.Stats.Snapshot(),
			}
			if x.Src.IsValid() && !x.Src.IsUnspecified() {
				st.Src = x.Src.String()
			}
			if x.Dst.IsValid() && !x.Dst.IsUnspecified() {
				st.Dst = x.Dst.String()
			}
			if x.Dir == sa.Out {
				st.Seq = x.LastSeq()
			} else {
				st.Seq = x.Replay.Top()
			}
			s.SAs = append(s.SAs, st)
		}
	}
	return s
}

// collector exports a NIC's counters to Prometheus at scrape time; the
// datapath never touches Prometheus.
type collector struct {
	n                                        *NIC
	packets, bytes, protected, bypassed      *prometheus.Desc
	drops                                    *prometheus.Desc
	keepalives, ike, frags, reasm, icmp, mtu *prometheus.Desc
	capPackets, capDrops                     *prometheus.Desc
	saPackets, saBytes, saDrops, saSeq       *prometheus.Desc
}

func newCollector(n *NIC) *collector {
	nic := prometheus.Labels{"nic": n.cfg.Name}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("secnic_"+name, help, labels, nic)
	}
	saLabels := []string{"spi", "proto", "dir"}
	return &collector{
		n:          n,
		packets:    d("packets_total", "Packets that left the NIC: direction tx is host to wire, rx is wire to host.", "direction"),
		bytes:      d("bytes_total", "Bytes that left the NIC, by direction.", "direction"),
		protected:  d("protected_packets_total", "Packets protected (tx) or decapsulated (rx).", "direction"),
		bypassed:   d("bypassed_packets_total", "Packets passed without IPsec by policy.", "direction"),
		drops:      d("drops_total", "Packets dropped, by direction and reason (Linux /proc/net/xfrm_stat names where one fits).", "direction", "reason"),
		keepalives: d("nat_keepalives_total", "RFC 3948 NAT-keepalives received and absorbed."),
		ike:        d("ike_passthrough_total", "Non-ESP-marker (IKE) packets on the UDP encapsulation port passed to the host."),
		frags:      d("fragments_total", "IP fragments sent (tx) or received (rx) on the wire.", "direction"),
		reasm:      d("reassembled_total", "Datagrams reassembled from wire fragments."),
		icmp:       d("icmp_too_big_total", "ICMP fragmentation-needed / packet-too-big messages sent to the host."),
		mtu:        d("mtu_bytes", "MTU of each side: wire is the port's, host the largest inner packet that fits after protection.", "side"),
		capPackets: d("capture_packets_total", "Packets written to a pcap capture.", "side"),
		capDrops:   d("capture_dropped_total", "Packets not captured because the capture queue was full.", "side"),
		saPackets:  d("sa_packets_total", "Packets processed by an SA.", saLabels...),
		saBytes:    d("sa_bytes_total", "Bytes processed by an SA.", saLabels...),
		saDrops:    d("sa_drops_total", "Packets an SA dropped, by reason.", append(saLabels, "reason")...),
		saSeq:      d("sa_sequence_number", "Last sequence number sent (out) or top of the replay window (in).", saLabels...),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.protected, c.bypassed, c.drops, c.keepalives, c.ike, c.frags, c.reasm, c.icmp, c.mtu, c.capPackets, c.capDrops, c.saPackets, c.saBytes, c.saDrops, c.saSeq} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, dir := range []struct {
		name string
		d    DirStats
	}{{"tx", s.TX}, {"rx", s.RX}} {
		counter(c.packets, dir.d.Packets, dir.name)
		counter(c.bytes, dir.d.Bytes, dir.name)
		counter(c.protected, dir.d.Protected, dir.name)
		counter(c.bypassed, dir.d.Bypassed, dir.name)
		for r, v := range dir.d.Drops {
			counter(c.drops, v, dir.name, r)
		}
	}
	counter(c.keepalives, s.Keepalives)
	counter(c.ike, s.IKEPassthrough)
	counter(c.frags, s.FragmentsOut, "tx")
	counter(c.frags, s.FragmentsIn, "rx")
	counter(c.reasm, s.Reassembled)
	counter(c.icmp, s.ICMPTooBig)
	ch <- prometheus.MustNewConstMetric(c.mtu, prometheus.GaugeValue, float64(s.WireMTU), "wire")
	ch <- prometheus.MustNewConstMetric(c.mtu, prometheus.GaugeValue, float64(s.HostMTU), "host")
	for _, cs := range s.Captures {
		counter(c.capPackets, cs.Packets, cs.Side)
		counter(c.capDrops, cs.Dropped, cs.Side)
	}
	for _, x := range s.SAs {
		counter(c.saPackets, x.Packets, x.SPI, x.Proto, x.Dir)
		counter(c.saBytes, x.Bytes, x.SPI, x.Proto, x.Dir)
		for r, v := range x.Drops {
			counter(c.saDrops, v, x.SPI, x.Proto, x.Dir, r)
		}
		ch <- prometheus.MustNewConstMetric(c.saSeq, prometheus.GaugeValue, float64(x.Seq), x.SPI, x.Proto, x.Dir)
	}
}

// Collector returns a Prometheus collector of the NIC's and its SAs'
// counters, for a daemon that keeps its own registry.
func (n *NIC) Collector() prometheus.Collector { return n.collector }

// Registry returns the NIC's Prometheus registry: the NIC's collector plus
// the Go runtime and process collectors.
func (n *NIC) Registry() *prometheus.Registry { return n.registry }

// MetricsHandler returns an http.Handler serving the NIC's registry in the
// Prometheus exposition format; the daemon mounts it at /metrics on the
// configured address.
func (n *NIC) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{ErrorLog: slogErrorLog{n.log}})
}

func newRegistry(c prometheus.Collector) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}
