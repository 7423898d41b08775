// Command secnic controls the secnic software NIC: its capabilities and
// offload parameters, SA bundles, policies, statistics and events, through
// the daemon's control API on a unix socket.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// commands are the top-level subcommands; adding one is one line.
var commands = []command{
	capsCommand,
	offloadCommand,
	saCommand,
	policyCommand,
	statsCommand,
	eventsCommand,
	runCommand, demoCommand, wiresharkKeysCommand,
	pcapCommand,
	xfrmCommand,
	gendocsCommand,
	benchCommand,
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, commands)
	stop()
	os.Exit(code)
}
