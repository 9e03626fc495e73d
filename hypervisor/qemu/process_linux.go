package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// pollInterval is how often Wait looks at a process it cannot block on.
const pollInterval = 50 * time.Millisecond

// process is a QEMU process, started by this process or by another one.
type process struct {
	pid int
	// child is set when this process started QEMU: a goroutine reaps it
	// (the only caller of cmd.Wait) and closes exited.
	child  *exec.Cmd
	exited chan struct{}
	// pidfd refers to a process found by Attach; nil where pidfd_open is
	// unavailable (Linux before 5.3), and then /proc is polled.
	pidfd *os.File
	// landlockABI is the Landlock ABI version that confines a child this
	// process started, 0 for none.
	landlockABI int
}

// startDetached starts cmd in a session of its own, so that it outlives the
// caller and gets none of its terminal's signals, and reaps it when it exits.
// cmd runs confined to c (see startConfined), placed by place when set.
func startDetached(cmd *exec.Cmd, c confinement, place hypervisor.Placer) (*process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := closeInheritedOnExec(); err != nil {
		return nil, err
	}
	abi, err := startConfined(cmd, c, place)
	if err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, child: cmd, exited: make(chan struct{}), landlockABI: abi}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// closeInheritedOnExec marks every descriptor above 2 of this process
// close-on-exec, so that QEMU inherits none of them. Go opens its own files
// close-on-exec, but descriptors inherited from this process's parent (a
// shim's pipes, say) are not, and a QEMU holding them would keep the
// parent's pipes open for the VM's whole life. Descriptors passed on
// purpose through exec.Cmd.ExtraFiles are unaffected: they are dup'ed.
func closeInheritedOnExec() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	// Linux before 5.11: walk /proc/self/fd.
	entries, rerr := os.ReadDir("/proc/self/fd")
	if rerr != nil {
		return fmt.Errorf("marking inherited descriptors close-on-exec: %w", errors.Join(err, rerr))
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		// The directory's own descriptor is gone by now: EBADF is fine.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return fmt.Errorf("marking descriptor %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}

// findProcess returns the process pid, holding a pidfd to it when the
// kernel has pidfd_open, so that a later reuse of the pid cannot fool Wait
// or Kill. The caller must then check that pid is the expected process.
func findProcess(pid int) (*process, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		return &process{pid: pid, pidfd: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}, nil
	case errors.Is(err, unix.ESRCH):
		return nil, err
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		// No pidfd (old kernel, or a seccomp filter): poll /proc instead.
		if !procAlive(pid) {
			return nil, unix.ESRCH
		}
		return &process{pid: pid}, nil
	default:
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
}

// exitedNow says whether the process has exited, without blocking.
func (p *process) exitedNow() bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return true
		default:
			return false
		}
	}
	if p.pidfd != nil {
		fds := []unix.PollFd{{Fd: int32(p.pidfd.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		return err == nil && n > 0
	}
	return !procAlive(p.pid)
}

// wait returns nil once the process has exited, or ctx's error.
func (p *process) wait(ctx context.Context) error {
	if p.exited != nil {
		select {
		case <-p.exited:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		if p.pidfd != nil {
			// A pidfd polls readable once its process has exited.
			fds := []unix.PollFd{{Fd: int32(p.pidfd.Fd()), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, int(pollInterval/time.Millisecond))
			if err != nil && !errors.Is(err, unix.EINTR) {
				return fmt.Errorf("polling pidfd of %d: %w", p.pid, err)
			}
			if n > 0 {
				return nil
			}
		} else {
			if !procAlive(p.pid) {
				return nil
			}
			select {
			case <-time.After(pollInterval):
			case <-ctx.Done():
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// exitError describes the exit of a child that has exited.
func (p *process) exitError() error {
	if p.child != nil && p.child.ProcessState != nil {
		return fmt.Errorf("%w: %s", errExited, p.child.ProcessState)
	}
	return errExited
}

// kill sends SIGKILL; a process that already exited is not an error.
func (p *process) kill() error {
	var err error
	switch {
	case p.child != nil:
		err = p.child.Process.Kill()
		if errors.Is(err, os.ErrProcessDone) {
			err = nil
		}
	case p.pidfd != nil:
		err = unix.PidfdSendSignal(int(p.pidfd.Fd()), unix.SIGKILL, nil, 0)
	default:
		err = unix.Kill(p.pid, unix.SIGKILL)
	}
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("killing qemu pid %d: %w", p.pid, err)
	}
	return nil
}

// procAlive says whether pid exists and is not a zombie.
func procAlive(pid int) bool {
	st := procState(pid)
	return st != 0 && st != 'Z' && st != 'X'
}

// procStopped tells whether process pid is stopped (state T, by a signal,
// or t, by a tracer).
func procStopped(pid int) bool {
	st := procState(pid)
	return st == 'T' || st == 't'
}

// procState returns pid's state letter, the field of /proc/<pid>/stat
// after the command name (in parentheses, and may itself hold ") "); 0
// when unknown.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// procCmdline returns the arguments of pid (empty for a zombie).
func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, nil
	}
	var args []string
	for _, a := range bytes.Split(b, []byte{0}) {
		args = append(args, string(a))
	}
	return args, nil
}

// pidFileOwner returns the pid of the process that holds the lock on the
// pid file at path (QEMU locks its pid file while it runs), or 0 when the
// file is absent or unlocked.
func pidFileOwner(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// QEMU takes a write lock on the whole file (lockf).
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return 0, fmt.Errorf("checking the lock on %s: %w", path, err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0, nil
	}
	return int(lk.Pid), nil
}
