package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal runs a client (docker, podman) on a new pty of 24x80, as a
// user's shell would, and records what the pty shows.
type Terminal struct {
	// Master is the pty's master: what is written to it is typed.
	Master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

// StartTerminal starts cmd on a new pty, as its controlling terminal; the
// test's end kills it.
func StartTerminal(t testing.TB, cmd *exec.Cmd) *Terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80}); err != nil {
		t.Fatal(err)
	}
	term := &Terminal{Master: master, cmd: cmd, done: make(chan struct{})}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				close(term.done)
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		master.Close()
	})
	return term
}

// Output is what the terminal has shown.
func (term *Terminal) Output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// Expect waits until the terminal has shown s.
func (term *Terminal) Expect(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(term.Output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal never showed %q; it shows %q", s, term.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Session types into a shell on the terminal: what is typed (its echo
// through the pty too, with echo), a resize seen by `stty size`, and the
// shell's exit status.
func (term *Terminal) Session(t testing.TB, echo bool) {
	t.Helper()
	term.Expect(t, "# ")
	// The quotes make the echo of what was typed differ from its output.
	term.Master.WriteString("echo ty''ped; stty size\r")
	if echo {
		term.Expect(t, "echo ty''ped; stty size")
	}
	term.Expect(t, "typed\r\n24 80\r\n")
	if err := unix.IoctlSetWinsize(int(term.Master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		term.Master.WriteString("stty size\r")
		time.Sleep(500 * time.Millisecond)
		if strings.Contains(term.Output(), "33 111\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the resize never reached the container; terminal: %q", term.Output())
		}
	}
	term.Master.WriteString("tty; exit 6\r")
	select {
	case <-term.done:
	case <-time.After(time.Minute):
		t.Fatalf("the client did not exit; terminal: %q", term.Output())
	}
	_ = term.cmd.Wait()
	if code := term.cmd.ProcessState.ExitCode(); code != 6 {
		t.Errorf("exit code %d, want 6; terminal: %q", code, term.Output())
	}
	if !strings.Contains(term.Output(), "/dev/pts/") {
		t.Errorf("tty: no pty in the container; terminal: %q", term.Output())
	}
}
