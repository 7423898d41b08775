package daemon

import (
	"fmt"
	"sync"

	"github.com/secnic/secnic/tun"
)

// memCable is an in-process wire between two daemons of one process: the
// first daemon that names the cable gets one end, the second the other.
type memCable struct {
	name  string
	ends  [2]*tun.MemPort
	taken [2]bool
}

var cables = struct {
	sync.Mutex
	m map[string]*memCable
}{m: map[string]*memCable{}}

// attachCable returns a free end of the named cable, creating the cable on
// first use.
func attachCable(name string, mtu, batch int) (*memCable, *tun.MemPort, error) {
	if mtu == 0 {
		mtu = 1500
	}
	if batch == 0 {
		batch = 64
	}
	cables.Lock()
	defer cables.Unlock()
	c := cables.m[name]
	if c == nil {
		c = &memCable{name: name}
		c.ends[0], c.ends[1] = tun.NewMemPair(batch, mtu)
		cables.m[name] = c
	}
	for i := range c.ends {
		if !c.taken[i] {
			c.taken[i] = true
			return c, c.ends[i], nil
		}
	}
	return nil, nil, fmt.Errorf("daemon: memory cable %q already connects two daemons; name another cable", name)
}

// release forgets the cable once the daemon using it is gone. The ports
// themselves are closed by the NIC (closing one end closes the cable).
func (c *memCable) release() {
	cables.Lock()
	defer cables.Unlock()
	if cables.m[c.name] == c {
		delete(cables.m, c.name)
	}
}
