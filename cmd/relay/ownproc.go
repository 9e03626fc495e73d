package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
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
