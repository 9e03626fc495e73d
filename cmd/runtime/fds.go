package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// closeOnExecInherited marks every descriptor above 2 close-on-exec, as
// runc does at start: callers leak theirs into the runtime (Docker's
// containerd-shim its ttrpc socket as fd 3), and the long-lived processes
// the runtime starts (QEMU, cocoon-proxy, cocoon-relay, hooks) must not
// hold them open.
func closeOnExecInherited() {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
}
