// Package pcaptool applies security associations to every packet of a
// capture file, offline: the engine behind `secnic pcap encap|decap`. It is
// for debugging a tunnel (decrypt what a peer sent, see exactly why a packet
// is refused) and for reproducing published test vectors byte for byte.
//
// SAs are read from a file in the same schema as the daemon's config file
// and the control API (sa.BundleSpec, sa.PolicySpec). Packets are read from
// pcap files with link type raw IP (101, and 228/229), Ethernet (1) or Linux
// cooked capture (113), and written as raw IP (101), which Wireshark reads.
package pcaptool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"sigs.k8s.io/yaml"

	"github.com/secnic/secnic/bundle"
	"github.com/secnic/secnic/capabilities"
	"github.com/secnic/secnic/esp"
	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// Op is what to do to the packets.
type Op int

// Operations.
const (
	Encap Op = iota + 1 // protect with outbound SAs
	Decap               // verify and decrypt with inbound SAs
)

func (o Op) String() string {
	if o == Encap {
		return "encap"
	}
	return "decap"
}

// Options control a run.
type Options struct {
	Op Op
	// Dir selects which bundles of the SA file are used: "out" bundles
	// protect and "in" bundles decapsulate. The default is out for encap
	// and in for decap; giving the other direction uses the bundles of that
	// direction turned around, so one file serves both ends of a tunnel.
	Dir string
	// FirstSeq, if non-zero, is the sequence number of the first packet:
	// each outbound SA sends it first (encap), and each inbound SA's
	// anti-replay window starts just below it (decap), which also tells the
	// receiver the high half of extended sequence numbers.
	FirstSeq uint64
	// IVs, if given, are the explicit IVs of the packets in order (encap,
	// single-SA ESP bundles only): for reproducing published vectors.
	IVs [][]byte
	// EncapPort is the UDP port of RFC 3948 encapsulation (decap); 0 means 4500.
	EncapPort uint16
	// KeepGoing makes Run succeed even if packets were dropped.
	KeepGoing bool
	// Log receives one result line per packet and the summary; nil discards.
	Log io.Writer
}

// Summary counts the outcome of a run.
type Summary struct {
	Packets int
	OK      int
	Dropped map[string]int
}

func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d packets: %d ok, %d dropped", s.Packets, s.OK, s.Packets-s.OK)
	keys := make([]string, 0, len(s.Dropped))
	for k := range s.Dropped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, ", %s=%d", k, s.Dropped[k])
	}
	return b.String()
}

// ErrDropped is returned (wrapped) when packets failed and KeepGoing is off.
var ErrDropped = errors.New("pcaptool: some packets were dropped")

// File is the SA file: a list of bundles, or bundles and policies.
type File struct {
	Bundles  []saspec.BundleSpec `json:"bundles"`
	Policies []saspec.PolicySpec `json:"policies,omitempty"`
}

// LoadFile reads an SA file in YAML or JSON: either a list of bundles or an
// object with "bundles" (alias "sas") and optional "policies".
func LoadFile(path string) (File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("pcaptool: reading SA file: %w", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return File{}, fmt.Errorf("pcaptool: %s is not YAML or JSON: %w", path, err)
	}
	var f File
	if t := strings.TrimSpace(string(js)); strings.HasPrefix(t, "[") {
		if err := yaml.Unmarshal(js, &f.Bundles); err != nil {
			return File{}, fmt.Errorf("pcaptool: %s: %w", path, err)
		}
	} else {
		var obj struct {
			File
			SAs []saspec.BundleSpec `json:"sas"`
		}
		if err := yaml.UnmarshalStrict(js, &obj); err != nil {
			return File{}, fmt.Errorf("pcaptool: %s: %w", path, err)
		}
		f = obj.File
		f.Bundles = append(f.Bundles, obj.SAs...)
	}
	if len(f.Bundles) == 0 {
		return File{}, fmt.Errorf("pcaptool: %s holds no SA bundles", path)
	}
	return f, nil
}

// Tool holds the SAs of one run.
type Tool struct {
	opts    Options
	table   *sadb.Table
	out     []*sa.Bundle // outbound bundles, in file order
	usePols bool
}

// New builds the SAs of f in an SA table whose capabilities are everything
// secnic implements, legacy algorithms included (the file's allow_legacy
// still decides per bundle).
func New(f File, opts Options) (*Tool, error) {
	if opts.Op != Encap && opts.Op != Decap {
		return nil, errors.New("pcaptool: operation must be encap or decap")
	}
	want := "out"
	if opts.Op == Decap {
		want = "in"
	}
	switch opts.Dir {
	case "", want:
		opts.Dir = want
	case "in", "out":
	default:
		return nil, fmt.Errorf("pcaptool: --dir must be in or out, not %q", opts.Dir)
	}
	if opts.EncapPort == 0 {
		opts.EncapPort = 4500
	}
	prof, err := capabilities.LookupProfile("full")
	if err != nil {
		return nil, err
	}
	hw := prof.Hardware
	hw.Limits.LegacyAlgorithms = true
	caps, err := capabilities.NewManager(hw, hw)
	if err != nil {
		return nil, fmt.Errorf("pcaptool: capabilities: %w", err)
	}
	table, err := sadb.NewTable(sadb.TableConfig{Caps: caps, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	t := &Tool{opts: opts, table: table}
	for i, spec := range f.Bundles {
		if spec.Dir != opts.Dir {
			continue
		}
		if opts.Dir != want {
			spec = spec.Clone()
			spec.Dir = want
		}
		h, err := table.Add(spec)
		if err != nil {
			table.Close()
			return nil, fmt.Errorf("pcaptool: bundle %d (%s): %w", i+1, spec.Name, err)
		}
		if want == "out" {
			t.out = append(t.out, table.Snapshot().Bundle(h))
		}
	}
	if table.Snapshot().Len() == 0 {
		table.Close()
		return nil, fmt.Errorf("pcaptool: the SA file has no %q bundles", opts.Dir)
	}
	for i, p := range f.Policies {
		if p.Dir != "out" || opts.Op != Encap {
			continue
		}
		if _, err := table.AddPolicy(p); err != nil {
			table.Close()
			return nil, fmt.Errorf("pcaptool: policy %d: %w", i+1, err)
		}
		t.usePols = true
	}
	if opts.FirstSeq != 0 {
		var err error
		table.Snapshot().EachBundle(func(b *sa.Bundle) bool {
			for _, s := range b.SAs() {
				if b.Dir == sa.Out {
					err = s.SetSeq(opts.FirstSeq - 1)
				} else {
					s.Replay.SetTop(opts.FirstSeq - 1)
				}
				if err != nil {
					return false
				}
			}
			return true
		})
		if err != nil {
			table.Close()
			return nil, fmt.Errorf("pcaptool: --seq: %w", err)
		}
	}
	return t, nil
}

// Close destroys the SAs (keys zeroed).
func (t *Tool) Close() { t.table.Close() }

// Result is the outcome for one packet.
type Result struct {
	N      int
	SPI    uint32
	Seq    uint64
	Reason string // "" when the packet passed
	Out    []byte // the processed datagram, valid until the next packet
}

// Process applies the SAs to one IP datagram (packet number n, from 1).
func (t *Tool) Process(n int, dgram []byte) Result {
	r := Result{N: n}
	p := packet.NewBuf(len(dgram) + 1024)
	if err := p.SetBytes(dgram); err != nil {
		r.Reason = "XfrmInBufferError"
		return r
	}
	var err error
	if t.opts.Op == Encap {
		err = t.encap(&r, n, p)
	} else {
		err = t.decap(&r, p)
	}
	if err != nil {
		r.Reason = reasonName(err)
		return r
	}
	r.Out = p.Bytes()
	return r
}

// explained is a drop reason with what it means for this packet.
type explained struct {
	r   sa.Reason
	why string
}

func (e explained) Error() string { return e.r.String() + " (" + e.why + ")" }

func reasonName(err error) string {
	var ex explained
	if errors.As(err, &ex) {
		return ex.Error()
	}
	var rs sa.Reason
	if errors.As(err, &rs) {
		return rs.String()
	}
	return err.Error()
}

// reasonError is nil for sa.ReasonNone and the reason otherwise.
func reasonError(r sa.Reason) error {
	if r == sa.ReasonNone {
		return nil
	}
	return r
}

func (t *Tool) encap(r *Result, n int, p *packet.Buf) error {
	chain, err := t.chainFor(p.Bytes())
	if err != nil {
		return err
	}
	first := chain[0]
	if s := first.SAs()[0]; s != nil {
		r.SPI, r.Seq = s.SPI, s.LastSeq()+1
	}
	if t.opts.IVs != nil {
		if n > len(t.opts.IVs) {
			return fmt.Errorf("no explicit IV given for packet %d", n)
		}
		if len(chain) != 1 || first.AH != nil || first.ESP == nil {
			return errors.New("explicit IVs work with single-SA ESP bundles only")
		}
		return reasonError(esp.EncapWithIV(first.ESP, p, t.opts.IVs[n-1]))
	}
	return reasonError(bundle.ApplyChainOut(chain, p))
}

// chainFor picks the outbound bundles for a datagram: the policies of the
// file if it has any, else the only outbound bundle, else the bundle whose
// transport-mode endpoints are the datagram's addresses.
func (t *Tool) chainFor(d []byte) ([]*sa.Bundle, error) {
	if t.usePols {
		f, ok := sa.FlowOf(d)
		if !ok {
			return nil, sa.OutError
		}
		res := t.table.Snapshot().MatchOut(f)
		if res == nil || res.Action != saspec.Protect || len(res.Bundles) == 0 {
			return nil, fmt.Errorf("no protect policy matches %v -> %v", f.Src, f.Dst)
		}
		return res.Bundles, nil
	}
	if len(t.out) == 1 {
		return t.out[:1], nil
	}
	f, ok := sa.FlowOf(d)
	if !ok {
		return nil, sa.OutError
	}
	for _, b := range t.out {
		s := b.SAs()[0]
		if (!s.Src.IsValid() || s.Src == f.Src) && (!s.Dst.IsValid() || s.Dst == f.Dst) {
			return []*sa.Bundle{b}, nil
		}
	}
	return nil, fmt.Errorf("no outbound bundle for %v -> %v; add policies to the SA file", f.Src, f.Dst)
}

// decap removes the IPsec layers of the file's SAs with the receive path's
// engine (bundle.Decap), for as long as the datagram carries ESP or AH with
// an SPI of the file (transport over tunnel has two). There is no
// selector check: the file's inbound policies are not loaded.
func (t *Tool) decap(r *Result, p *packet.Buf) error {
	loc, err := packet.Locate(p.Bytes(), t.opts.EncapPort)
	switch {
	case errors.Is(err, packet.ErrFragment):
		return sa.InFragment
	case errors.Is(err, packet.ErrUDPLength):
		return explained{sa.InHdrError, "the UDP length field disagrees with the datagram"}
	case err != nil:
		return sa.InHdrError
	case loc.Kind == packet.NotIPsec:
		return errors.New("not an ESP or AH packet")
	case !loc.Kind.IsIPsec(): // a NAT-keepalive or IKE
		return sa.InHdrError
	}
	snap := t.table.Snapshot()
	r.SPI = loc.SPI
	s, _ := snap.LookupIn(sa.Protocol(loc.IPsec), loc.SPI, loc.Dst)
	if s == nil {
		return sa.InNoStates
	}
	if loc.UDP && s.Encap == nil {
		return explained{sa.InStateMismatch, "this packet is UDP-encapsulated; the SA has no udp_encap"}
	}
	if !loc.UDP && s.Encap != nil && loc.IPsec == packet.ProtoESP {
		return explained{sa.InStateMismatch, "this packet is not UDP-encapsulated; the SA has udp_encap"}
	}
	off := loc.Off + 4
	if loc.IPsec == packet.ProtoAH {
		off = loc.Off + 8
	}
	r.Seq = s.Replay.Infer(binary.BigEndian.Uint32(p.Bytes()[off:]), s.ESN)
	_, reason := bundle.Decap(snap, p, &loc, t.opts.EncapPort)
	return reasonError(reason)
}

// Run processes the capture inPath into outPath.
func Run(f File, inPath, outPath string, opts Options) (Summary, error) {
	t, err := New(f, opts)
	if err != nil {
		return Summary{}, err
	}
	defer t.Close()
	in, err := os.Open(inPath)
	if err != nil {
		return Summary{}, fmt.Errorf("pcaptool: %w", err)
	}
	defer in.Close()
	rd, err := pcapgo.NewReader(in)
	if err != nil {
		return Summary{}, fmt.Errorf("pcaptool: %s is not a pcap file (pcapng is not supported; convert it with editcap -F pcap): %w", inPath, err)
	}
	lt := rd.LinkType()
	if _, err := linkPayload(lt, nil); errors.Is(err, errLinkType) {
		return Summary{}, fmt.Errorf("pcaptool: %s has link type %d (%v); supported: raw IP (101), Ethernet (1), Linux cooked (113)", inPath, lt, lt)
	}
	of, err := os.Create(outPath)
	if err != nil {
		return Summary{}, fmt.Errorf("pcaptool: %w", err)
	}
	defer of.Close()
	w := pcapgo.NewWriter(of)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return Summary{}, fmt.Errorf("pcaptool: writing %s: %w", outPath, err)
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	sum := Summary{Dropped: map[string]int{}}
	for n := 1; ; n++ {
		data, ci, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("pcaptool: reading packet %d of %s: %w", n, inPath, err)
		}
		sum.Packets++
		var res Result
		dg, lerr := linkPayload(lt, data)
		if lerr != nil {
			res = Result{N: n, Reason: lerr.Error()}
		} else {
			res = t.Process(n, dg)
		}
		verdict := "ok"
		if res.Reason != "" {
			verdict = "drop"
			sum.Dropped[res.Reason]++
		} else {
			sum.OK++
			ci.CaptureLength, ci.Length = len(res.Out), len(res.Out)
			if err := w.WritePacket(ci, res.Out); err != nil {
				return sum, fmt.Errorf("pcaptool: writing %s: %w", outPath, err)
			}
		}
		fmt.Fprintf(log, "#%d spi=0x%08x seq=%d %s %s\n", n, res.SPI, res.Seq, verdict, res.Reason)
	}
	fmt.Fprintf(log, "%s: %s\n", opts.Op, sum)
	if sum.OK != sum.Packets && !opts.KeepGoing {
		return sum, fmt.Errorf("%w: %s (use --keep-going to accept)", ErrDropped, sum)
	}
	return sum, nil
}

var errLinkType = errors.New("unsupported link type")

// linkPayload returns the IP datagram inside a frame of link type lt.
func linkPayload(lt layers.LinkType, b []byte) ([]byte, error) {
	switch lt {
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12: // 12: raw IP on OpenBSD-derived writers
		return b, nil
	case layers.LinkTypeEthernet:
		if b == nil {
			return nil, nil
		}
		off := 12
		for {
			if len(b) < off+2 {
				return nil, errors.New("truncated Ethernet frame")
			}
			et := binary.BigEndian.Uint16(b[off:])
			switch et {
			case 0x8100, 0x88a8: // VLAN tags
				off += 4
				continue
			case 0x0800, 0x86dd:
				return b[off+2:], nil
			}
			return nil, fmt.Errorf("not an IP frame (ethertype 0x%04x)", et)
		}
	case layers.LinkTypeLinuxSLL:
		if b == nil {
			return nil, nil
		}
		if len(b) < 16 {
			return nil, errors.New("truncated Linux cooked header")
		}
		if et := binary.BigEndian.Uint16(b[14:]); et != 0x0800 && et != 0x86dd {
			return nil, fmt.Errorf("not an IP frame (protocol 0x%04x)", et)
		}
		return b[16:], nil
	}
	return nil, errLinkType
}
