package sa

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/secnic/secnic/internal/suite"
)

func outSA(t *testing.T) *SA {
	t.Helper()
	su, err := suite.New(suite.Params{Enc: "aes-gcm-128", EncKey: make([]byte, 20)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Params{SPI: 0x1000, Proto: ESP, Dir: Out, Mode: Tunnel, Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2")}, su)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// growingReserver extends the SA's reservation by step on every Low, from
// its own goroutine, as the SA table's reserver does after a durable write.
type growingReserver struct {
	step uint64
	wg   sync.WaitGroup
}

func (g *growingReserver) Low(s *SA) {
	g.wg.Go(func() {
		lim := s.Reservation() + g.step
		s.SetReservation(lim, lim-g.step/2)
		s.LowHandled()
	})
}

// TestTakeSeqConcurrent has several datapath workers take sequence
// numbers of one SA at once, through the reservation path (a small
// reservation that a reserver keeps extending): every number is handed out
// once, none above the reservation in force, and together they are 1..n
// (run with -race).
func TestTakeSeqConcurrent(t *testing.T) {
	for _, reserve := range []bool{false, true} {
		s := outSA(t)
		g := &growingReserver{step: 256}
		if reserve {
			s.BindReserver(g)
			s.SetReservation(256, 128)
		}
		const workers, each = 4, 20000
		got := make([][]uint64, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for len(got[w]) < each {
					seq, r := s.TakeSeq()
					switch r {
					case ReasonNone:
						if lim := s.Reservation(); seq > lim {
							t.Errorf("sequence number %d above the reservation %d", seq, lim)
							return
						}
						got[w] = append(got[w], seq)
					case OutSeqReserve:
						if !reserve {
							t.Error("OutSeqReserve without a reservation")
							return
						}
					default:
						t.Errorf("TakeSeq: %v", r)
						return
					}
				}
			})
		}
		wg.Wait()
		g.wg.Wait()
		seen := make([]bool, workers*each+1)
		for w := range got {
			for i, seq := range got[w] {
				if seq == 0 || seq > workers*each || seen[seq] {
					t.Fatalf("reserve=%v: sequence number %d handed out twice or out of range", reserve, seq)
				}
				seen[seq] = true
				if i > 0 && seq <= got[w][i-1] {
					t.Fatalf("reserve=%v: one taker got %d after %d", reserve, seq, got[w][i-1])
				}
			}
		}
		if s.LastSeq() != workers*each {
			t.Fatalf("reserve=%v: LastSeq %d, want %d", reserve, s.LastSeq(), workers*each)
		}
	}
}
