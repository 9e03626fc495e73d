package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH the agent sets for itself and its children: the
// kernel starts init with no PATH at all.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// guestMount is one file system the agent mounts at boot.
type guestMount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// guestMounts lists the mounts in order: a mount's parent comes first.
func guestMounts() []guestMount {
	const common = unix.MS_NOSUID | unix.MS_NODEV
	return []guestMount{
		{"proc", "/proc", "proc", common | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", common | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		// A private devpts instance; /dev/ptmx is made a link to its ptmx below.
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"shm", "/dev/shm", "tmpfs", common, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", common, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", common, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", common | unix.MS_NOEXEC, ""},
	}
}

// SetupGuest performs the init duties of PID 1 that come before serving:
// it moves its root off the initramfs (see leaveInitramfs), mounts /proc,
// /sys, /dev, /dev/pts, /dev/shm, /run, /tmp and /sys/fs/cgroup, links
// /dev/ptmx and /dev/fd, points stdio at the console (again, now that /dev
// is mounted), brings the loopback interface up (the guest's network
// namespace is the containers') and sets PATH. It is idempotent: what is already mounted stays
// as it is. It returns the first error but tries every step, so one missing
// kernel feature does not hide the others.
func SetupGuest(log *logrus.Entry) error {
	var errs []error
	if err := leaveInitramfs(log); err != nil {
		errs = append(errs, err)
	}
	for _, m := range guestMounts() {
		if err := mountOnce(log, m); err != nil {
			errs = append(errs, err)
		}
	}
	if err := linkDevices(); err != nil {
		errs = append(errs, err)
	}
	if err := SetupStdio(); err != nil {
		errs = append(errs, err)
	}
	if err := loopbackUp(&netlink.Handle{}); err != nil {
		errs = append(errs, err)
	}
	if os.Getenv("PATH") == "" {
		if err := os.Setenv("PATH", DefaultPath); err != nil {
			errs = append(errs, fmt.Errorf("setting PATH: %w", err))
		}
	}
	return errors.Join(errs...)
}

func mountOnce(log *logrus.Entry, m guestMount) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mounting %s: %w", m.target, err)
	}
	mounted, err := isMountPoint(m.target)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", m.target, err)
	}
	if mounted {
		log.WithField("target", m.target).Debug("already mounted")
		return nil
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil
		}
		return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
	}
	log.WithFields(logrus.Fields{"target": m.target, "type": m.fstype}).Debug("mounted")
	return nil
}

// isMountPoint reports whether path is the root of a mount: its device
// differs from its parent's (what mountpoint(1) checks), or it is "/".
func isMountPoint(path string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, fmt.Errorf("checking mount point %s: %w", path, err)
	}
	if err := unix.Lstat(filepath.Join(path, ".."), &parent); err != nil {
		return false, fmt.Errorf("checking mount point %s: %w", path, err)
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}

// linkDevices makes /dev/ptmx point into the devpts instance and adds the
// /dev/fd links that programs expect and devtmpfs does not provide.
func linkDevices() error {
	if fi, err := os.Lstat("/dev/ptmx"); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		if err := os.Remove("/dev/ptmx"); err != nil {
			return fmt.Errorf("linking /dev/ptmx: %w", err)
		}
	}
	links := [][2]string{
		{"pts/ptmx", "/dev/ptmx"},
		{"/proc/self/fd", "/dev/fd"},
		{"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"},
		{"/proc/self/fd/2", "/dev/stderr"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], l[1]); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("linking %s: %w", l[1], err)
		}
	}
	return nil
}

// SetupStdio points file descriptors 0, 1 and 2 at /dev/console where they
// are closed or /dev/null. The kernel opens the console for init when the
// initrd has /dev/console; when it could not, the Go runtime has put
// /dev/null (or nothing) there and the agent's logs would be lost.
func SetupStdio() error {
	var missing []int
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || isDevNull(st) {
			missing = append(missing, fd)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	console, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening console: %w", err)
	}
	defer unix.Close(console)
	for _, fd := range missing {
		if err := unix.Dup3(console, fd, 0); err != nil {
			return fmt.Errorf("pointing fd %d at the console: %w", fd, err)
		}
	}
	return nil
}

func isDevNull(st unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
}
