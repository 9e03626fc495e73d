package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/oci"
)

// mountInfo is the kernel's list of the mounts this thread sees: in the
// share's mount namespace (mountns.Do), /proc/self would show the host's.
const mountInfo = "/proc/thread-self/mountinfo"

// shareNS returns the mount namespace that holds the share's mounts: the
// one Create made, or the VMM's, which entered it and holds it for the
// VM's life. It is nil where neither is left: the VM is gone, and the
// kernel unmounted everything in the namespace with it (a sandbox made
// before the share had a namespace of its own has its mounts in the
// caller's, where nil looks).
func (s *Sandbox) shareNS() (*os.File, error) {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	if s.mntns != nil {
		return s.mntns, nil
	}
	if s.vm == nil || s.state.VM.PID <= 0 {
		return nil, nil
	}
	ns, err := mountns.Open(s.state.VM.PID)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.mntns = ns
	return ns, nil
}

// ShareNamespace returns the mount namespace that holds the share's
// mounts, for a process that must see them (a relay whose root is a
// container's root file system in the share); nil: the caller's. The
// sandbox keeps it open.
func (s *Sandbox) ShareNamespace() (*os.File, error) { return s.shareNS() }

// releaseNS lets go of the share's mount namespace, once the VMM is gone:
// with it, the namespace and every mount in it.
func (s *Sandbox) releaseNS() {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	if s.mntns != nil {
		s.mntns.Close()
		s.mntns = nil
	}
}

// privateShare bind-mounts dir on itself and makes it private, so that the
// container mounts made under it never propagate to other mount namespaces
// (on a host whose / is shared, they otherwise would), and unmounting dir
// lazily takes them all along. It must run before the VMM opens dir.
func privateShare(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting share %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("making share %s private: %w", dir, err)
	}
	// The VMM serving the share must not open a device node or gain a
	// set-id bit through it (the guest interprets both itself).
	if err := remount(dir, unix.MS_NODEV|unix.MS_NOSUID); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("share %s: %w", dir, err)
	}
	return nil
}

// remount adds flags to the bind mount at target, keeping those it has
// (dropping a locked one fails).
func remount(target string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return fmt.Errorf("remounting %s: %w", target, err)
	}
	keep := uintptr(st.Flags) & (unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|keep|flags, ""); err != nil {
		return fmt.Errorf("remounting %s: %w", target, err)
	}
	return nil
}

// sealReadOnly makes read-only the binds marked SealReadOnly (a
// read-only root file system) in the share's mount namespace ns, once the
// guest has created the container and no longer needs to make mount points
// in it. From then on neither the guest nor the VMM serving the share can
// write it.
func sealReadOnly(ns *os.File, binds []oci.Bind) error {
	return mountns.Do(ns, func() error { return sealBinds(binds) })
}

func sealBinds(binds []oci.Bind) error {
	for _, b := range binds {
		if !b.SealReadOnly {
			continue
		}
		// Every mount of the tree, where the kernel can (5.12).
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		err := unix.MountSetattr(unix.AT_FDCWD, b.Target, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &attr)
		if errors.Is(err, unix.ENOSYS) {
			err = remount(b.Target, unix.MS_RDONLY)
		}
		if err != nil {
			return fmt.Errorf("sealing %s read-only: %w", b.Target, err)
		}
	}
	return nil
}

// bindMount makes b in the share's mount namespace ns (nil: the caller's):
// it creates the mount point (a file for a file source), bind-mounts the
// source, as the caller sees it, recursively, read-only for a read-only
// bind (its top, or every mount for a recursive one), every mount of it a
// slave of the source's for a bind that receives the host's mounts
// (FromHost), private otherwise.
func bindMount(ns *os.File, b oci.Bind) error {
	if err := os.MkdirAll(filepath.Dir(b.Target), 0o700); err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	if b.File {
		f, err := os.OpenFile(b.Target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("creating mount point: %w", err)
		}
		f.Close()
	} else if err := os.Mkdir(b.Target, 0o700); err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	flags, top := uint64(unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID), uint64(0)
	switch {
	case b.ReadOnly && b.Recursive:
		flags |= unix.MOUNT_ATTR_RDONLY
	case b.ReadOnly:
		// "ro" leaves the submounts as they are, as with runc.
		top = unix.MOUNT_ATTR_RDONLY
	}
	// A slave receives what the host mounts under the source later (if
	// the source is shared: the copy of a private mount stays private,
	// as with runc) and sends nothing back, not even the unmounts that
	// the sandbox's end makes. Slave for rshared too: the guest's mounts
	// cannot reach the host anyway.
	propagation := uint64(unix.MS_PRIVATE)
	if b.FromHost {
		propagation = unix.MS_SLAVE
	}
	// A detached copy of the source tree gets its flags and propagation
	// before it is attached: read-only, nodev and nosuid hold from the
	// first moment, on every mount of the tree (read-only on its top for
	// "ro"), and in the copies that propagation makes (virtiofsd's
	// namespace), which a later remount would miss. Attached under a
	// shared share (virtio-fs), the tree becomes shared too, its copies in
	// the daemon's namespace its slaves: the host's mounts under the
	// source reach them through it, and its unmounts unmount them.
	err := attachTree(ns, b.Source, b.Target, flags, top, propagation)
	if errors.Is(err, unix.ENOSYS) {
		var ro uintptr
		if b.ReadOnly {
			ro = unix.MS_RDONLY
		}
		// The source as the share's namespace sees it: a copy of the
		// host's from when the namespace was made, and what propagated
		// into it since.
		err = mountns.Do(ns, func() error {
			return bindRemount(b.Source, b.Target, ro|unix.MS_NODEV|unix.MS_NOSUID, uintptr(propagation))
		})
	}
	return err
}

// attachTree bind-mounts the tree at source on target in ns with
// open_tree, mount_setattr (attrs and propagation on every mount of the
// tree, topAttrs on its top only) and move_mount. The tree is cloned here,
// from the caller's view of source (the host's: a container's root file
// system mounted after the share's namespace was made is there), and
// attached in ns. ENOSYS: the kernel predates them (5.12).
func attachTree(ns *os.File, source, target string, attrs, topAttrs, propagation uint64) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return err
		}
		return fmt.Errorf("bind-mounting %s on %s: %w", source, target, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: attrs, Propagation: propagation}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return err
		}
		return fmt.Errorf("bind-mounting %s on %s: setting attributes: %w", source, target, err)
	}
	if topAttrs != 0 {
		attr := unix.MountAttr{Attr_set: topAttrs}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("bind-mounting %s on %s: setting attributes: %w", source, target, err)
		}
	}
	err = mountns.Do(ns, func() error {
		return unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
	})
	if err != nil {
		return fmt.Errorf("bind-mounting %s on %s: %w", source, target, err)
	}
	return nil
}

// bindRemount is attachTree for kernels before 5.12: a recursive bind,
// a remount of its top with flags, then propagation (MS_PRIVATE or
// MS_SLAVE) on every mount of it.
func bindRemount(source, target string, flags, propagation uintptr) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on %s: %w", source, target, err)
	}
	if err := remount(target, flags); err != nil {
		return err
	}
	if err := unix.Mount("", target, "", propagation|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("setting the propagation of %s: %w", target, err)
	}
	return nil
}

// realPath resolves dir for comparison with mount points, which the kernel
// reports without symbolic links.
func realPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	dir, err := realPath(dir)
	if err != nil {
		return nil, fmt.Errorf("listing mounts under %s: %w", dir, err)
	}
	data, err := os.ReadFile(mountInfo)
	if err != nil {
		return nil, fmt.Errorf("listing mounts under %s: %w", dir, err)
	}
	var found []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPoint(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("listing mounts under %s: %w", dir, err)
	}
	// Deepest first; a path mounted several times appears several times.
	sort.SliceStable(found, func(i, j int) bool { return len(found[i]) > len(found[j]) })
	return found, nil
}

// unescapeMountPoint undoes the octal escapes (\040 for a space, ...) of
// a path in mountinfo.
func unescapeMountPoint(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll lazily unmounts every mount at or under dir, deepest first,
// and fails unless none is left: only then may dir be removed without
// reaching into what was mounted there.
func unmountAll(dir string) error {
	mps, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	left, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("still mounted under %s: %s", dir, strings.Join(left, ", ")))
	}
	return errors.Join(errs...)
}

// removeUnmounted unmounts everything under dir in mount namespace ns (nil:
// the caller's), then removes dir; it removes nothing if a mount is left.
func removeUnmounted(ns *os.File, dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return mountns.Do(ns, func() error {
		if err := unmountAll(dir); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
		return nil
	})
}
