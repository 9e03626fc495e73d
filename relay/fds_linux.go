package relay

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedFDs closes every descriptor above 2 that the relay
// inherited, but those in keep, and returns the ones it closed. The relay
// lives as long as its process, and a descriptor it keeps open can hold up
// its caller: Docker's containerd-shim leaks its ttrpc socket into the
// runtime as fd 3, and would not see it close.
//
// Inherited descriptors are the ones without close-on-exec (execve closed
// the others); everything the Go runtime opens has it, so the runtime's own
// descriptors (epoll, its wake-up pipe) are left alone.
func CloseInheritedFDs(keep ...int) ([]int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("listing open descriptors: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("listing open descriptors: %w", err)
	}
	var closed []int
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 || slices.Contains(keep, fd) {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // the directory's own descriptor, now closed, or ours
		}
		if err := unix.Close(fd); err != nil {
			return closed, fmt.Errorf("closing inherited descriptor %d: %w", fd, err)
		}
		closed = append(closed, fd)
	}
	return closed, nil
}
