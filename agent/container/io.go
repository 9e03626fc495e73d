package container

import (
	"context"
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// StdioConfig says which of a process's standard streams the host will
// attach; the others are connected to /dev/null. A terminal process has one
// stream, the terminal, whatever this says.
type StdioConfig struct {
	Stdin, Stdout, Stderr bool
}

// Stream names one of a process's streams.
type Stream int

// The streams of a process.
const (
	Stdin Stream = iota
	Stdout
	Stderr
	Terminal
)

// String returns the stream's name.
func (s Stream) String() string {
	switch s {
	case Stdin:
		return "stdin"
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Terminal:
		return "terminal"
	}
	return fmt.Sprintf("stream(%d)", int(s))
}

// processIO is the agent's end of a process's stdio.
type processIO struct {
	log *logrus.Entry

	stdin          *inputRelay  // nil when not attached
	stdout, stderr *outputRelay // nil when not attached
	terminal       bool         // stdin and stdout are the pty's relays

	// Until the process has started: the process's ends of the pipes and
	// the console socket, which the agent closes once it has started.
	childEnds   []*os.File
	consoleSock *os.File
	master      *os.File
}

// newPipeIO makes the pipes cfg asks for and sets them as lp's stdio. uid
// and gid own the pipes, so that the container's root can reopen them
// (/proc/self/fd/1), as runc's do.
func newPipeIO(lp *libcontainer.Process, cfg StdioConfig, uid, gid int, log *logrus.Entry) (_ *processIO, err error) {
	pio := &processIO{log: log}
	defer func() {
		if err != nil {
			pio.close()
		}
	}()
	if cfg.Stdin {
		r, w, err := newPipe(uid, gid)
		if err != nil {
			return nil, err
		}
		pio.childEnds = append(pio.childEnds, r)
		pio.stdin = newInputRelay("stdin", w, true, log)
		lp.Stdin = r
	}
	if cfg.Stdout {
		r, w, err := newPipe(uid, gid)
		if err != nil {
			return nil, err
		}
		pio.childEnds = append(pio.childEnds, w)
		pio.stdout = newOutputRelay("stdout", r, log)
		lp.Stdout = w
	}
	if cfg.Stderr {
		r, w, err := newPipe(uid, gid)
		if err != nil {
			return nil, err
		}
		pio.childEnds = append(pio.childEnds, w)
		pio.stderr = newOutputRelay("stderr", r, log)
		lp.Stderr = w
	}
	return pio, nil
}

// newPipe returns a pipe of pipeSize bytes owned by uid:gid. Both ends are
// in the runtime's poller; the one handed to the process is made blocking
// when the process starts (os.StartProcess calls Fd), which the agent's end,
// a separate open file, does not share.
func newPipe(uid, gid int) (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("creating pipe: %w", err)
	}
	rc, err := r.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			// Best effort: a smaller pipe is slower, not wrong.
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
			// The ends share one inode: one chown does.
			err = unix.Fchown(int(fd), uid, gid)
		})
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		r.Close()
		w.Close()
		return nil, nil, fmt.Errorf("setting up pipe: %w", err)
	}
	return r, w, nil
}

// afterStart releases the agent's copies of the process's ends, and for a
// terminal receives the pty master. started says whether the process
// started; if not, there is no master to receive.
func (pio *processIO) afterStart(started bool) error {
	for _, f := range pio.childEnds {
		_ = f.Close()
	}
	pio.childEnds = nil
	if pio.consoleSock == nil {
		return nil
	}
	sock := pio.consoleSock
	pio.consoleSock = nil
	defer sock.Close()
	if !started {
		return nil
	}
	master, err := recvMaster(sock)
	if err != nil {
		return err
	}
	pio.master = master
	pio.stdout = newOutputRelay("terminal", master, pio.log)
	pio.stdin = newInputRelay("terminal", master, false, pio.log)
	return nil
}

// attach hands conn to the relay of stream s.
func (pio *processIO) attach(s Stream, conn Conn) error {
	if pio.terminal != (s == Terminal) {
		if pio.terminal {
			return invalidf("the process has a terminal: attach its terminal stream, not %s", s)
		}
		return invalidf("the process has no terminal")
	}
	switch s {
	case Stdin:
		if pio.stdin != nil {
			return pio.stdin.attach(conn)
		}
	case Stdout:
		if pio.stdout != nil {
			return pio.stdout.attach(conn)
		}
	case Stderr:
		if pio.stderr != nil {
			return pio.stderr.attach(conn)
		}
	case Terminal:
		if pio.stdout == nil {
			return preconditionf("the terminal is not ready")
		}
		if err := pio.stdout.attach(conn); err != nil {
			return err
		}
		return pio.stdin.attach(conn)
	default:
		return invalidf("unknown stream %d", int(s))
	}
	return invalidf("%s was not requested when the process was created", s)
}

// processExited tells the output relays that the process has exited.
func (pio *processIO) processExited() {
	for _, r := range []*outputRelay{pio.stdout, pio.stderr} {
		if r != nil {
			r.processExited()
		}
	}
}

// waitDrained waits until every output relay has passed on all the process
// wrote before it exited (see outputRelay); call it once the process has
// exited. A stream the host said it would attach and has not yet attached
// is waited for.
func (pio *processIO) waitDrained(ctx context.Context) error {
	for _, r := range []*outputRelay{pio.stdout, pio.stderr} {
		if r == nil {
			continue
		}
		select {
		case <-r.drained:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be flushed: %w", r.name, ctx.Err())
		}
	}
	return nil
}

// closeStdin makes the process read EOF on stdin.
func (pio *processIO) closeStdin() {
	if pio.stdin != nil {
		pio.stdin.closeStdin()
	}
}

// close releases everything: pipes, master, streams.
func (pio *processIO) close() {
	for _, f := range pio.childEnds {
		_ = f.Close()
	}
	pio.childEnds = nil
	if pio.consoleSock != nil {
		_ = pio.consoleSock.Close()
		pio.consoleSock = nil
	}
	if pio.stdin != nil {
		pio.stdin.close()
	}
	for _, r := range []*outputRelay{pio.stdout, pio.stderr} {
		if r != nil {
			r.close()
		}
	}
}
