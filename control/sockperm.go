package control

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// CheckSocketDir refuses a socket directory another user could use to
// replace the socket (and so receive the keys sent to it): it must be a
// directory owned by the daemon's user and writable by nobody else.
func CheckSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: the socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control: %s is not a directory; choose another --socket", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid {
			return fmt.Errorf("control: the socket directory %s is owned by uid %d, not by the daemon's uid %d: its owner could replace the socket and receive keys; run `chown %d %s` (or choose another --socket)",
				dir, st.Uid, uid, uid, dir)
		}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("control: the socket directory %s is mode %04o, writable by other users: they could replace the socket and receive keys; run `chmod 0700 %s` (or choose another --socket)",
			dir, perm, dir)
	}
	return nil
}

// checkSocketOwner refuses to talk to a socket that neither root nor the
// caller owns: another user could have put it there to collect keys.
func checkSocketOwner(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil // the dial reports it
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s is not a socket; point --socket at the daemon's socket", path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Getuid(); st.Uid != 0 && int(st.Uid) != uid {
		return fmt.Errorf("refusing to use %s: it is owned by uid %d, neither root nor you (uid %d), so another user may be posing as the daemon; check who created it, or point --socket at the daemon's socket", path, st.Uid, uid)
	}
	return nil
}

// checkPeer refuses a connection whose serving process runs as neither
// root nor the caller (the socket file may have been swapped after it was
// checked).
func checkPeer(c net.Conn, path string) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return nil
	}
	if uid := os.Getuid(); cred.Uid != 0 && int(cred.Uid) != uid {
		return fmt.Errorf("refusing to use %s: the process serving it (pid %d) runs as uid %d, neither root nor you (uid %d); check who runs it, or point --socket at the daemon's socket", path, cred.Pid, cred.Uid, uid)
	}
	return nil
}
