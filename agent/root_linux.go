package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// leaveInitramfs makes the agent's root a mount that has a parent, when it
// is the initramfs.
//
// pivot_root(2) refuses to move a root that is not a mount with a parent,
// and the initramfs (the kernel's rootfs) is the one mount without one: with
// the agent running from the initrd, every container's pivot_root would
// fail with EINVAL. So, before mounting anything, the agent bind-mounts its
// root onto a directory of itself, moves that mount over "/", and chroots
// into it: the files are the same, and the root is now a mount whose parent
// is rootfs. (switch_root copies the files to a tmpfs instead; a bind
// mount costs no memory.) Containers keep pivot_root, which unlike runc's
// --no-pivot chroot cannot be escaped by a process with CAP_SYS_CHROOT.
func leaveInitramfs(log *logrus.Entry) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("leaving the initramfs: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return nil // a real root file system: pivot_root works
	}
	const dir = "/.root"
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("leaving the initramfs: %w", err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"binding / on " + dir, func() error { return unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, "") }},
		{"entering " + dir, func() error { return unix.Chdir(dir) }},
		{"moving " + dir + " to /", func() error { return unix.Mount(dir, "/", "", unix.MS_MOVE, "") }},
		{"chroot", func() error { return unix.Chroot(".") }},
		{"entering /", func() error { return unix.Chdir("/") }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("leaving the initramfs: %s: %w", s.what, err)
		}
	}
	_ = os.Remove(dir) // the directory under the moved mount, now empty
	log.Debug("root moved onto a bind mount of the initramfs")
	return nil
}

// PivotRootWorks reports whether containers can use pivot_root: whether the
// agent's root is a mount with a parent (see leaveInitramfs), from
// /proc/self/mountinfo, where the initramfs is the one mount that is its own
// parent.
func PivotRootWorks() (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("reading mounts: %w", err)
	}
	root, ok := rootMount(string(b))
	if !ok {
		return false, errors.New("reading mounts: no mount at /")
	}
	return root.id != root.parent, nil
}

type mountEntry struct{ id, parent, point string }

// rootMount returns the topmost mount at "/" of a mountinfo file.
func rootMount(mountinfo string) (mountEntry, bool) {
	var (
		found mountEntry
		ok    bool
	)
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != "/" {
			continue
		}
		found, ok = mountEntry{id: f[0], parent: f[1], point: f[4]}, true
	}
	return found, ok
}
