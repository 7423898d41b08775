package tun

import "fmt"

// MemQueues is a multiqueue in-memory port: n independent memory port pairs,
// the NIC side of which is the Multiqueue (Queue(i) is the i-th MemPort, and
// the MemQueues itself behaves as queue 0), the far side Peer(i). It stands
// in for a multiqueue TUN device or a wire port with several queues in tests:
// a test writes each flow into one Peer queue, as the kernel's flow hash
// would, and reads every Peer queue.
type MemQueues struct {
	*MemPort
	queues []*MemPort
	peers  []*MemPort
}

// NewMemQueues returns a multiqueue memory port of n queues (at least 1),
// each a pair made by NewMemPairConfig(cfg).
func NewMemQueues(n int, cfg MemConfig) *MemQueues {
	n = max(n, 1)
	m := &MemQueues{queues: make([]*MemPort, n), peers: make([]*MemPort, n)}
	for i := range n {
		m.queues[i], m.peers[i] = NewMemPairConfig(cfg)
	}
	m.MemPort = m.queues[0]
	return m
}

// Queues returns the number of queues.
func (m *MemQueues) Queues() int { return len(m.queues) }

// Queue returns the NIC-side end of queue i.
func (m *MemQueues) Queue(i int) Port { return m.queues[i] }

// Peer returns the far end of queue i.
func (m *MemQueues) Peer(i int) *MemPort { return m.peers[i] }

// Name returns "memq<N>" after the first queue's name.
func (m *MemQueues) Name() string { return fmt.Sprintf("%s+%dq", m.queues[0].Name(), len(m.queues)) }

// Close closes every queue (both ends).
func (m *MemQueues) Close() error {
	for _, q := range m.queues {
		q.Close()
	}
	return nil
}

var _ Multiqueue = (*MemQueues)(nil)
