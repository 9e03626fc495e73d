package container

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// RLIMIT_AS cannot be left to libcontainer. It sets a process's rlimits
// with prlimit(2) when "runc init" reports ready, and runc init then builds
// the seccomp filter (libseccomp allocates), looks up the program and so on.
// runc init is the agent itself, a Go program whose runtime reserves more
// than 1 GiB of address space at start (Go 1.26: the page allocator's
// summaries and the scavenger's index, PROT_NONE but counted by
// RLIMIT_AS), so under a limit of 1 GiB every later mmap fails: "error
// adding seccomp filter rule for syscall getegid32: cannot allocate
// memory". runc, built with an older Go, stays under it.
//
// So the agent hands libcontainer a no-op RLIMIT_AS (its own, which the
// process inherits anyway) and sets the requested one itself once
// libcontainer's Start returns: the init process then waits on the exec
// FIFO, its setup done, and gets the limit before it executes the
// container's program, as under runc; an exec'd process is at most at
// its execve, whose new image the limit applies to.

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

// setAddressSpace applies a deferred RLIMIT_AS to process pid; nothing when
// as is nil.
func setAddressSpace(pid int, as *unix.Rlimit) error {
	if as == nil {
		return nil
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_AS, as, nil); err != nil {
		return fmt.Errorf("setting RLIMIT_AS of process %d: %w", pid, err)
	}
	return nil
}
