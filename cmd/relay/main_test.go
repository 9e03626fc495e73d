package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cocoon-containers/cocoon/relay/relaytest"

	"github.com/cocoon-containers/cocoon/api"
	"golang.org/x/sys/unix"
)

// These tests run the real cocoon-relay binary against a fake agent behind
// the real cocoon-proxy on a unix socket, and check what its callers see:
// its exit status, its stdio, the signals it forwards.

// relayBinary is the cocoon-relay that TestMain builds.
var relayBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cocoon-relay-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBinary = filepath.Join(dir, "cocoon-relay")
	if out, err := exec.Command("go", "build", "-o", relayBinary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cocoon-relay: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const waitTimeout = 20 * time.Second

// sandbox is relaytest's fake sandbox, with this file's helpers.
type sandbox struct{ *relaytest.Sandbox }

func newSandbox(t *testing.T) *sandbox { return &sandbox{relaytest.NewSandbox(t)} }

// attached waits for n streams of the relay.
func (sb *sandbox) attached(t *testing.T, n int) map[api.Stdio]net.Conn {
	t.Helper()
	got := map[api.Stdio]net.Conn{}
	for range n {
		select {
		case s := <-sb.Streams:
			t.Cleanup(func() { s.Conn.Close() })
			got[s.Header.Stdio] = s.Conn
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d streams attached", len(got), n)
		}
	}
	return got
}

func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// relayCmd returns a cocoon-relay command for the sandbox's container "c",
// started as cocoon-runtime starts it (in its own session).
func (sb *sandbox) relayCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(relayBinary, append([]string{"--proxy-socket", sb.Sock, "--container", "c"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// exitCode waits for cmd and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(waitTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatal("cocoon-relay did not exit")
		return -1
	}
}

func TestExitStatusAndStdio(t *testing.T) {
	for _, want := range []int32{0, 3, 137, 143} {
		t.Run(fmt.Sprint(want), func(t *testing.T) {
			sb := newSandbox(t)
			var stdout, stderr bytes.Buffer
			cmd := sb.relayCmd("--exec", "e")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr // stdin: /dev/null
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			s := sb.attached(t, 2)
			if s[api.Stdout] == nil || s[api.Stderr] == nil {
				t.Fatalf("attached %v; want stdout and stderr only", s)
			}
			fmt.Fprintf(s[api.Stdout], "out %d\n", want)
			fmt.Fprintf(s[api.Stderr], "err %d\n", want)
			closeWrite(t, s[api.Stdout])
			closeWrite(t, s[api.Stderr])
			sb.Exit <- want
			if got := exitCode(t, cmd); got != int(want) {
				t.Errorf("exit code %d, want %d; stderr %q", got, want, stderr.String())
			}
			if stdout.String() != fmt.Sprintf("out %d\n", want) || stderr.String() != fmt.Sprintf("err %d\n", want) {
				t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
			}
			select {
			case s := <-sb.Streams:
				t.Errorf("unexpected %s stream (stdin is /dev/null)", s.Header.Stdio)
			default:
			}
		})
	}
}

func TestStdinEOF(t *testing.T) {
	sb := newSandbox(t)
	cmd := sb.relayCmd("--stdout=false", "--stderr=false")
	cmd.Stdin = strings.NewReader("some input")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := sb.attached(t, 1)[api.Stdin]
	if in == nil {
		t.Fatal("stdin not attached")
	}
	in.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, err := io.ReadAll(in); err != nil || string(b) != "some input" {
		t.Fatalf("process read %q, %v", b, err)
	}
	sb.Exit <- 0
	if got := exitCode(t, cmd); got != 0 {
		t.Errorf("exit code %d", got)
	}
}

// TestSignalsAndDescriptors sends the running relay signals, as
// containerd-shim-runc-v2 does to an exec'd process's PID, and checks that
// it closed a descriptor it inherited and reported ready.
func TestSignalsAndDescriptors(t *testing.T) {
	sb := newSandbox(t)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	leakR, leakW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer leakR.Close()
	cmd := sb.relayCmd("--exec", "e", "--ready-fd", "3")
	cmd.ExtraFiles = []*os.File{readyW, leakW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	leakW.Close()
	readyR.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, err := io.ReadAll(readyR); err != nil || string(b) != "ready\n" {
		t.Fatalf("ready pipe: %q, %v", b, err)
	}
	leakR.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, err := io.ReadAll(leakR); err != nil || len(b) > 0 {
		t.Errorf("inherited fd 4: read %q, %v; want EOF (closed by the relay)", b, err)
	}

	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case req := <-sb.Signals:
			if req.GetSignal() != uint32(sig) || req.GetContainerId() != "c" || req.GetExecId() != "e" {
				t.Errorf("SignalProcess(%v), want %v", req, sig)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%v not forwarded", sig)
		}
	}
	sb.Exit <- 143
	if got := exitCode(t, cmd); got != 143 {
		t.Errorf("exit code %d, want 143", got)
	}
}

func TestLostSandbox(t *testing.T) {
	sb := newSandbox(t)
	var stderr bytes.Buffer
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	cmd := sb.relayCmd("--ready-fd", "3")
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{readyW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	if line, err := bufio.NewReader(readyR).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("ready pipe: %q, %v", line, err)
	}
	sb.attached(t, 1) // stderr
	sb.Kill()
	if got := exitCode(t, cmd); got != 255 {
		t.Errorf("exit code %d, want 255", got)
	}
	if !strings.HasPrefix(stderr.String(), "cocoon-relay: lost the sandbox: ") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr %q, want one line about the lost sandbox", stderr.String())
	}
	t.Logf("stderr: %s", stderr.String())
}

func TestNeverConnects(t *testing.T) {
	var stderr bytes.Buffer
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	cmd := exec.Command(relayBinary, "--proxy-socket", filepath.Join(t.TempDir(), "proxy.Sock"), "--container", "c", "--ready-fd", "3", "--timeout-scale", "10")
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{readyW}
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	b, _ := io.ReadAll(readyR)
	if got := exitCode(t, cmd); got != 255 {
		t.Errorf("exit code %d, want 255", got)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
	const want = "cocoon-relay: connecting to the agent: "
	if !strings.HasPrefix(string(b), want) || !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("ready pipe %q, stderr %q; want %q...", b, stderr.String(), want)
	}
}

func TestBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no container": {"--proxy-socket", "/x"},
		"no agent":     {"--container", "c"},
		"both agents":  {"--container", "c", "--proxy-socket", "/x", "--vsock", "3:1024"},
		"bad vsock":    {"--container", "c", "--vsock", "three"},
		"arguments":    {"--container", "c", "--proxy-socket", "/x", "extra"},
		"unknown flag": {"--container", "c", "--bundle", "/x"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(relayBinary, args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Run()
			if got := cmd.ProcessState.ExitCode(); got != 255 {
				t.Errorf("exit code %d, want 255", got)
			}
			if !strings.HasPrefix(stderr.String(), "cocoon-relay: ") {
				t.Errorf("stderr %q", stderr.String())
			}
			if stdout.Len() > 0 { // the process's stdout: no usage text there
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
}

// TestTerminal starts the relay as the runtime does for a process with a
// terminal: fds 0-2 are the pty slave, which becomes its controlling
// terminal, so that resizing the master sends it SIGWINCH.
func TestTerminal(t *testing.T) {
	sb := newSandbox(t)
	master, slave := openPty(t)
	setWinsize(t, master, 24, 80)
	cmd := sb.relayCmd("--terminal")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the runtime's copy
	term := sb.attached(t, 1)[api.Terminal]
	if term == nil {
		t.Fatal("terminal not attached")
	}
	if r := resize(t, sb); r.GetRows() != 24 || r.GetCols() != 80 {
		t.Errorf("first resize %v, want 24x80", r)
	}
	if _, err := master.Write([]byte("echo hi\r")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("echo hi\r"))
	term.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(term, got); err != nil || string(got) != "echo hi\r" {
		t.Fatalf("process read %q, %v", got, err)
	}
	term.Write([]byte("hi\r\n"))
	got = make([]byte, 4)
	master.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(master, got); err != nil || string(got) != "hi\r\n" {
		t.Fatalf("master read %q, %v", got, err)
	}
	setWinsize(t, master, 40, 100) // the kernel sends the relay SIGWINCH
	if r := resize(t, sb); r.GetRows() != 40 || r.GetCols() != 100 {
		t.Errorf("resize %v, want 40x100", r)
	}
	closeWrite(t, term)
	sb.Exit <- 0
	if got := exitCode(t, cmd); got != 0 {
		t.Errorf("exit code %d", got)
	}
}

func resize(t *testing.T, sb *sandbox) *api.ResizeTtyRequest {
	t.Helper()
	select {
	case r := <-sb.Resizes:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("no resize")
		return nil
	}
}

func TestLargeOutput(t *testing.T) {
	const size = 64 << 20
	sb := newSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := sb.relayCmd("--stderr=false")
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	read := make(chan int64, 1)
	go func() {
		n, _ := io.CopyBuffer(io.Discard, r, make([]byte, 1<<20))
		read <- n
	}()
	out := sb.attached(t, 1)[api.Stdout]
	chunk := make([]byte, 1<<20)
	begin := time.Now()
	for range size / len(chunk) {
		if _, err := out.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	closeWrite(t, out)
	sb.Exit <- 0
	if got := exitCode(t, cmd); got != 0 {
		t.Errorf("exit code %d", got)
	}
	if n := <-read; n != size {
		t.Fatalf("read %d bytes, want %d", n, size)
	}
	d := time.Since(begin)
	t.Logf("process stdout -> cocoon-relay -> pipe: 64 MiB in %v: %.0f MB/s", d.Round(time.Millisecond), size/d.Seconds()/1e6)
}

// openPty opens a pseudo-terminal pair.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, sl, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); sl.Close() })
	return m, sl
}

func setWinsize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		t.Fatal(err)
	}
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
