// Package mountns makes the mount namespace that holds a sandbox's share
// and runs work in it.
//
// The share's mounts (the containers' root file systems and volumes) are
// the VM's business alone: made in the host's mount namespace, they would
// be copies of the host's mounts that the host sees, and a host directory
// holding one could not be removed (EBUSY), where under runc the copy is
// in the container's namespace and a removal simply detaches it. So the
// share lives in a namespace of its own, entered by the VMM (QEMU,
// virtiofsd) when it starts and held by it for the VM's life: when the VMM
// exits, the kernel unmounts everything in it.
//
// Go's threads share their file system context (CLONE_FS), which setns to
// a mount namespace refuses, so each function here works on an OS thread
// of its own (proc.OnOwnThread) that leaves the shared context first and
// is never given back to the Go scheduler.
package mountns

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/proc"
)

// New makes a mount namespace, a copy of the caller's whose mounts are all
// slaves of the caller's (the host's unmounts reach it, nothing made in it
// reaches the host), and returns it as an open namespace file. It lives
// while the file is open or a process is in it.
func New() (*os.File, error) {
	var ns *os.File
	err := proc.OnOwnThread(func() error {
		if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("making a mount namespace: %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("making a mount namespace: making its mounts slaves: %w", err)
		}
		f, err := os.Open("/proc/thread-self/ns/mnt")
		if err != nil {
			return fmt.Errorf("making a mount namespace: %w", err)
		}
		ns = f
		return nil
	})
	return ns, err
}

// Open opens the mount namespace of process pid.
func Open(pid int) (*os.File, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return nil, fmt.Errorf("opening the mount namespace of process %d: %w", pid, err)
	}
	return f, nil
}

// Enter moves the calling OS thread into ns. The caller must be on a thread
// of its own (proc.OnOwnThread): the thread is no longer like the others.
// Processes it starts are in ns.
func Enter(ns *os.File) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("entering mount namespace: leaving the shared file system context: %w", err)
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("entering mount namespace: %w", err)
	}
	return nil
}

// Do runs fn in ns, on a thread of its own, and returns its error. A nil
// ns runs fn in the caller's namespace (still on a thread of its own).
// Paths that fn gives the kernel resolve in ns; /proc/thread-self shows
// ns's mounts (/proc/self shows the process's first thread's).
func Do(ns *os.File, fn func() error) error {
	return proc.OnOwnThread(func() error {
		if ns != nil {
			if err := Enter(ns); err != nil {
				return err
			}
		}
		return fn()
	})
}
