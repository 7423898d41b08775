package esp

import (
	"crypto/rand"
	"log/slog"
	"testing"

	"github.com/secnic/secnic/internal/packet"
	"github.com/secnic/secnic/ledger"
	"github.com/secnic/secnic/sa"
	"github.com/secnic/secnic/sadb"
	"github.com/secnic/secnic/saspec"
)

// reservedSA returns an outbound AES-GCM-128 tunnel SA from a table whose
// key-use ledger lives in a state directory: its sequence numbers come
// from reservations made durable by the table's reserver.
func reservedSA(b *testing.B) *sa.SA {
	b.Helper()
	l, err := ledger.Open(b.TempDir() + "/state")
	if err != nil {
		b.Fatal(err)
	}
	tb, err := sadb.NewTable(sadb.TableConfig{Ledger: l, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tb.Close(); l.Close() })
	key := make([]byte, 20)
	rand.Read(key)
	h, err := tb.Add(saspec.BundleSpec{Dir: "out", Mode: "tunnel", Src: v4a.String(), Dst: v4b.String(), ESN: true,
		ESP: &saspec.SASpec{SPI: 0x1234, Enc: "aes-gcm-128", EncKey: saspec.KeyOf(key)}})
	if err != nil {
		b.Fatal(err)
	}
	return tb.Snapshot().Bundle(h).ESP
}

// BenchmarkEncapReservation compares ESP encapsulation (AES-GCM-128,
// tunnel, 64 and 1400 bytes) of a plain SA with that of an SA whose
// sequence numbers are reserved in a state directory, interleaved in one
// run. The reserved path must stay at 0 allocs/op and within noise; it
// reports how often a packet found its reservation used up (waits/op).
func BenchmarkEncapReservation(b *testing.B) {
	gcm := alg{name: "aes-gcm-128"}
	for _, a := range allAlgs() {
		if a.name == "aes-gcm-128" {
			gcm = a
		}
	}
	for _, size := range []int{64, 1400} {
		for _, mode := range []string{"plain", "reserved"} {
			b.Run(mode+"/"+itoa(size), func(b *testing.B) {
				var s *sa.SA
				if mode == "plain" {
					s, _ = newPair(b, gcm, pairOpts{mode: sa.Tunnel, esn: true})
				} else {
					s = reservedSA(b)
				}
				d := benchDatagram(size)
				p := bufOf(d)
				waits := 0
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for {
						copy(p.B[packet.Headroom:], d[:packet.IPv4MinLen+packet.UDPLen])
						p.Off, p.Len = packet.Headroom, len(d)
						err := Encap(s, p)
						if err == sa.ReasonNone {
							break
						}
						if err != sa.OutSeqReserve {
							b.Fatal(err)
						}
						waits++ // the reservation ran out: retry
					}
				}
				b.ReportMetric(float64(waits)/float64(b.N), "retries/op")
			})
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for ; n > 0; n /= 10 {
		i--
		buf[i] = byte('0' + n%10)
	}
	return string(buf[i:])
}
