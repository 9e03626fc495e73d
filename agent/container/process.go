package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/reaper"
)

// ExitStatus is how a process ended.
type ExitStatus struct {
	// Code follows runc: the exit code, or 128+N when signal N killed the
	// process.
	Code int
	// At is when the agent collected the status.
	At time.Time
	// OOMKilled is set when the process was killed (SIGKILL) while the
	// container's memory cgroup counted a new OOM kill.
	OOMKilled bool
}

// Process is a container's init process or an exec'd process.
type Process struct {
	c      *Container
	execID string
	pid    int
	lp     *libcontainer.Process
	io     *processIO
	log    *logrus.Entry

	exited chan struct{} // closed once status is set
	status ExitStatus

	closeOnce sync.Once
}

// ExecID returns the process's exec ID; "" for the container's init.
func (p *Process) ExecID() string { return p.execID }

// Pid returns the process's PID in the guest's PID namespace.
func (p *Process) Pid() int { return p.pid }

// watch waits for the reaper's exit status and records it. oomBase is the
// memory cgroup's OOM kill count when the process started (0 for a cgroup
// that did not exist yet: the init process's).
func (p *Process) watch(exits <-chan reaper.ExitStatus, oomBase uint64) {
	e := <-exits
	st := ExitStatus{Code: e.ExitCode(), At: e.At}
	if e.Status.Signaled() && e.Status.Signal() == unix.SIGKILL {
		if n, err := p.c.cgm.OOMKillCount(); err == nil && n > oomBase {
			st.OOMKilled = true
		}
	}
	p.status = st
	close(p.exited)
	p.log.WithFields(logrus.Fields{"status": st.Code, "oom_killed": st.OOMKilled}).Debug("process exited")
	p.io.processExited()
}

// Exited returns the exit status, and false while the process runs.
func (p *Process) Exited() (ExitStatus, bool) {
	select {
	case <-p.exited:
		return p.status, true
	default:
		return ExitStatus{}, false
	}
}

// Wait returns the exit status once the process has exited and everything it
// wrote before exiting has been written to the output streams the host
// attached (or said it would attach: Wait waits for them).
func (p *Process) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-p.exited:
	case <-ctx.Done():
		return ExitStatus{}, fmt.Errorf("waiting for process %d: %w", p.pid, ctx.Err())
	}
	if err := p.io.waitDrained(ctx); err != nil {
		return ExitStatus{}, err
	}
	return p.status, nil
}

// Signal sends sig to the process. The init process is signalled through
// libcontainer (which refuses a stopped container, and thaws a frozen v1
// cgroup for SIGKILL); an exec'd process through its pidfd, so a reused PID
// is never hit.
func (p *Process) Signal(sig unix.Signal) error {
	if _, done := p.Exited(); done {
		return preconditionf("process %d has exited", p.pid)
	}
	var err error
	if p.execID == "" {
		err = stateError(p.c.lc.Signal(sig))
	} else {
		err = p.lp.Signal(sig)
		if errors.Is(err, os.ErrProcessDone) {
			err = preconditionf("process %d has exited", p.pid)
		}
	}
	if err != nil {
		return fmt.Errorf("signalling process %d: %w", p.pid, err)
	}
	return nil
}

// CloseStdin makes the process read EOF on stdin once it has read what the
// host sent; as closing the stdin stream does. A terminal process ignores it.
func (p *Process) CloseStdin() { p.io.closeStdin() }

// Resize sets the size of the process's terminal.
func (p *Process) Resize(rows, cols uint16) error { return p.io.resize(rows, cols) }

// Attach hands conn, a stream the host opened, to the process's stream s.
// The process owns conn from then on, even when Attach fails.
func (p *Process) Attach(s Stream, conn Conn) error {
	if err := p.io.attach(s, conn); err != nil {
		conn.Close()
		return fmt.Errorf("attaching %s of process %d: %w", s, p.pid, err)
	}
	return nil
}

// close releases the process's stdio.
func (p *Process) close() {
	p.closeOnce.Do(p.io.close)
}
