package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

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
// once the process has left runc init for the container's program (its
// name is no longer runc init's): the init process after Start, an exec'd
// process after libcontainer's Start. Any earlier and runc init's Go code
// still runs under the limit (setting it while the init process waits on
// the exec FIFO crashed runc init in about one start in 40). The cost: the
// program runs its first instructions, a few microseconds to a millisecond,
// before the limit applies (under runc it has it from execve). Making runc
// init fit under the limit instead (one malloc arena, the heap grown in
// advance) was tried and is not reliable: the Go runtime still maps memory
// and thread stacks after the limit.

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
