package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// VMMCapabilities are the only capabilities QEMU keeps (effective,
// permitted and bounding set; none inheritable or ambient). QEMU stays
// uid 0 because, with security_model=none, its 9p server reads and writes
// the containers' files with its own credentials: an image's files belong
// to any uid with any mode, and a container running as a non-root user
// must still write its own files, so QEMU keeps what a file server needs
// (ownership, permission bypass, set-id and capability bits) and nothing
// else: no CAP_SYS_ADMIN (mount, namespaces), CAP_SYS_PTRACE, CAP_MKNOD,
// CAP_SYS_CHROOT, CAP_NET_ADMIN, CAP_SETUID/CAP_SETGID, CAP_KILL,
// CAP_SYS_MODULE, CAP_SYS_RAWIO, ... Where each host path QEMU may write
// is bounded by Landlock (see confinement).
var VMMCapabilities = []int{
	unix.CAP_CHOWN,
	unix.CAP_DAC_OVERRIDE,
	unix.CAP_DAC_READ_SEARCH,
	unix.CAP_FOWNER,
	unix.CAP_FSETID,
	unix.CAP_SETFCAP,
}

// confinement is the host file system a VMM may use, enforced with
// Landlock where the kernel has it: everything else is out of reach,
// whatever its capabilities.
type confinement struct {
	// readOnly paths (directories, with everything beneath them, or
	// files) may be read and executed.
	readOnly []string
	// readWrite paths may be read, written, created in and removed from.
	readWrite []string
	// mountNS, when set, is the mount namespace the process runs in
	// (VMConfig.MountNamespace): the paths resolve there.
	mountNS *os.File
}

// hostReadOnly are the host paths any QEMU reads: its binary, libraries,
// modules and firmware, the dynamic linker's cache, /proc and /sys.
var hostReadOnly = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/proc", "/sys"}

// hostReadWrite are device nodes QEMU opens read-write; the rest of /dev
// is out of reach.
var hostReadWrite = []string{"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/kvm", "/dev/vhost-vsock", "/dev/vhost-net", "/dev/net/tun"}

// startConfined starts cmd with VMMCapabilities only, no_new_privs set and,
// where the kernel has Landlock, c enforced, in c's mount namespace. The
// changes are made to an OS thread of its own (proc.OnOwnThread), which
// starts cmd: the child inherits that thread's credentials and namespace,
// and this process's other threads keep theirs. With place, the child is
// placed before it runs (proc.StartPlaced). It returns the Landlock ABI
// version enforced, 0 when the kernel has none.
func startConfined(cmd *exec.Cmd, c confinement, place hypervisor.Placer) (int, error) {
	var abi int
	err := proc.OnOwnThread(func() error {
		// The thread's mount namespace and credentials change for good.
		if c.mountNS != nil {
			if err := mountns.Enter(c.mountNS); err != nil {
				return err
			}
		}
		var err error
		if abi, err = confineThread(c); err != nil {
			return err
		}
		if place != nil {
			return proc.StartPlaced(cmd, place.Add)
		}
		return cmd.Start()
	})
	return abi, err
}

// confineThread reduces the calling thread's capabilities to
// VMMCapabilities, sets no_new_privs and applies c with Landlock.
func confineThread(c confinement) (int, error) {
	var keep uint64
	for _, cp := range VMMCapabilities {
		keep |= 1 << uint(cp)
	}
	// The bounding set first: dropping needs CAP_SETPCAP, which capset
	// removes below. Past the last capability the kernel says EINVAL.
	for cp := 0; cp < 64; cp++ {
		if keep&(1<<uint(cp)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(cp), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break
			}
			return 0, fmt.Errorf("dropping capability %d from the bounding set: %w", cp, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return 0, fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("reading capabilities: %w", err)
	}
	for i := range data {
		k := uint32(keep >> (32 * i))
		data[i].Effective &= k
		data[i].Permitted &= k
		// A root exec gains the inheritable set whatever the bounding set.
		data[i].Inheritable = 0
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("reducing capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("setting no_new_privs: %w", err)
	}
	return landlock(c)
}

// Landlock file system access rights, by the ABI version that added them.
const (
	llFileRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE
	llReadRights = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llABI1       = llFileRights | unix.LANDLOCK_ACCESS_FS_READ_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	// llTruncate (ABI 3) and llIoctlDev (ABI 5) are file rights too.
	llTruncate = unix.LANDLOCK_ACCESS_FS_TRUNCATE
	llIoctlDev = 1 << 15
)

// landlock restricts the calling thread (and what it execs) to c. It is
// best effort: a kernel without Landlock leaves the thread as it is, and 0
// is returned.
func landlock(c confinement) (int, error) {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 || int(abi) < 1 {
		return 0, nil
	}
	handled := uint64(llABI1)
	fileRights := uint64(llFileRights)
	if abi >= 2 {
		handled |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		handled |= llTruncate
		fileRights |= llTruncate
	}
	if abi >= 5 {
		handled |= llIoctlDev
		fileRights |= llIoctlDev
	}
	// Only the first field of struct landlock_ruleset_attr (ABI 1): the
	// kernel takes a shorter struct as it is.
	attr := struct{ handledAccessFS uint64 }{handled}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return 0, fmt.Errorf("creating landlock ruleset: %w", errno)
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	add := func(path string, access uint64) error {
		f, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("landlock rule for %s: %w", path, err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && !fi.IsDir() {
			access &= fileRights
		}
		rule := unix.LandlockPathBeneathAttr{Allowed_access: access & handled, Parent_fd: int32(f.Fd())}
		if _, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH, uintptr(unsafe.Pointer(&rule)), 0, 0, 0); errno != 0 {
			return fmt.Errorf("landlock rule for %s: %w", path, errno)
		}
		return nil
	}
	for _, p := range c.readOnly {
		if err := add(filepath.Clean(p), llReadRights); err != nil {
			return 0, err
		}
	}
	for _, p := range c.readWrite {
		if err := add(filepath.Clean(p), handled); err != nil {
			return 0, err
		}
	}
	if _, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); errno != 0 {
		return 0, fmt.Errorf("enforcing landlock ruleset: %w", errno)
	}
	return int(abi), nil
}
