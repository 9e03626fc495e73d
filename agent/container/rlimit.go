package container

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// RLIMIT_AS cannot be left to libcontainer. It sets a process's rlimits
// with prlimit(2) when "runc init" reports ready, and runc init then builds
// the seccomp filter (libseccomp allocates), looks up the program and so on.
// runc init is the agent itself, a Go program whose runtime reserves more
// than 1 GiB of address space at start (Go 1.26: the page allocator's
// summaries and the scavenger's index, PROT_NONE but counted by
// RLIMIT_AS), so under a limit of 1 GiB every later mapping fails: "error
// adding seccomp filter rule for syscall getegid32: cannot allocate
// memory", or the Go runtime's own "fatal error: runtime: cannot allocate
// memory". runc, built with an older Go, stays under such a limit.
//
// So the agent hands libcontainer a no-op RLIMIT_AS (its own, which the
// process inherits anyway) and sets the requested one itself with prlimit
// once the process has left runc init for the container's program. Any
// earlier and runc init's Go code still runs under the limit (setting it
// while the init process waits on the exec FIFO crashed runc init in about
// one start in 40). Making runc init fit under the limit instead (one
// malloc arena, the heap grown in advance) was tried and is not reliable:
// the Go runtime still maps memory and thread stacks after the limit.
//
//   - The init process: Start traces it (ptrace, PTRACE_O_TRACEEXEC) before
//     it lets it go, and sets the limit at its exec stop: the program has
//     the limit from its first instruction, as under runc.
//   - An exec'd process: its PID is known only once libcontainer's Start
//     returns, when it is already on its way to execve, too late to trace
//     it reliably. The agent waits for the exec (its name is no longer runc
//     init's) and sets the limit then: the program may run its first
//     instructions, microseconds to a millisecond, without it (under runc
//     it has it from execve).

// deferAddressSpace returns rls with RLIMIT_AS replaced by the agent's own
// (inherited, so a no-op), and the requested RLIMIT_AS, nil when rls has
// none. rls itself is not modified.
func deferAddressSpace(rls []configs.Rlimit) ([]configs.Rlimit, *unix.Rlimit, error) {
	var (
		out []configs.Rlimit
		as  *unix.Rlimit
	)
	for _, rl := range rls {
		if rl.Type == unix.RLIMIT_AS {
			var own unix.Rlimit
			if err := unix.Getrlimit(unix.RLIMIT_AS, &own); err != nil {
				return nil, nil, fmt.Errorf("reading the agent's RLIMIT_AS: %w", err)
			}
			as = &unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}
			rl = configs.Rlimit{Type: unix.RLIMIT_AS, Soft: own.Cur, Hard: own.Max}
		}
		out = append(out, rl)
	}
	return out, as, nil
}

// setAddressSpaceAfterExec applies a deferred RLIMIT_AS to process pid once
// it has exec'd the container's program; nothing when as is nil.
func setAddressSpaceAfterExec(pid int, as *unix.Rlimit) error {
	if as == nil {
		return nil
	}
	if err := waitExec(pid); err != nil {
		return fmt.Errorf("setting RLIMIT_AS: %w", err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_AS, as, nil); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil // it has exited already: nothing to limit
		}
		return fmt.Errorf("setting RLIMIT_AS of process %d: %w", pid, err)
	}
	return nil
}

// runcInitComm is the name libcontainer's nsexec gives runc init.
const runcInitComm = "runc:[2:INIT]"

// execPoll is how often waitExec looks; execWait how long at most (runc
// init's last steps take microseconds, even under TCG).
const (
	execPoll = 50 * time.Microsecond
	execWait = 10 * time.Second
)

// waitExec waits until process pid has left runc init for the container's
// program (or has exited).
func waitExec(pid int) error {
	path := "/proc/" + strconv.Itoa(pid) + "/comm"
	deadline := time.Now().Add(execWait)
	for {
		comm, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(bytes.TrimSuffix(comm, []byte("\n")), []byte(runcInitComm)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still in runc init after %v", pid, execWait)
		}
		time.Sleep(execPoll)
	}
}

// execTrace holds a process under ptrace until it execs, to set its
// RLIMIT_AS at that moment: after runc init's last Go instruction, before
// the program's first.
type execTrace struct {
	pid    int
	cancel chan struct{}
	done   chan error
}

// traceExec starts tracing process pid, which must not have exec'd yet, and
// sets as on it when it execs. The tracer is a thread of its own (ptrace
// requests come from the thread that attached), thrown away at the end,
// which detaches whatever it still traces.
func traceExec(pid int, as *unix.Rlimit) (*execTrace, error) {
	t := &execTrace{pid: pid, cancel: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, unix.PTRACE_O_TRACEEXEC, 0, 0); e != 0 {
			ready <- fmt.Errorf("tracing process %d: %w", pid, e)
			return
		}
		ready <- nil
		t.done <- t.follow(as)
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}

// errNotAtExec is follow's answer when the process stopped for another
// reason than its exec (a group stop): it is detached, and the limit is
// not set.
var errNotAtExec = errors.New("the traced process stopped before its exec")

// follow waits, on the tracer thread, for the process's exec stop, sets as
// and detaches. Signals that stop it before are passed on. (The reaper
// collects the stops' wait statuses: this watches /proc instead.)
func (t *execTrace) follow(as *unix.Rlimit) error {
	for {
		state, err := procState(t.pid)
		if err != nil || state == 'Z' || state == 'X' {
			return nil // gone: nothing to limit
		}
		if state == 't' {
			var si [128]byte
			if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(t.pid), 0, uintptr(unsafe.Pointer(&si[0])), 0, 0); e != 0 {
				// A group stop (EINVAL): leave it stopped, untraced.
				_ = unix.PtraceDetach(t.pid)
				return errNotAtExec
			}
			signo := int(int32(binary.LittleEndian.Uint32(si[0:4])))
			code := int(int32(binary.LittleEndian.Uint32(si[8:12])))
			if signo == int(unix.SIGTRAP) && code == int(unix.SIGTRAP)|unix.PTRACE_EVENT_EXEC<<8 {
				err := unix.Prlimit(t.pid, unix.RLIMIT_AS, as, nil)
				_ = unix.PtraceDetach(t.pid)
				if err != nil {
					return fmt.Errorf("setting RLIMIT_AS of process %d: %w", t.pid, err)
				}
				return nil
			}
			// A signal sent to the process: deliver it.
			_ = unix.PtraceCont(t.pid, signo)
			continue
		}
		select {
		case <-t.cancel:
			return errors.New("canceled")
		case <-time.After(execPoll):
		}
	}
}

// wait returns follow's result; stop ends the trace instead, when the
// process will not exec (the start failed).
func (t *execTrace) wait() error {
	select {
	case err := <-t.done:
		return err
	case <-time.After(execWait):
		close(t.cancel)
		return fmt.Errorf("process %d did not exec within %v", t.pid, execWait)
	}
}

func (t *execTrace) stop() { close(t.cancel) }

// procState returns the state letter of process pid (/proc/<pid>/stat).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return b[i+2], nil
}
