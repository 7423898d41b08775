package nic

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetns runs fn with the calling thread in the network namespace at path,
// or directly when path is "". It switches on a fresh goroutine locked to
// its OS thread and lets that goroutine end still locked, so the runtime
// discards the thread rather than reuse it in the wrong namespace. Sockets
// fn opens stay in the namespace and work from any goroutine.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("nic: open network namespace %s: %w (create it first)", path, err)
	}
	defer ns.Close()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("nic: enter network namespace %s: %w (needs CAP_SYS_ADMIN)", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}
