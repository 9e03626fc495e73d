package relay

import (
	"os"

	"github.com/cocoon-containers/cocoon/api"
	"golang.org/x/sys/unix"
)

// devNull is /dev/null's device number on Linux.
var devNull = unix.Mkdev(1, 3)

// IsAttached tells whether f is worth relaying: open, and not /dev/null.
// The runtime connects the process's streams that are not attached to
// /dev/null in the guest, and the relay does not open them.
func IsAttached(f *os.File) bool {
	if f == nil {
		return false
	}
	var st unix.Stat_t
	if err := control(f, func(fd int) error { return unix.Fstat(fd, &st) }); err != nil {
		return false // closed
	}
	return st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != devNull
}

// AttachedStdio says which of a process's streams to attach when its stdio
// on the host are stdin, stdout and stderr: the runtime creates the process
// with it, and starts its relay with the same files and the matching
// --stdin, --stdout and --stderr flags. A process with a terminal has one
// Terminal stream instead, which its relay (--terminal) attaches both ways.
func AttachedStdio(stdin, stdout, stderr *os.File) *api.StdioConfig {
	return &api.StdioConfig{
		Stdin:  IsAttached(stdin),
		Stdout: IsAttached(stdout),
		Stderr: IsAttached(stderr),
	}
}
