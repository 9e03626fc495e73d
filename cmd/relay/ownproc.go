package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOwnProc is --own-proc: cocoon-runtime starts the relay as PID 1 of a
// PID namespace and in a mount namespace of their own, and the relay
// mounts there a /proc of its PID namespace. What reads /proc in the mount
// namespace of the container PID, as Podman's `top` does (psgo), then
// finds the relay alone instead of the host's processes. It returns the
// relay's PID on the host.
func mountOwnProc() (int, error) {
	if os.Getpid() != 1 {
		return 0, errors.New("--own-proc: the relay is not PID 1 of a PID namespace of its own")
	}
	// /proc is still the host's: it names the relay and its parent by
	// their PIDs on the host.
	self, err := os.Readlink("/proc/self")
	if err != nil {
		return 0, fmt.Errorf("--own-proc: %w", err)
	}
	pid, err := strconv.Atoi(self)
	if err != nil {
		return 0, fmt.Errorf("--own-proc: /proc/self is %q", self)
	}
	ppid, err := parentPID()
	if err != nil {
		return 0, fmt.Errorf("--own-proc: %w", err)
	}
	// Mounting over the caller's /proc would hide the host's processes
	// from every process that shares its mount namespace.
	var own, parent unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &own); err != nil {
		return 0, fmt.Errorf("--own-proc: %w", err)
	}
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/mnt", ppid), &parent); err != nil {
		return 0, fmt.Errorf("--own-proc: %w", err)
	}
	if own.Ino == parent.Ino && own.Dev == parent.Dev {
		return 0, errors.New("--own-proc: the relay shares its parent's mount namespace")
	}
	// Mounts made here stay here; unmounts on the host still reach here.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return 0, fmt.Errorf("--own-proc: making / a slave: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return 0, fmt.Errorf("--own-proc: mounting /proc: %w", err)
	}
	return pid, nil
}

// parentPID reads the relay's parent's PID from /proc/self/status, as the
// /proc mounted there sees it.
func parentPID() (int, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no PPid in /proc/self/status")
}

// enterRoot makes root, the container's root file system on the host, the
// root of the relay's mount namespace (of its own: mountOwnProc has checked
// it, and made it a slave of the host's), with the relay's /proc on its
// /proc. What works in the mount namespace of the container PID then works
// on the container's files, as with runc: Podman's `cp` to or from a running
// container, psgo's /proc. The agent's socket, a host path, stays reachable
// through a descriptor of its directory: enterRoot returns the path that
// reaches it from the new root ("" stays ""), and that directory, which
// the caller keeps open for as long as it dials (every stream does).
func enterRoot(root, sock string) (_ string, dir *os.File, retErr error) {
	if sock != "" {
		var err error
		if dir, err = os.Open(filepath.Dir(sock)); err != nil {
			return "", nil, fmt.Errorf("--root: %w", err)
		}
		defer func() {
			if retErr != nil {
				dir.Close()
			}
		}()
		sock = fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(sock))
	}
	// pivot_root wants a mount point, and leaves the host's root behind.
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", nil, fmt.Errorf("--root: binding %s: %w", root, err)
	}
	if err := unix.Chdir(root); err != nil {
		return "", nil, fmt.Errorf("--root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return "", nil, fmt.Errorf("--root: pivot_root to %s: %w", root, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return "", nil, fmt.Errorf("--root: detaching the host's root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return "", nil, fmt.Errorf("--root: %w", err)
	}
	// The guest's libcontainer made /proc in the container's root; without
	// it (or on a read-only root that lacks it) there is no /proc to list.
	if fi, err := os.Stat("/proc"); err != nil || !fi.IsDir() {
		return sock, dir, nil
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", nil, fmt.Errorf("--root: mounting /proc: %w", err)
	}
	return sock, dir, nil
}
