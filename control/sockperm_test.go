package control

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/testenv"
)

func TestListenRefusesAnOpenSocketDirectory(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "s.sock")
	_, err := Listen(sock)
	if err == nil || !strings.Contains(err.Error(), "chmod 0700 "+run) || !strings.Contains(err.Error(), "mode 0777") {
		t.Fatalf("Listen in a 0777 directory: %v", err)
	}
	if _, serr := os.Lstat(sock); serr == nil {
		t.Errorf("the refused Listen left a socket behind")
	}
	// Group-writable is refused too; group- and world-readable is fine.
	if err := os.Chmod(run, 0o770); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(sock); err == nil {
		t.Errorf("Listen in a 0770 directory was accepted")
	}
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen in a 0755 directory: %v", err)
	}
	l.Close()
	// A directory Listen creates is 0700 whatever the umask.
	fresh := filepath.Join(dir, "fresh", "run")
	l, err = Listen(filepath.Join(fresh, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory: %v, %v", fi.Mode(), err)
	}
}

func TestListenRefusesADirectoryOfAnotherUser(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(filepath.Join(run, "s.sock"))
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") || !strings.Contains(err.Error(), "chown 0 "+run) {
		t.Fatalf("Listen in a directory owned by nobody: %v", err)
	}
}

func TestClientRefusesASocketOfAnotherUser(t *testing.T) {
	testenv.RequireRoot(t)
	_, client := limitedServer(t, Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Health(ctx); err != nil {
		t.Fatalf("health on our own socket: %v", err)
	}
	if err := os.Chown(client.socket, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := NewClient(client.socket).Health(ctx)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") || strings.Contains(err.Error(), "is the daemon running") {
		t.Fatalf("health on a socket owned by nobody: %v", err)
	}
}
