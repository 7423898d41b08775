// Package netns runs code in a Linux network namespace: the one helper the
// ports (tun, wire), the daemon and the test topologies (internal/netlab)
// use to open sockets, devices and netlink handles in a namespace given by
// path, e.g. /run/netns/NAME.
package netns

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn with the calling thread in the network namespace at path, or
// directly when path is "". It switches on a fresh goroutine locked to its
// OS thread and lets that goroutine end still locked, so that the Go
// runtime discards the thread instead of reusing it in the wrong
// namespace. Sockets and devices fn opens stay in the namespace and may be
// used from any goroutine afterwards. fn's error is returned as it is.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w (create it first, e.g. with `ip netns add`)", path, err)
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w (needs CAP_SYS_ADMIN)", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Handle returns a netlink handle working in the namespace at path ("" =
// the caller's). Close it after use.
func Handle(path string) (*netlink.Handle, error) {
	if path == "" {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w (create it first, e.g. with `ip netns add`)", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", path, err)
	}
	return h, nil
}
