package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// DefaultMountDir is Config.MountDir's default. It is not under
// /run/cocoon, which is 0700: the root of a container in a user namespace
// must reach its root file system's mount through it.
const DefaultMountDir = "/run/cocoon-mounts"

// The container's root file system and bind mounts are on the sandbox's
// shared directory (9p), which cannot hold device nodes: mknod there fails
// (QEMU refuses it: ENXIO), and an existing node of the host cannot even be
// statfs'd (QEMU opens it to answer: ENXIO for a device no driver serves).
// So, for the paths on the share, the agent does in the guest what runc
// does on the host's disk:
//
//   - linux.devices: the agent makes the node (type, numbers, mode, owner)
//     on a tmpfs of its own and bind-mounts it at the path, instead of
//     libcontainer's mknod in the root file system;
//   - linux.readonlyPaths naming a device node or FIFO: the agent
//     copies the node there and bind-mounts the copy read-only (with the
//     share's nosuid, nodev and noexec, as runc keeps those of the file
//     system), instead of libcontainer's bind and statfs.
//
// Device access stays under the container's device cgroup rules either way.
// Paths under a tmpfs the spec mounts (runc's default /dev) are left to
// libcontainer, as under runc.
//
// A container with a user namespace cannot walk the share's directories
// (0700, root's): its root file system is bind-mounted under
// MountDir/<id>/rootfs, whose parents every user can search, as runc needs
// the bundle's path searchable on the host.

// on9p reports whether dir is on a 9p file system: whether the deepest
// mount over it in /proc/self/mountinfo is 9p. (statfs cannot tell: 9p
// passes on the f_type of the host's file system.)
func on9p(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	return mountFSType(string(data), dir) == "9p"
}

// mountFSType returns the file system type of the deepest mount in
// mountinfo (the format of /proc/self/mountinfo) whose mount point is path
// or a parent of it; "" when none is.
func mountFSType(mountinfo, path string) string {
	path = filepath.Clean(path)
	best, fstype := -1, ""
	for _, line := range strings.Split(mountinfo, "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 1 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if (path == mp || mp == "/" || strings.HasPrefix(path, mp+"/")) && len(mp) >= best {
			best, fstype = len(mp), postFields[0]
		}
	}
	return fstype
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// localMounts are the guest-local mounts the agent made for a container,
// under dir; release undoes them.
type localMounts struct {
	dir     string
	mounted []string // mount points, in the order they were mounted
	log     *logrus.Entry
}

// release unmounts what was mounted and removes the directories.
func (l *localMounts) release() error {
	if l == nil {
		return nil
	}
	var errs []error
	for i := len(l.mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(l.mounted[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", l.mounted[i], err))
		}
	}
	l.mounted = nil
	if len(errs) == 0 {
		// Remove, never RemoveAll: were a mount still there, RemoveAll
		// would delete the container's files through it.
		for _, p := range []string{filepath.Join(l.dir, "dev"), filepath.Join(l.dir, "rootfs"), l.dir} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// mkdir makes dir/name (or dir when name is ""), mode 0711 whatever the
// umask.
func (l *localMounts) mkdir(name string) (string, error) {
	p := filepath.Join(l.dir, name)
	if err := os.MkdirAll(p, 0o711); err != nil {
		return "", err
	}
	return p, os.Chmod(p, 0o711)
}

// prepareLocal makes the guest-local mounts config needs and rewrites
// config to use them (see DefaultMountDir). It returns nil when none is
// needed.
func (m *Manager) prepareLocal(id string, config *configs.Config, log *logrus.Entry) (_ *localMounts, err error) {
	nodes := m.localDevices(config)
	readonly, err := m.localReadonlyNodes(config)
	if err != nil {
		return nil, fmt.Errorf("preparing guest mounts: %w", err)
	}
	userns := config.Namespaces.Contains(configs.NEWUSER)
	if len(nodes) == 0 && len(readonly) == 0 && !userns {
		return nil, nil
	}
	l := &localMounts{dir: filepath.Join(m.cfg.MountDir, id), log: log}
	if err := os.MkdirAll(m.cfg.MountDir, 0o711); err != nil {
		return nil, fmt.Errorf("preparing guest mounts: %w", err)
	}
	if err := os.Chmod(m.cfg.MountDir, 0o711); err != nil {
		return nil, fmt.Errorf("preparing guest mounts: %w", err)
	}
	// ErrExist: what a container of this ID left (see release).
	if err := os.Mkdir(l.dir, 0o711); err != nil {
		return nil, fmt.Errorf("preparing guest mounts: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := l.release(); rerr != nil {
				log.WithError(rerr).Warn("undoing the container's guest mounts")
			}
			err = fmt.Errorf("preparing guest mounts: %w", err)
		}
	}()
	if err := os.Chmod(l.dir, 0o711); err != nil {
		return nil, err
	}
	if len(nodes)+len(readonly) > 0 {
		dev, err := l.mkdir("dev")
		if err != nil {
			return nil, err
		}
		// Not nodev, unlike /run: the nodes are for use. Bind mounts of
		// them inherit this mount's flags.
		if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0711,size=64k"); err != nil {
			return nil, fmt.Errorf("mounting a tmpfs on %s: %w", dev, err)
		}
		l.mounted = append(l.mounted, dev)
		n := 0
		node := func(d *devices.Device, flags uintptr) error {
			p := filepath.Join(dev, strconv.Itoa(n))
			n++
			if err := mknod(p, d); err != nil {
				return err
			}
			config.Mounts = append(config.Mounts, &configs.Mount{
				Source: p, Destination: d.Path, Device: "bind", Flags: int(flags),
			})
			return nil
		}
		kept := config.Devices[:0]
		for _, d := range config.Devices {
			if !nodes[d] {
				kept = append(kept, d)
				continue
			}
			if err := node(d, unix.MS_BIND); err != nil {
				return nil, err
			}
			log.WithField("path", d.Path).Debug("device node bind-mounted from the guest: the share cannot hold it")
		}
		config.Devices = kept
		keptPaths := config.ReadonlyPaths[:0]
		for _, p := range config.ReadonlyPaths {
			ro, ok := readonly[p]
			if !ok {
				keptPaths = append(keptPaths, p)
				continue
			}
			if err := node(ro.dev, unix.MS_BIND|unix.MS_RDONLY|ro.flags); err != nil {
				return nil, err
			}
			log.WithField("path", p).Debug("read-only path is a node on the share: bind-mounting a copy read-only")
		}
		config.ReadonlyPaths = keptPaths
	}
	if userns {
		root, err := l.mkdir("rootfs")
		if err != nil {
			return nil, err
		}
		if err := unix.Mount(config.Rootfs, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, fmt.Errorf("bind-mounting the root file system on %s: %w", root, err)
		}
		l.mounted = append(l.mounted, root)
		log.WithField("rootfs", root).Debug("user namespace: root file system bind-mounted where the container's root can reach it")
		config.Rootfs = root
	}
	return l, nil
}

// mknod makes node d at p, with its mode and owner whatever the umask.
func mknod(p string, d *devices.Device) error {
	var mode uint32
	switch d.Type {
	case devices.BlockDevice:
		mode = unix.S_IFBLK
	case devices.CharDevice:
		mode = unix.S_IFCHR
	case devices.FifoDevice:
		mode = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: %c is not a device type", d.Path, d.Type)
	}
	dev, err := d.Mkdev()
	if err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if err := unix.Mknod(p, mode|uint32(d.FileMode.Perm()), int(dev)); err != nil {
		return fmt.Errorf("device %s: mknod %s: %w", d.Path, p, err)
	}
	if err := os.Chown(p, int(d.Uid), int(d.Gid)); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	if err := os.Chmod(p, d.FileMode.Perm()); err != nil {
		return fmt.Errorf("device %s: %w", d.Path, err)
	}
	return nil
}

// underlying returns the guest directory that holds path in the
// container before any mount of its own: the root file system, or the
// source of the bind mount covering path; "" when a mount of another kind
// (tmpfs, proc...) covers it.
func underlying(config *configs.Config, path string) (base, rel string) {
	path = filepath.Clean(path)
	var cover *configs.Mount
	for _, mnt := range config.Mounts {
		d := filepath.Clean(mnt.Destination)
		if path == d || strings.HasPrefix(path, d+"/") || d == "/" {
			if cover == nil || len(d) >= len(filepath.Clean(cover.Destination)) {
				cover = mnt
			}
		}
	}
	if cover == nil {
		return config.Rootfs, path
	}
	if !cover.IsBind() {
		return "", ""
	}
	r, _ := filepath.Rel(filepath.Clean(cover.Destination), path)
	return cover.Source, r
}

// localDevices returns the devices of config that lie on a file system
// that cannot hold them.
func (m *Manager) localDevices(config *configs.Config) map[*devices.Device]bool {
	out := make(map[*devices.Device]bool)
	for _, d := range config.Devices {
		// libcontainer makes /dev/ptmx a link to pts/ptmx.
		if d.Path == "" || filepath.Clean(d.Path) == "/dev/ptmx" {
			continue
		}
		if base, _ := underlying(config, d.Path); base != "" && m.noNodes(base) {
			out[d] = true
		}
	}
	return out
}

// readonlyNode is a read-only path that is a node on a file system that
// cannot statfs it.
type readonlyNode struct {
	dev   *devices.Device // a copy of the node, at the read-only path
	flags uintptr         // the file system's nosuid, nodev, noexec
}

// localReadonlyNodes returns the read-only paths of config that are device
// nodes or FIFOs on a file system that cannot statfs them, with
// what they are.
func (m *Manager) localReadonlyNodes(config *configs.Config) (map[string]readonlyNode, error) {
	out := make(map[string]readonlyNode)
	for _, p := range config.ReadonlyPaths {
		base, rel := underlying(config, p)
		if base == "" || !m.noNodes(base) {
			continue
		}
		// Resolved inside base: a link must not lead to the guest's files.
		full, err := securejoin.SecureJoin(base, rel)
		if err != nil {
			return nil, fmt.Errorf("read-only path %s: %w", p, err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			continue // libcontainer skips a read-only path that does not exist
		}
		d := &devices.Device{Path: p}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFBLK:
			d.Type = devices.BlockDevice
		case unix.S_IFCHR:
			d.Type = devices.CharDevice
		case unix.S_IFIFO:
			d.Type = devices.FifoDevice
		default:
			continue // libcontainer's bind and statfs work
		}
		d.Major, d.Minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		d.FileMode = os.FileMode(st.Mode & 0o777)
		d.Uid, d.Gid = st.Uid, st.Gid
		var fs unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(full), &fs); err != nil {
			return nil, fmt.Errorf("read-only path %s: statfs %s: %w", p, filepath.Dir(full), err)
		}
		out[p] = readonlyNode{dev: d, flags: uintptr(fs.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)}
	}
	return out, nil
}
