// Package proc supervises host processes that cocoon starts detached (QEMU,
// cocoon-proxy, cocoon-relay) and must later find, wait for and stop from
// another process, where they are no longer children.
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	st := state(pid)
	return st != 0 && st != 'Z' && st != 'X'
}

// Stopped reports whether pid is stopped: by a signal (SIGSTOP, SIGTSTP)
// or by a tracer. A stopped process answers nothing until it is continued.
func Stopped(pid int) bool {
	st := state(pid)
	return st == 'T' || st == 't'
}

// state returns pid's state letter (/proc/<pid>/stat), 0 when unknown.
func state(pid int) byte {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

// Cmdline returns the command line of pid, arguments joined by spaces.
func Cmdline(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "", fmt.Errorf("reading command line of %d: %w", pid, err)
	}
	return strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " "), nil
}

// Wait blocks until pid has exited (or is a zombie nobody reaps yet), or ctx
// is done. It works for processes that are not our children: it uses a
// pidfd where the kernel has them, and polls /proc otherwise.
func Wait(ctx context.Context, pid int) error {
	if !Alive(pid) {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		defer unix.Close(fd)
		for {
			// Poll in slices so that ctx cancellation is noticed; a
			// zombie child of ours still reads as readable.
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 50)
			if err != nil && !errors.Is(err, unix.EINTR) {
				break
			}
			if n > 0 || !Alive(pid) {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("waiting for process %d: %w", pid, err)
			}
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for Alive(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for process %d: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Terminate sends SIGTERM to pid, waits until ctx is done, then sends
// SIGKILL and waits a little more. A process already gone is not an error.
func Terminate(ctx context.Context, pid int) error {
	if !Alive(pid) {
		return nil
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("terminating process %d: %w", pid, err)
	}
	if Wait(ctx, pid) == nil {
		return nil
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing process %d: %w", pid, err)
	}
	kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Wait(kctx, pid)
}
