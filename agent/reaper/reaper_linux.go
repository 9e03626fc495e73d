// Package reaper owns every wait(2) of the agent process: it reaps the
// orphans that reach the agent as PID 1 of the guest, and delivers the exit
// status of the children that other code starts through it.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Reaper owns every wait(2) of the agent process.
//
// The agent is PID 1, so every orphan of the guest becomes its child and must
// be reaped. A reaper that calls wait4(-1) on SIGCHLD would also collect the
// exit statuses of children that other code (exec.Cmd.Wait, runc's
// libcontainer) waits for itself, and those waits would fail with ECHILD.
// Waiting only for PIDs nobody registered is not practical either:
// waitid(P_ALL, WNOWAIT) peeks at one zombie only, always the same one, and
// scanning /proc for zombie children races with PID reuse.
//
// So the reaper owns all waits, and code that starts a process does it inside
// Start. Start holds the reaper's lock while its function runs: nothing is
// reaped in the meantime, so the function may start children and wait for
// them itself (libcontainer's bootstrap processes: "runc init" stage 0 and
// stage 1, which libcontainer waits for with os.Process.Wait; exec.Cmd.Run),
// and the PID it returns is registered before the reaper can collect it.
// That PID's exit status is then delivered on the channel Start returns; the
// caller must not wait for it by other means (cmd.Wait, os.Process.Wait,
// libcontainer's Process.Wait) after Start returns. Every other child is an
// orphan: reaped and logged.
//
// The cost: while a Start function runs (a container start takes tens of
// milliseconds, more under TCG), exit statuses wait; none is lost.
type Reaper struct {
	log *logrus.Entry

	// mu is held while reaping and while a Start function runs.
	mu      sync.Mutex
	waiters map[int]chan ExitStatus
}

// ExitStatus is how a child of the agent ended.
type ExitStatus struct {
	Pid    int
	Status unix.WaitStatus
	// At is when the reaper collected the status.
	At time.Time
}

// ExitCode returns the exit code a shell (and runc) reports: the status of a
// process that exited, 128+signal for one a signal killed.
func (e ExitStatus) ExitCode() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// New returns a reaper; it reaps nothing until Run is called.
func New(log *logrus.Entry) *Reaper {
	return &Reaper{log: log, waiters: make(map[int]chan ExitStatus)}
}

// Run reaps children on every SIGCHLD until ctx is done.
func (r *Reaper) Run(ctx context.Context) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	r.reap() // children that exited before Notify.
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			r.reap()
		}
	}
}

// Start runs start with reaping paused, and registers the PID it returns: its
// exit status arrives on the returned channel (buffered, sent once). start
// may wait for children it starts itself; it must not wait for the PID it
// returns. If start fails, nothing is registered and its error is returned.
func (r *Reaper) Start(start func() (pid int, err error)) (<-chan ExitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return nil, err
	}
	if pid <= 0 {
		return nil, fmt.Errorf("registering child: invalid pid %d", pid)
	}
	if _, dup := r.waiters[pid]; dup {
		return nil, fmt.Errorf("registering child %d: already registered", pid)
	}
	ch := make(chan ExitStatus, 1)
	r.waiters[pid] = ch
	return ch, nil
}

// reap collects every child that has exited.
func (r *Reaper) reap() {
	for {
		r.mu.Lock()
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == nil && pid > 0 && (ws.Stopped() || ws.Continued()) {
			// A stop of a process the agent traces (wait reports them
			// without WUNTRACED): it has not exited.
			r.mu.Unlock()
			continue
		}
		if err == nil && pid > 0 {
			r.deliverLocked(ExitStatus{Pid: pid, Status: ws, At: time.Now()})
		}
		r.mu.Unlock()
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			if !errors.Is(err, unix.ECHILD) {
				r.log.WithError(err).Warn("reaping children")
			}
			return
		case pid <= 0:
			return
		}
	}
}

func (r *Reaper) deliverLocked(e ExitStatus) {
	ch, ok := r.waiters[e.Pid]
	if !ok {
		r.log.WithFields(logrus.Fields{"pid": e.Pid, "status": e.ExitCode()}).Debug("reaped orphan")
		return
	}
	delete(r.waiters, e.Pid)
	ch <- e
}
