package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// StartPlaced starts cmd and calls place with its PID before the new
// program runs its first instruction, as runc's parent places "runc init"
// in the container's cgroup before it goes on: the child stops at its exec
// (it is traced, PTRACE_TRACEME, until place returns), so whatever it does,
// every page it touches included, happens where place put it, and the
// caller itself never moves (a long-lived shim never joins a pod's cgroup to
// spawn into it). If place fails, the child is killed and reaped.
//
// The calling goroutine must be locked to its OS thread
// (runtime.LockOSThread), which becomes the child's tracer until place
// returns: only it may let the child go. place runs on another thread, so
// that a caller whose thread is confined (capabilities, Landlock) can still
// place the child. Where Yama forbids all tracing (ptrace_scope 3), the
// child is placed right after its start instead.
func StartPlaced(cmd *exec.Cmd, place func(pid int) error) error {
	if !tracingAllowed() {
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := runElsewhere(cmd.Process.Pid, place); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
		return nil
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if err := awaitExecStop(pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	placeErr := runElsewhere(pid, place)
	if placeErr != nil {
		// Killed while still stopped: it never runs a thing.
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	if err := unix.PtraceDetach(pid); err != nil && placeErr == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("letting %s go: %w", cmd.Path, err)
	}
	if placeErr != nil {
		_ = cmd.Wait()
		return placeErr
	}
	return nil
}

// awaitExecStop waits for the traced child pid to stop at its exec: the
// kernel sends a traced process SIGTRAP once execve has succeeded.
func awaitExecStop(pid int) error {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("waiting for process %d to start: %w", pid, err)
		}
		switch {
		case ws.Stopped() && ws.StopSignal() == unix.SIGTRAP:
			return nil
		case ws.Stopped():
			// Another signal before the exec: pass it on, and wait on.
			if err := unix.PtraceCont(pid, int(ws.StopSignal())); err != nil {
				return fmt.Errorf("resuming process %d: %w", pid, err)
			}
		default:
			return fmt.Errorf("process %d ended before it started: %v", pid, ws)
		}
	}
}

// tracingAllowed tells whether a child may ask to be traced: not where
// Yama's ptrace_scope is 3 ("no attach").
func tracingAllowed() bool {
	data, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	return err != nil || strings.TrimSpace(string(data)) != "3"
}

// runElsewhere runs fn(pid) in a goroutine of its own, which the Go runtime
// never schedules on a thread locked to another goroutine.
func runElsewhere(pid int, fn func(int) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(pid) }()
	return <-done
}
