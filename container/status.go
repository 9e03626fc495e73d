package container

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cocoon-containers/cocoon/internal/proc"
)

// Status is a container's OCI status.
type Status string

// The OCI runtime spec's statuses.
const (
	Creating Status = "creating"
	Created  Status = "created"
	Running  Status = "running"
	Paused   Status = "paused"
	Stopped  Status = "stopped"
)

// Errors of operations the status does not allow, with runc's texts.
// Each is an ErrFailedPrecondition too, which the containerd shim reports
// as such.
var (
	// ErrNotRunning: kill, pause or exec of a container that is not running.
	ErrNotRunning error = statusError("container not running")
	// ErrNotPaused: resume of a container that is not paused.
	ErrNotPaused error = statusError("container not paused")
)

// statusError is an operation that a status does not allow: runc's text,
// and ErrFailedPrecondition.
type statusError string

func (e statusError) Error() string { return string(e) }
func (e statusError) Unwrap() error { return ErrFailedPrecondition }

// CurrentStatus is c's status now: the recorded one, unless the relay
// (whose life is the process's) is gone, which makes it stopped.
func (c *Record) CurrentStatus() Status {
	switch c.Status {
	case Created, Running, Paused:
		if !RelayAlive(c.Pid, c.PidStart) {
			return Stopped
		}
	}
	return c.Status
}

// RelayAlive tells whether pid runs and is the process that started at
// start (0: not recorded, not checked).
func RelayAlive(pid int, start uint64) bool {
	if pid <= 0 || !proc.Alive(pid) {
		return false
	}
	if start == 0 {
		return true
	}
	got, err := StartTime(pid)
	return err == nil && got == start
}

// StartTime returns pid's start time in clock ticks after boot (field 22
// of /proc/<pid>/stat).
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading start time of %d: %w", pid, err)
	}
	return parseStartTime(string(data))
}

func parseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	// Fields after the command name start at field 3 (state).
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Op is an operation on a container, or on one of its processes, that its
// status may forbid. Both front ends ask CheckOp: cocoon-runtime of its
// records, the containerd shim of its processes (an exec'd process has the
// same statuses, but paused).
type Op int

// The operations CheckOp knows.
const (
	OpStart Op = iota
	// OpKill signals one process.
	OpKill
	// OpKillAll signals every process of the container: allowed once its
	// init has stopped too (in a PID namespace it shares, others may
	// remain), as runc kill --all.
	OpKillAll
	OpPause
	OpResume
	OpExec
	// OpDelete is the delete without --force.
	OpDelete
)

// CheckOp says whether op is allowed in status s, with runc's error when
// it is not; every error is ErrFailedPrecondition.
func CheckOp(op Op, id string, s Status) error {
	switch op {
	case OpStart:
		switch s {
		case Created:
			return nil
		case Stopped:
			return statusError("cannot start a container that has stopped")
		case Running:
			return statusError("cannot start an already running container")
		}
		return statusError(fmt.Sprintf("cannot start a container in the %s state", s))
	case OpKill:
		if s == Stopped || s == Creating {
			return ErrNotRunning
		}
	case OpKillAll:
		if s == Creating {
			return ErrNotRunning
		}
	case OpPause:
		if s != Running {
			return ErrNotRunning
		}
	case OpResume:
		if s != Paused {
			return ErrNotPaused
		}
	case OpExec:
		switch s {
		case Running, Created:
			return nil
		case Paused:
			return statusError("cannot exec in a paused container")
		}
		return statusError("cannot exec in a stopped container")
	case OpDelete:
		switch s {
		case Stopped, Created, Creating:
			return nil
		}
		return statusError(fmt.Sprintf("cannot delete container %s that is not stopped: %s", id, s))
	}
	return nil
}
