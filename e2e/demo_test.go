//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/secnic/secnic/internal/netlab"
	"github.com/secnic/secnic/internal/testenv"
)

// The secnic binary, built once per test run into a directory others may
// read (TestDemoNeedsRoot runs it as nobody); TestMain removes it.
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// buildSecnic builds cmd/secnic (once) and returns the binary's path.
func buildSecnic(t *testing.T) string {
	t.Helper()
	requireLab(t)
	goBin := testenv.RequireTool(t, "go", "the Go toolchain, to build cmd/secnic")
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "secnic-e2e-bin-"); binErr != nil {
			return
		}
		if binErr = os.Chmod(binDir, 0o755); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "secnic")
		cmd := exec.Command(goBin, "build", "-o", binPath, "github.com/secnic/secnic/cmd/secnic")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// demoNamespaces lists the namespaces a demo process with this pid made.
func demoNamespaces(pid int) []string {
	ents, _ := os.ReadDir(netlab.NetnsDir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("secnic-demo-%d-", pid)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// lockedBuf is a bytes.Buffer safe for a writer and a reader goroutine.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var longHex = regexp.MustCompile(`[0-9a-fA-F]{40,}`)

// TestDemo runs `secnic demo` as `make demo` does and checks its report.
func TestDemo(t *testing.T) {
	bin := buildSecnic(t)
	cmd := exec.Command(bin, "demo", "--bytes", "4MiB", "--pings", "2")
	var out lockedBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("secnic demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("secnic demo: %v", err)
	}
	text := out.String()
	for _, want := range []string{
		"ping 10.200.2.1      2 sent, 2 answered",
		"ping fd00:200:2::1   2 sent, 2 answered",
		"SHA-256", ": match",
		"NDIS current", "Linux view", "HANDLE", "redacted",
		"tx (host->wire, encrypt)",
		"[5/6] result: OK",
		"[6/6] cleaned up",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if m := longHex.FindString(text); m != "" {
		t.Errorf("the demo printed a long hex string (a key?): %s", m)
	}
	if ns := demoNamespaces(cmd.Process.Pid); len(ns) > 0 {
		t.Errorf("namespaces left behind: %v", ns)
		for _, n := range ns {
			_ = netlab.DeleteNamespace(n)
		}
	}
}

// TestDemoInterrupted interrupts the demo in the middle of its TCP
// transfer: it must remove everything it created.
func TestDemoInterrupted(t *testing.T) {
	bin := buildSecnic(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "demo", "--bytes", "8GiB")
			var out lockedBuf
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = pw, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			reached := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(pr)
				sent := false
				for sc.Scan() {
					out.Write([]byte(sc.Text() + "\n"))
					if !sent && strings.HasPrefix(sc.Text(), "[3/6]") {
						reached <- true
						sent = true
					}
				}
				if !sent {
					reached <- false
				}
			}()
			select {
			case ok := <-reached:
				if !ok {
					cmd.Wait()
					t.Fatalf("the demo ended before its transfer:\n%s", out.String())
				}
			case <-time.After(60 * time.Second): // watchdog
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the demo did not reach its transfer:\n%s", out.String())
			}
			time.Sleep(200 * time.Millisecond) // well inside the 8 GiB transfer
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			select {
			case err := <-waited:
				if err == nil {
					t.Errorf("an interrupted demo exited with status 0")
				}
			case <-time.After(30 * time.Second): // watchdog
				cmd.Process.Kill()
				<-waited
				t.Fatalf("the demo did not stop after %v:\n%s", sig, out.String())
			}
			if !strings.Contains(out.String(), "cleaned up") {
				t.Errorf("no cleanup report after %v:\n%s", sig, out.String())
			}
			if ns := demoNamespaces(cmd.Process.Pid); len(ns) > 0 {
				t.Errorf("namespaces left behind after %v: %v\n%s", sig, ns, out.String())
				for _, n := range ns {
					_ = netlab.DeleteNamespace(n)
				}
			}
		})
	}
}

// TestDemoClosedPipe: `secnic demo | head` closes the demo's output
// early; the demo must still finish and remove what it created.
func TestDemoClosedPipe(t *testing.T) {
	bin := buildSecnic(t)
	cmd := exec.Command(bin, "demo", "--bytes", "1MiB", "--pings", "1")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	pr.Close() // like head(1) exiting at once
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second): // watchdog
		cmd.Process.Kill()
		<-waited
		t.Fatal("the demo did not finish")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Errorf("the demo was killed by %v", ws.Signal())
	} else if !cmd.ProcessState.Success() {
		t.Errorf("the demo failed: %v", cmd.ProcessState)
	}
	if ns := demoNamespaces(cmd.Process.Pid); len(ns) > 0 {
		t.Errorf("namespaces left behind: %v", ns)
		for _, n := range ns {
			_ = netlab.DeleteNamespace(n)
		}
	}
}

// TestDemoNeedsRoot runs the demo as an unprivileged user: it must say
// that it needs root and create nothing.
func TestDemoNeedsRoot(t *testing.T) {
	bin := buildSecnic(t)
	cmd := exec.Command(bin, "demo")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the demo ran without root:\n%s", out)
	}
	if !strings.Contains(string(out), "needs root") || !strings.Contains(string(out), "sudo") {
		t.Errorf("the message does not say root is needed:\n%s", out)
	}
	if ns := demoNamespaces(cmd.Process.Pid); len(ns) > 0 {
		t.Errorf("namespaces created without root: %v", ns)
	}
}
