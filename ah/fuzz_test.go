package ah

import (
	"bytes"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// fuzzSAs are inbound SAs with fixed keys and anti-replay disabled, so that
// any packet built by the seed corpus verifies however often it is replayed.
type fuzzSA struct {
	auth suite.Auth
	mode sa.Mode
	v6   bool
	esn  bool
}

var fuzzConfigs = []fuzzSA{
	{suite.AuthSHA256, sa.Transport, false, false},
	{suite.AuthSHA1, sa.Transport, true, true},
	{suite.AuthGMAC128, sa.Tunnel, false, true},
	{suite.AuthGMAC256, sa.Transport, true, false},
	{suite.AuthSHA512, sa.Tunnel, true, false},
}

func fuzzKey(a suite.Auth) []byte {
	ai, _ := suite.LookupAuth(a)
	k := make([]byte, ai.KeyLen)
	for i := range k {
		k[i] = byte(i*13 + 1)
	}
	return k
}

func fuzzPair(t testing.TB, c fuzzSA) (out, in *sa.SA) {
	return newPair(t, c.auth, pairOpts{mode: c.mode, outer6: c.v6, esn: c.esn, window: -1, key: fuzzKey(c.auth)})
}

// seedPackets protects a few datagram shapes with every fuzz SA.
func seedPackets(t testing.TB) (seeds [][]byte, sel []byte) {
	ipv4Opts := []byte{1, 0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 0x83, 7, 4, 192, 0, 2, 2, 0, 0, 0, 0, 0}
	hbh := []byte{0, 1, 0x3e, 2, 0xaa, 0xbb, 0x1e, 2, 0xcc, 0xdd, 1, 4, 0, 0, 0, 0}
	for i, c := range fuzzConfigs {
		out, _ := fuzzPair(t, c)
		var ds [][]byte
		if c.mode == sa.Transport {
			d := transportDatagram(c.v6, 30)
			ds = append(ds, d)
			if c.v6 {
				ds = append(ds, withIPv6Ext(d, packet.ProtoHopByHop, hbh, 0))
			} else {
				ds = append(ds, withIPv4Options(d, ipv4Opts))
			}
		} else {
			ds = append(ds, innerDatagram(false, 20), innerDatagram(true, 20))
		}
		for _, d := range ds {
			p := bufOf(d)
			if err := Encap(out, p); err != sa.ReasonNone {
				t.Fatalf("seed %v: %v", c, err)
			}
			seeds = append(seeds, clone(p.Bytes()))
			sel = append(sel, byte(i))
		}
	}
	return seeds, sel
}

// ipLength returns the IP length of b if its header is valid, else len(b).
func ipLength(b []byte) int {
	switch packet.Version(b) {
	case 4:
		if _, ok := packet.ValidIPv4(b); ok {
			return packet.IPv4(b).TotalLen()
		}
	case 6:
		if packet.ValidIPv6(b) {
			return packet.IPv6Len + packet.IPv6(b).PayloadLen()
		}
	}
	return len(b)
}

// FuzzAHDecap feeds arbitrary datagrams to Decap: it must never panic; a
// refused datagram stays as it arrived; an accepted one is a well-formed
// IP datagram that is AH's payload (tunnel) or the datagram without AH.
func FuzzAHDecap(f *testing.F) {
	seeds, sel := seedPackets(f)
	for i, s := range seeds {
		f.Add(sel[i], s)
	}
	ins := make([]*sa.SA, len(fuzzConfigs))
	for i, c := range fuzzConfigs {
		_, ins[i] = fuzzPair(f, c)
	}
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		if len(data) > 4096 {
			return
		}
		s := ins[int(which)%len(ins)]
		p := bufOf(data)
		err := LocateAndDecap(s, p)
		if err != sa.ReasonNone {
			n := ipLength(data)
			if p.Off != packet.Headroom || p.Len != len(data) || !bytes.Equal(p.Bytes()[:n], data[:n]) {
				t.Fatalf("refused datagram (%v) was changed", err)
			}
			return
		}
		got := p.Bytes()
		sp, serr := packet.SplitIP(got)
		if serr != nil || sp.Len != len(got) {
			t.Fatalf("accepted datagram decapsulated to a malformed one: %x", got)
		}
		if s.Mode == sa.Transport && len(got) >= ipLength(data) {
			t.Fatalf("transport-mode Decap did not shrink the datagram")
		}
	})
}

// FuzzNormalizeRestore: zeroing the mutable fields and putting them back
// leaves any datagram exactly as it was, whatever its headers.
func FuzzNormalizeRestore(f *testing.F) {
	seeds, _ := seedPackets(f)
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, sending bool) {
		if len(data) > 4096 {
			return
		}
		buf := make([]byte, len(data), len(data)+512)
		copy(buf, data)
		pkt := buf[:ipLength(data)]
		var m mutable
		m.save = buf[len(pkt):cap(buf)]
		_, _, r := walk(pkt, &m, sending)
		if r == walkOK && packet.Version(pkt) == 4 {
			// The ICV input has the mutable IPv4 fields zeroed.
			if pkt[1]|pkt[6]|pkt[7]|pkt[8]|pkt[10]|pkt[11] != 0 {
				t.Fatalf("mutable fields not zeroed: %x", pkt[:20])
			}
		}
		m.restore(pkt)
		if !bytes.Equal(pkt, data[:len(pkt)]) {
			t.Fatalf("restore after walk (%d) changed the datagram:\n got %x\nwant %x", r, pkt, data[:len(pkt)])
		}
	})
}

// FuzzLocateFindsAHAsWalk: where Decap accepts the AH header packet.Locate
// found (what bundle.Decap hands it), the header walk Decap used to do
// finds the same AH header and the same byte naming it, and where the walk
// finds AH so does Decap, so Decap taking the caller's Loc changes nothing.
func FuzzLocateFindsAHAsWalk(f *testing.F) {
	seeds, _ := seedPackets(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			return
		}
		pkt := data[:ipLength(data)]
		off, nextOff, r := walk(pkt, nil, false)
		loc, err := packet.Locate(data, 0)
		var (
			lOff, lNext int
			r2          = sa.InHdrError
		)
		if err == nil {
			lOff, lNext, r2 = located(pkt, &loc)
		}
		if walkOK := r == walkOK && off+HeaderLen <= len(pkt); walkOK != (r2 == sa.ReasonNone) {
			t.Fatalf("walk %d (AH at %d) but located %v (Locate %v, %v)", r, off, r2, loc.Kind, err)
		}
		if r2 == sa.ReasonNone && (lOff != off || lNext != nextOff || loc.Len != len(pkt)) {
			t.Fatalf("walk: AH at %d named at %d; located: at %d named at %d (len %d of %d)", off, nextOff, lOff, lNext, loc.Len, len(pkt))
		}
	})
}
