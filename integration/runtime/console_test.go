//go:build integration

package runtime_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// consoleSocket listens where the runtime sends a pty master, as
// containerd and conmon do, and returns the first master received.
func consoleSocket(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan *os.File, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		got <- os.NewFile(uintptr(fds[0]), "console")
	}()
	return path, got
}

// terminal drives a pty master: it types and reads what comes back.
type terminal struct {
	t   *testing.T
	f   *os.File
	out chan []byte
	buf bytes.Buffer
}

func newTerminal(t *testing.T, ch <-chan *os.File) *terminal {
	t.Helper()
	var f *os.File
	select {
	case f = <-ch:
	case <-time.After(commandTimeout):
		t.Fatal("no console received")
	}
	t.Cleanup(func() { f.Close() })
	term := &terminal{t: t, f: f, out: make(chan []byte, 64)}
	go func() {
		for {
			b := make([]byte, 4096)
			n, err := f.Read(b)
			if n > 0 {
				term.out <- b[:n]
			}
			if err != nil {
				close(term.out)
				return
			}
		}
	}()
	return term
}

func (term *terminal) typ(s string) {
	term.t.Helper()
	if _, err := term.f.WriteString(s); err != nil {
		term.t.Fatal(err)
	}
}

// expect reads until the output holds want.
func (term *terminal) expect(want string) {
	term.t.Helper()
	deadline := time.After(commandTimeout)
	for !strings.Contains(term.buf.String(), want) {
		select {
		case b, ok := <-term.out:
			if !ok {
				term.t.Fatalf("terminal closed; output %q, want %q", term.buf.String(), want)
			}
			term.buf.Write(b)
		case <-deadline:
			term.t.Fatalf("terminal output %q, want %q", term.buf.String(), want)
		}
	}
}

// TestConsoleSocket creates a container with a terminal as containerd
// does for docker run -t: the master comes over --console-socket, and a
// shell on it answers what is typed; the same for exec --tty.
func TestConsoleSocket(t *testing.T) {
	id := "console"
	s := baseSpec(t, "sh")
	s.Process.Terminal = true
	bundle := writeBundle(t, s)
	sock, ch := consoleSocket(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	mustRT(t, "create", "--bundle", bundle, "--console-socket", sock, "--pid-file", pidFile, id)
	defer forceDelete(t, id)
	term := newTerminal(t, ch)
	mustRT(t, "start", id)
	term.typ("echo answer-$((40+2))\n")
	term.expect("answer-42")
	// The size set on the master reaches the guest's terminal.
	ws := &unix.Winsize{Row: 33, Col: 77}
	if err := unix.IoctlSetWinsize(int(term.f.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	term.typ("stty size\n")
	term.expect("33 77")

	t.Run("ExecTTY", func(t *testing.T) {
		esock, ech := consoleSocket(t)
		epid := filepath.Join(t.TempDir(), "exec.pid")
		mustRT(t, "exec", "--tty", "--detach", "--console-socket", esock, "--pid-file", epid, id, "sh")
		eterm := newTerminal(t, ech)
		eterm.typ("tty; exit 5\n")
		eterm.expect("/dev/pts/")
		if status := reap(t, readPid(t, epid)); status != 5 {
			t.Errorf("exec --tty status %d, want 5", status)
		}
	})
	term.typ("exit 3\n")
	if status := reap(t, readPid(t, pidFile)); status != 3 {
		t.Errorf("status %d, want 3", status)
	}
	waitStatus(t, id, "stopped")
	mustRT(t, "delete", id)
}
