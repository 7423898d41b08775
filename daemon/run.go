package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Run runs a daemon for cfg until ctx is cancelled or SIGTERM or SIGINT
// arrives, then shuts it down cleanly. SIGHUP reloads the configuration
// file, which a configuration built in memory does not have: use RunFile.
// When started by systemd with Type=notify, Run reports readiness,
// reloads and shutdown through $NOTIFY_SOCKET. Once the SAs are loaded,
// Run zeroes the keys in cfg: the SA table keeps its own copy.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	return run(ctx, cfg, "", logger)
}

// RunFile reads the configuration file at path and runs the daemon like
// Run; SIGHUP re-reads the file and applies the SA and policy changes (see
// Daemon.Reload).
func RunFile(ctx context.Context, path string, logger *slog.Logger) error {
	cfg, err := LoadConfig(path)
	if err != nil {
		return err
	}
	defer cfg.wipe()
	return run(ctx, cfg, path, logger)
}

func run(ctx context.Context, cfg *Config, path string, logger *slog.Logger) error {
	// Subscribe before starting so that no signal is lost in between.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if n := cfg.Datapath.CPUs; n > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
	}
	d, err := Start(ctx, cfg, Options{Logger: logger, ConfigPath: path})
	if err != nil {
		return err
	}
	if n := cfg.Datapath.CPUs; n > 0 {
		d.log.Info("datapath.cpus: running on at most this many CPUs at once", "cpus", n, "machine", runtime.NumCPU())
	}
	cfg.wipe() // the table holds its own copy of the keys
	notify(d.log, "READY=1\nSTATUS=running: "+d.HostName()+" <-> "+d.NIC().Stats().WirePort)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stop requested")
			break loop
		case <-d.Done():
			runErr = d.Err()
			if runErr == nil {
				runErr = errors.New("daemon: the datapath stopped: a port was closed underneath it")
			}
			d.log.Error("datapath stopped unexpectedly; shutting down", "err", runErr)
			break loop
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if path == "" {
					d.log.Warn("SIGHUP ignored: the daemon was not started from a configuration file")
					continue
				}
				d.log.Info("SIGHUP: reloading the configuration", "file", path)
				notify(d.log, fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
				_, _ = d.ReloadFile() // logs the outcome either way
				notify(d.log, "READY=1")
				continue
			}
			d.log.Info("signal received; shutting down", "signal", s.String())
			break loop
		}
	}
	notify(d.log, "STOPPING=1")
	return errors.Join(runErr, d.Close())
}

// notify sends a state string to systemd's notification socket, if the
// service manager gave one ($NOTIFY_SOCKET; see sd_notify(3)). Without it,
// notify does nothing.
func notify(log *slog.Logger, state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		log.Debug("sd_notify: cannot reach the service manager", "err", err)
		return
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(state)); err != nil {
		log.Debug("sd_notify: write failed", "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as sd_notify's
// MONOTONIC_USEC wants it.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}
