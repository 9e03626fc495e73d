package relay_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/relay"
	"golang.org/x/sys/unix"
)

func TestStdoutAndStderrStaySeparate(t *testing.T) {
	sb := newSandbox(t)
	var stdout, stderr bytes.Buffer
	done := start(sb.connect(t), relay.Config{ContainerID: "c1", ExecID: "e1", Stdout: &stdout, Stderr: &stderr})
	s := sb.attached(t, 2, "c1", "e1")
	sb.noMoreStreams(t) // no stdin: not attached
	out, errs := s[api.Stdout], s[api.Stderr]
	if out == nil || errs == nil {
		t.Fatalf("attached %v, want stdout and stderr", s)
	}
	binary := []byte{0, 1, 2, 0xff, '\r', '\n', 0x1b}
	for _, w := range []struct {
		c net.Conn
		b []byte
	}{{out, []byte("out 1\n")}, {errs, []byte("err 1\n")}, {out, binary}, {errs, []byte("err 2")}, {out, []byte("out 2")}} {
		if _, err := w.c.Write(w.b); err != nil {
			t.Fatal(err)
		}
	}
	closeWrite(t, out)
	closeWrite(t, errs)
	sb.Exit <- 3
	r := finished(t, done)
	if r.err != nil || r.status != 3 {
		t.Fatalf("Run: %d, %v; want 3", r.status, r.err)
	}
	if want := "out 1\n" + string(binary) + "out 2"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if want := "err 1\nerr 2"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

func TestStdinEOFReachesTheProcess(t *testing.T) {
	sb := newSandbox(t)
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdin: strings.NewReader("line 1\nline 2")})
	in := sb.attached(t, 1, "c", "")[api.Stdin]
	if in == nil {
		t.Fatal("stdin not attached")
	}
	in.SetReadDeadline(time.Now().Add(waitTimeout))
	got, err := io.ReadAll(in) // ends only at the relay's CloseWrite
	if err != nil || string(got) != "line 1\nline 2" {
		t.Fatalf("process read %q, %v", got, err)
	}
	sb.Exit <- 0
	if r := finished(t, done); r.err != nil || r.status != 0 {
		t.Fatalf("Run: %d, %v", r.status, r.err)
	}
}

func TestUnwrittenStdinBlocksNothing(t *testing.T) {
	sb := newSandbox(t)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close() // never written
	defer stdinR.Close()
	var stdout bytes.Buffer
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdin: stdinR, Stdout: &stdout})
	s := sb.attached(t, 2, "c", "")
	s[api.Stdout].Write([]byte("bye"))
	closeWrite(t, s[api.Stdout])
	sb.Exit <- 0
	if r := finished(t, done); r.err != nil || r.status != 0 || stdout.String() != "bye" {
		t.Fatalf("Run: %d, %v, stdout %q", r.status, r.err, stdout.String())
	}
}

func TestExitStatusPassesThrough(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int32
	}{
		{"success", 0},
		{"failure", 3},
		{"killed", 137},     // SIGKILL
		{"terminated", 143}, // SIGTERM
		{"highest", 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			done := start(sb.connect(t), relay.Config{ContainerID: "c"})
			sb.Exit <- tc.status
			if r := finished(t, done); r.err != nil || r.status != int(tc.status) {
				t.Fatalf("Run: %d, %v; want %d", r.status, r.err, tc.status)
			}
		})
	}
}

func TestStatusOutOfRange(t *testing.T) {
	sb := newSandbox(t)
	done := start(sb.connect(t), relay.Config{ContainerID: "c"})
	sb.Exit <- 256
	if r := finished(t, done); r.err == nil || r.status != relay.StatusLost {
		t.Fatalf("Run: %d, %v; want %d and an error", r.status, r.err, relay.StatusLost)
	}
}

func TestSignalsAreForwarded(t *testing.T) {
	sb := newSandbox(t)
	sigs := make(chan os.Signal, 16)
	done := start(sb.connect(t), relay.Config{ContainerID: "c", ExecID: "e", Signals: sigs})
	for _, s := range []os.Signal{
		syscall.SIGUSR1,
		syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPIPE, syscall.SIGWINCH, // not forwarded
		syscall.SIGHUP,
		syscall.SIGTERM,
	} {
		sigs <- s
	}
	for _, want := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGTERM} {
		req := sb.signal(t)
		if req.GetSignal() != uint32(want) || req.GetContainerId() != "c" || req.GetExecId() != "e" || req.GetAll() {
			t.Errorf("SignalProcess(%v), want %v to c/e", req, want)
		}
	}
	sb.Exit <- 128 + int32(syscall.SIGTERM)
	if r := finished(t, done); r.err != nil || r.status != 143 {
		t.Fatalf("Run: %d, %v; want 143", r.status, r.err)
	}
	select {
	case req := <-sb.Signals:
		t.Errorf("unexpected SignalProcess(%v)", req)
	default:
	}
}

func TestForwarded(t *testing.T) {
	for sig, want := range map[os.Signal]bool{
		syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGHUP: true, syscall.SIGUSR2: true,
		syscall.SIGTSTP: true, syscall.SIGCONT: true, syscall.SIGQUIT: true,
		syscall.SIGCHLD: false, syscall.SIGURG: false, syscall.SIGPIPE: false, syscall.SIGWINCH: false,
		os.Interrupt: true,
	} {
		if got := relay.Forwarded(sig); got != want {
			t.Errorf("Forwarded(%v) = %v, want %v", sig, got, want)
		}
	}
}

func TestTerminal(t *testing.T) {
	sb := newSandbox(t)
	master, slave := openPty(t)
	setWinsize(t, master, 24, 80)
	sigs := make(chan os.Signal, 1)
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Console: slave, Signals: sigs})
	term := sb.attached(t, 1, "c", "")[api.Terminal]
	if term == nil {
		t.Fatal("terminal not attached")
	}
	if r := sb.resize(t); r.GetRows() != 24 || r.GetCols() != 80 || r.GetContainerId() != "c" {
		t.Errorf("first resize %v, want 24x80", r)
	}

	// Raw: what the user types reaches the process unchanged (no CR to NL,
	// ^C is a byte, not a signal), and is not echoed on the host.
	typed := "ls\r\x03\x04\x7f"
	if _, err := master.Write([]byte(typed)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(typed))
	term.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(term, got); err != nil || string(got) != typed {
		t.Fatalf("process read %q, %v; want %q", got, err, typed)
	}
	// What the process shows reaches the master unchanged (no NL to CRNL).
	shown := "a\nb\r\n\x1b[1m"
	if _, err := term.Write([]byte(shown)); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(shown))
	master.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := io.ReadFull(master, got); err != nil || string(got) != shown {
		t.Fatalf("master read %q, %v; want %q (an echo would come first)", got, err, shown)
	}

	setWinsize(t, master, 50, 132)
	sigs <- syscall.SIGWINCH
	if r := sb.resize(t); r.GetRows() != 50 || r.GetCols() != 132 {
		t.Errorf("resize %v, want 50x132", r)
	}
	closeWrite(t, term)
	sb.Exit <- 0
	if r := finished(t, done); r.err != nil || r.status != 0 {
		t.Fatalf("Run: %d, %v", r.status, r.err)
	}
	// The terminal's mode is restored.
	ptyControl(slave, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		if tio.Lflag&unix.ECHO == 0 || tio.Lflag&unix.ICANON == 0 {
			t.Errorf("terminal left raw: lflag %#x", tio.Lflag)
		}
		return nil
	})
	select {
	case req := <-sb.Signals:
		t.Errorf("SIGWINCH forwarded: %v", req)
	default:
	}
}

func TestLostSandbox(t *testing.T) {
	sb := newSandbox(t)
	var stdout bytes.Buffer
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdout: &stdout})
	out := sb.attached(t, 1, "c", "")[api.Stdout]
	out.Write([]byte("before"))
	sb.Kill()
	r := finished(t, done)
	if r.status != relay.StatusLost || !errors.Is(r.err, relay.ErrLostSandbox) {
		t.Fatalf("Run: %d, %v; want %d, %v", r.status, r.err, relay.StatusLost, relay.ErrLostSandbox)
	}
	t.Logf("error: %v", r.err)
	if !strings.HasPrefix(r.err.Error(), "lost the sandbox: ") {
		t.Errorf("error %q does not start with %q", r.err, "lost the sandbox: ")
	}
}

func TestLostSandboxBeforeAttaching(t *testing.T) {
	sb := newSandbox(t)
	c := sb.connect(t)
	sb.Kill()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the client did not notice")
	}
	r := finished(t, start(c, relay.Config{ContainerID: "c", Stdout: io.Discard}))
	if r.status != relay.StatusLost || !errors.Is(r.err, relay.ErrLostSandbox) {
		t.Fatalf("Run: %d, %v; want %d, %v", r.status, r.err, relay.StatusLost, relay.ErrLostSandbox)
	}
}

func TestOutputLeftOpenAfterExit(t *testing.T) {
	sb := newSandbox(t)
	var stdout bytes.Buffer
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdout: &stdout, DrainTimeout: 200 * time.Millisecond})
	out := sb.attached(t, 1, "c", "")[api.Stdout]
	out.Write([]byte("partial"))
	sb.Exit <- 7 // but the stream stays open
	begin := time.Now()
	r := finished(t, done)
	if r.err != nil || r.status != 7 {
		t.Fatalf("Run: %d, %v", r.status, r.err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Run took %v after the exit", d)
	}
	if stdout.String() != "partial" {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestOutputReaderGone(t *testing.T) {
	sb := newSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // the caller's reader went away
	defer w.Close()
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdout: w})
	out := sb.attached(t, 1, "c", "")[api.Stdout]
	// The relay closes the stream. Through the proxy the agent sees that as
	// the end of what it reads from the stream (the proxy drains what the
	// agent still writes, so that the agent never blocks on it).
	if _, err := out.Write([]byte("to nobody")); err != nil {
		t.Fatal(err)
	}
	out.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, err := io.ReadAll(out); err != nil || len(b) > 0 {
		t.Errorf("agent read %q, %v; want EOF", b, err)
	}
	sb.Exit <- 141
	if r := finished(t, done); r.err != nil || r.status != 141 {
		t.Fatalf("Run: %d, %v", r.status, r.err)
	}
}

func TestReady(t *testing.T) {
	sb := newSandbox(t)
	ready := make(chan struct{})
	done := start(sb.connect(t), relay.Config{ContainerID: "c", Stdout: io.Discard, Ready: func() { close(ready) }})
	out := sb.attached(t, 1, "c", "")[api.Stdout]
	select {
	case <-ready:
	case <-time.After(waitTimeout):
		t.Fatal("not ready")
	}
	closeWrite(t, out)
	sb.Exit <- 0
	finished(t, done)
}
