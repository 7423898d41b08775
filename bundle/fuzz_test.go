package bundle

import (
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/internal/suite"
	"github.com/secnic/secnic/sa"
)

// fuzzChains builds outbound and inbound chains with fixed keys and
// anti-replay disabled: AH+ESP transport, AH+ESP tunnel, ESP in ESP and AH
// in ESP transport over tunnel.
func fuzzChains(t testing.TB) (outs, ins [][]*sa.Bundle) {
	key := func(n int, seed byte) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = seed + byte(i)
		}
		return k
	}
	gcm := func(mode sa.Mode, v6 bool, spi uint32) *saDesc {
		s, d := endpoints(v6)
		if mode == sa.Transport {
			s, d = hosts(v6)
		}
		return &saDesc{proto: sa.ESP, enc: suite.EncAESGCM128, auth: suite.AuthNone, mode: mode, src: s, dst: d, spi: spi, window: -1, encKey: key(20, byte(spi))}
	}
	hmac := func(mode sa.Mode, v6 bool, spi uint32) *saDesc {
		s, d := endpoints(v6)
		if mode == sa.Transport && spi >= 0x300 {
			s, d = hosts(v6)
		}
		return &saDesc{proto: sa.AH, auth: suite.AuthSHA256, mode: mode, src: s, dst: d, spi: spi, window: -1, authKey: key(32, byte(spi))}
	}
	add := func(o, i []*sa.Bundle) { outs, ins = append(outs, o), append(ins, i) }
	// AH+ESP transport between the endpoints.
	{
		e := gcm(sa.Transport, false, 0x100)
		e.src, e.dst = endpoints(false)
		o, i := bundlePair(t, sa.Transport, e, hmac(sa.Transport, false, 0x200))
		add([]*sa.Bundle{o}, []*sa.Bundle{i})
	}
	// AH+ESP tunnel over IPv6.
	{
		o, i := bundlePair(t, sa.Tunnel, gcm(sa.Tunnel, true, 0x101), hmac(sa.Tunnel, true, 0x201))
		add([]*sa.Bundle{o}, []*sa.Bundle{i})
	}
	// ESP in ESP, AH in ESP (transport over tunnel).
	{
		to, ti := bundlePair(t, sa.Transport, gcm(sa.Transport, false, 0x301), nil)
		uo, ui := bundlePair(t, sa.Tunnel, gcm(sa.Tunnel, false, 0x401), nil)
		add([]*sa.Bundle{to, uo}, []*sa.Bundle{ti, ui})
		ao, ai := bundlePair(t, sa.Transport, nil, hmac(sa.Transport, false, 0x302))
		vo, vi := bundlePair(t, sa.Tunnel, gcm(sa.Tunnel, true, 0x402), nil)
		add([]*sa.Bundle{ao, vo}, []*sa.Bundle{ai, vi})
	}
	return outs, ins
}

// FuzzBundleIn feeds arbitrary datagrams to ApplyChainIn for each chain:
// no panic, and an accepted datagram is a well-formed IP datagram.
func FuzzBundleIn(f *testing.F) {
	outs, ins := fuzzChains(f)
	for i, c := range outs {
		src, dst := endpoints(false)
		if c[0].Mode == sa.Transport && c[0].AH == nil || len(c) == 2 {
			src, dst = hosts(false)
		}
		for _, n := range []int{0, 17, 300} {
			p := bufOf(udpDatagram(src, dst, n))
			if err := ApplyChainOut(c, p); err != sa.ReasonNone {
				f.Fatalf("seed chain %d: %v", i, err)
			}
			f.Add(byte(i), clone(p.Bytes()))
			if _, err := ApplyChainIn(ins[i], p); err != sa.ReasonNone {
				f.Fatalf("seed chain %d does not verify: %v", i, err)
			}
		}
	}
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		if len(data) > 4096 {
			return
		}
		c := ins[int(which)%len(ins)]
		p := bufOf(data)
		r, err := ApplyChainIn(c, p)
		if err != sa.ReasonNone {
			if r.Failed == nil || r.FailedIn == nil {
				t.Fatalf("refusal %v names no SA", err)
			}
			return
		}
		if r.Done == 0 {
			t.Fatal("accepted with no SA done")
		}
		sp, serr := packet.SplitIP(p.Bytes())
		if serr != nil || sp.Len != p.Len {
			t.Fatalf("accepted datagram decapsulated to a malformed one: %x", p.Bytes())
		}
	})
}
