package container

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// These tests run what the guest first got wrong compared with runc (issue
// 14). On this host the root file system is not on 9p, so the tests that
// exercise the guest's way around 9p make the manager treat it as such.

// privateRootfs returns a root file system of the test's own with the
// busybox applets the tests use: the tests make nodes and mount points in
// it. Its parent is searchable by every user.
func privateRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(searchableDir(t), "rootfs")
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(filepath.Join(env.rootfs, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "stat", "head", "wc", "grep", "cut", "cat", "id", "ls", "touch", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// as9p makes m treat every directory as one that cannot hold device nodes,
// as the guest's 9p share.
func as9p(m *Manager) *Manager {
	m.noNodes = func(string) bool { return true }
	return m
}

func withoutMount(s *specs.Spec, dest string) {
	var kept []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination != dest {
			kept = append(kept, m)
		}
	}
	s.Mounts = kept
}

func TestDeviceNodesOffTheShare(t *testing.T) {
	for _, devTmpfs := range []bool{true, false} {
		t.Run(fmt.Sprintf("devTmpfs=%v", devTmpfs), func(t *testing.T) {
			rootfs := privateRootfs(t)
			spec := testSpec("sh", "-c", "stat -c '%t:%T %F %a %u:%g' /dev/test3 /dev/test-full /dev/null; head -c 3 /dev/test-full | wc -c; grep ' /dev/test3 ' /proc/self/mounts | wc -l")
			spec.Root.Path = rootfs
			if !devTmpfs {
				withoutMount(spec, "/dev")
			}
			mode, full := os.FileMode(0o640), os.FileMode(0o666)
			one, two, zero := uint32(1), uint32(2), uint32(0)
			spec.Linux.Devices = []specs.LinuxDevice{
				{Path: "/dev/test3", Type: "b", Major: 8, Minor: 666, FileMode: &mode, UID: &one, GID: &two},
				{Path: "/dev/test-full", Type: "c", Major: 1, Minor: 7, FileMode: &full, UID: &zero, GID: &zero},
			}
			stdout, stderr, st := run(t, as9p(newManager(t)), "devices", spec)
			mounts := "0" // libcontainer's mknod on the spec's tmpfs
			if !devTmpfs {
				mounts = "1" // the agent's bind mount
			}
			want := "8:29a block special file 640 1:2\n1:7 character special file 666 0:0\n1:3 character special file 666 0:0\n3\n" + mounts + "\n"
			if stdout != want || stderr != "" || st.Code != 0 {
				t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
			}
			if fi, err := os.Lstat(filepath.Join(rootfs, "dev", "test3")); err == nil && fi.Mode()&os.ModeDevice != 0 {
				t.Errorf("a device node was made in the root file system: %v", fi.Mode())
			}
		})
	}
}

// TestFifoDevice checks that a FIFO in linux.devices is made whatever
// numbers it carries (issue 23): a FIFO has none, and libcontainer 1.4
// refused the node mknod made because its 0:0 did not match them. On the
// spec's /dev tmpfs libcontainer makes it; without one, the agent does.
func TestFifoDevice(t *testing.T) {
	for _, devTmpfs := range []bool{true, false} {
		t.Run(fmt.Sprintf("devTmpfs=%v", devTmpfs), func(t *testing.T) {
			spec := testSpec("sh", "-c", "stat -c '%t:%T %F %a %u:%g' /dev/test3 /dev/fifo0; echo through > /dev/fifo0 & cat /dev/fifo0; wait")
			spec.Root.Path = privateRootfs(t)
			if !devTmpfs {
				withoutMount(spec, "/dev")
			}
			mode := os.FileMode(0o640)
			one, two := uint32(1), uint32(2)
			spec.Linux.Devices = []specs.LinuxDevice{
				{Path: "/dev/test3", Type: "p", Major: 8, Minor: 666, FileMode: &mode, UID: &one, GID: &two},
				{Path: "/dev/fifo0", Type: "p"},
			}
			stdout, stderr, st := run(t, as9p(newManager(t)), "fifo", spec)
			want := "0:0 fifo 640 1:2\n0:0 fifo 666 0:0\nthrough\n"
			if stdout != want || stderr != "" || st.Code != 0 {
				t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
			}
		})
	}
}

func TestReadonlyDeviceOnTheShare(t *testing.T) {
	rootfs := privateRootfs(t)
	if err := unix.Mknod(filepath.Join(rootfs, "readonly-device"), unix.S_IFBLK|0o600, int(unix.Mkdev(8, 666))); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "stat -c '%t:%T %F %a' /readonly-device; grep ' /readonly-device ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1")
	spec.Root.Path = rootfs
	spec.Linux.ReadonlyPaths = append(spec.Linux.ReadonlyPaths, "/readonly-device")
	m := as9p(newManager(t))
	stdout, stderr, st := run(t, m, "readonly-device", spec)
	if want := "8:29a block special file 600\nro\n"; stdout != want || stderr != "" || st.Code != 0 {
		t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
	}
	if err := m.Remove(ctxT(t, 10*time.Second), "readonly-device", false); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(m.cfg.MountDir); len(entries) != 0 {
		t.Errorf("left in the mount directory after removal: %v", entries)
	}
}

func TestUserNamespace(t *testing.T) {
	for _, netns := range []bool{true, false} {
		t.Run(fmt.Sprintf("netns=%v", netns), func(t *testing.T) {
			// env.rootfs is under a directory only root can search, as the
			// guest's share is: the agent must give the namespace's root a
			// way. Without a network namespace of its own (the usual case in
			// the guest, which drops the spec's), the container cannot mount
			// sysfs: the agent binds the guest's /sys.
			spec := testSpec("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u:%g /bin/busybox; grep -c ' /sys sysfs ro,' /proc/self/mounts")
			spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			if !netns {
				withoutNamespace(spec, specs.NetworkNamespace)
			}
			spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}
			spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 2000, Size: 65536}}
			m := newManager(t)
			stdout, stderr, st := run(t, m, "userns", spec)
			want := "         0       1000      65536\n         0       2000      65536\n0\n65534:65534\n1\n"
			if stdout != want || stderr != "" || st.Code != 0 {
				t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
			}
			if err := m.Remove(ctxT(t, 10*time.Second), "userns", false); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(m.cfg.MountDir); len(entries) != 0 {
				t.Errorf("left in the mount directory after removal: %v", entries)
			}
		})
	}
}

func withoutNamespace(s *specs.Spec, ns specs.LinuxNamespaceType) {
	var kept []specs.LinuxNamespace
	for _, n := range s.Linux.Namespaces {
		if n.Type != ns {
			kept = append(kept, n)
		}
	}
	s.Linux.Namespaces = kept
}

// seccompAllowList is an allow list with 32-bit names (as Docker's
// profile has), which makes libseccomp allocate while building the filter.
const seccompAllowList = `access arch_prctl brk capget capset chdir clock_nanosleep close close_range clone clone3
dup dup2 dup3 execve exit exit_group faccessat faccessat2 fcntl fcntl64 fstat fstat64 fstatfs
futex getcwd getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getpid getppid
getrlimit getuid getuid32 ioctl lseek madvise mmap mmap2 mprotect munmap nanosleep newfstatat
open openat openat2 pipe pipe2 prctl prlimit64 read readlink readlinkat rseq rt_sigaction
rt_sigprocmask rt_sigreturn sched_getaffinity sched_yield set_robust_list set_tid_address
setgid setgid32 setgroups setgroups32 setresgid setresuid setuid setuid32 sigaltstack stat
statx tgkill ugetrlimit uname wait4 write writev`

// allowListSeccomp is a profile of seccompAllowList; nil when the agent is
// built without seccomp (the rlimit tests still run: runc init's Go runtime
// maps memory under the limit too).
func allowListSeccomp() *specs.LinuxSeccomp {
	if !seccomp.Enabled {
		return nil
	}
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: strings.Fields(seccompAllowList), Action: specs.ActAllow}},
	}
}

func TestRlimitASUnderSeccomp(t *testing.T) {
	spec := testSpec("sleep", "100")
	spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_AS", Hard: 1 << 30, Soft: 1 << 30}}
	spec.Linux.Seccomp = allowListSeccomp()
	m := newManager(t)
	c := startContainer(t, m, "rlimit-as", spec)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", c.Init().Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limits), "Max address space         1073741824           1073741824           bytes") {
		t.Errorf("init's limits:\n%s", limits)
	}
	// An exec'd process gets the container's rlimits, or its own. (The
	// agent sets its RLIMIT_AS once the process has exec'd its program:
	// read it once the program runs.)
	ctx := ctxT(t, 20*time.Second)
	for name, tc := range map[string]struct {
		rls  []specs.POSIXRlimit
		want string
	}{
		"inherited": {nil, "1073741824           1073741824"},
		"own":       {[]specs.POSIXRlimit{{Type: "RLIMIT_AS", Hard: 1 << 31, Soft: 1 << 30}}, "1073741824           2147483648"},
	} {
		pr := process("sleep", "100")
		pr.Rlimits = tc.rls
		p, err := c.Exec(ctx, name, pr, StdioConfig{})
		if err != nil {
			t.Fatalf("exec %s: %v", name, err)
		}
		var limits []byte
		poll(t, 10*time.Second, "the exec'd sleep", func() bool {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid()))
			limits, _ = os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.Pid()))
			return string(cmdline) == "sleep\x00100\x00"
		})
		if want := "Max address space         " + tc.want + "           bytes"; !strings.Contains(string(limits), want) {
			t.Errorf("exec %s: limits\n%s\nwant %q", name, limits, want)
		}
		if err := p.Signal(unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRlimitASFromTheStart checks that the init process's program has its
// RLIMIT_AS from its first instruction, as under runc, many times over: the
// agent sets it at the exec, under ptrace (set once the program runs, a
// program this quick saw no limit about one time in four).
func TestRlimitASFromTheStart(t *testing.T) {
	m := newManager(t)
	for i := range 20 {
		spec := testSpec("sh", "-c", "ulimit -v")
		spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_AS", Hard: 1 << 30, Soft: 1 << 30}}
		spec.Linux.Seccomp = allowListSeccomp()
		stdout, stderr, st := run(t, m, fmt.Sprintf("rlimit-as-%d", i), spec)
		if stdout != "1048576\n" || stderr != "" || st.Code != 0 {
			t.Errorf("run %d: stdout %q, stderr %q, status %d", i, stdout, stderr, st.Code)
		}
	}
}

func TestBindMountDataOptionsIgnored(t *testing.T) {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in-volume"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "grep -c ' /vol ' /proc/self/mounts; ls /vol")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"bind", "mode=755", "size=1k"}})
	stdout, stderr, st := run(t, newManager(t), "bind-data", spec)
	if stdout != "1\nin-volume\n" || stderr != "" || st.Code != 0 {
		t.Errorf("stdout %q, stderr %q, status %d", stdout, stderr, st.Code)
	}
}

// TestMountOrder checks that the container's mounts are made in the order
// the spec lists them (issue 23), as /proc/self/mountinfo shows: tmpfs
// mounts, then bind mounts with every propagation option and file system
// options (which dropBindData clears), then mounts inside earlier ones,
// with a device node that the agent bind-mounts from the guest (on a
// file system that cannot hold it), after them.
func TestMountOrder(t *testing.T) {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in-volume"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", `awk '$5 ~ "^/(mnt/order/|dev/test-full)" { print $5 }' /proc/self/mountinfo; ls /mnt/order/t1/in`)
	spec.Root.Path = privateRootfs(t)
	withoutMount(spec, "/dev")
	var want []string
	add := func(m specs.Mount) {
		spec.Mounts = append(spec.Mounts, m)
		want = append(want, m.Destination)
	}
	for _, name := range []string{"t1", "t2"} {
		add(specs.Mount{Destination: "/mnt/order/" + name, Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755", "size=1k"}})
	}
	for _, prop := range []string{"shared", "slave", "private", "unbindable"} {
		add(specs.Mount{Destination: "/mnt/order/bind-" + prop, Type: "bind", Source: vol, Options: []string{"bind", prop, "mode=755", "size=1k"}})
		add(specs.Mount{Destination: "/mnt/order/rbind-r" + prop, Type: "bind", Source: vol, Options: []string{"rbind", "r" + prop, "mode=755", "size=1k"}})
	}
	add(specs.Mount{Destination: "/mnt/order/t1/in", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate"}})
	add(specs.Mount{Destination: "/mnt/order/rbind-rshared/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1k"}})
	full := os.FileMode(0o666)
	spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/test-full", Type: "c", Major: 1, Minor: 7, FileMode: &full}}
	stdout, stderr, st := run(t, as9p(newManager(t)), "mount-order", spec)
	wantOut := strings.Join(want, "\n") + "\n/dev/test-full\nin-volume\ntmp\n"
	if stdout != wantOut || stderr != "" || st.Code != 0 {
		t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, wantOut)
	}
}

func TestUnderlying(t *testing.T) {
	config := &configs.Config{
		Rootfs: "/share/c/rootfs",
		Mounts: []*configs.Mount{
			{Destination: "/dev", Device: "tmpfs"},
			{Destination: "/vol", Device: "bind", Source: "/share/c/mounts/1", Flags: unix.MS_BIND},
			{Destination: "/vol/sub/tmp", Device: "tmpfs"},
			{Destination: "/proc", Device: "proc"},
		},
	}
	for path, want := range map[string][2]string{
		"/dev/test3":          {"", ""},
		"/devices/x":          {"/share/c/rootfs", "/devices/x"},
		"/vol":                {"/share/c/mounts/1", "."},
		"/vol/sub/node":       {"/share/c/mounts/1", "sub/node"},
		"/vol/sub/tmp/node":   {"", ""},
		"/readonly-device":    {"/share/c/rootfs", "/readonly-device"},
		"/proc/../etc/device": {"/share/c/rootfs", "/etc/device"},
	} {
		if base, rel := underlying(config, path); base != want[0] || rel != want[1] {
			t.Errorf("underlying(%s) = %q, %q; want %q", path, base, rel, want)
		}
	}
}

func TestMountFSType(t *testing.T) {
	const mountinfo = `1 0 0:2 / / rw - rootfs rootfs rw
22 1 0:21 / /proc rw,nosuid - proc proc rw
30 1 0:25 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
31 30 0:26 / /run/cocoon/shared rw - 9p shared rw,trans=virtio
32 31 0:27 / /run/cocoon/shared/c/mounts/0 rw - tmpfs tmpfs rw
33 30 0:28 / /run/a\040b rw shared:1 - 9p other rw
`
	for path, want := range map[string]string{
		"/":                               "rootfs",
		"/run":                            "tmpfs",
		"/run/cocoon":                     "tmpfs",
		"/run/cocoon/shared":              "9p",
		"/run/cocoon/shared/c/rootfs":     "9p",
		"/run/cocoon/shared/c/mounts/0/x": "tmpfs",
		"/run/cocoon/shared/c/mounts/01":  "9p",
		"/run/cocoon/sharedx":             "tmpfs",
		"/run/a b/c":                      "9p",
		"/proc/self":                      "proc",
	} {
		if got := mountFSType(mountinfo, path); got != want {
			t.Errorf("mountFSType(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestDeferAddressSpace(t *testing.T) {
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_AS, &own); err != nil {
		t.Fatal(err)
	}
	in := []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Hard: 10, Soft: 5}, {Type: unix.RLIMIT_AS, Hard: 2 << 30, Soft: 1 << 30}}
	out, as, err := deferAddressSpace(in)
	if err != nil {
		t.Fatal(err)
	}
	if as == nil || as.Cur != 1<<30 || as.Max != 2<<30 {
		t.Errorf("deferred %+v", as)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != (configs.Rlimit{Type: unix.RLIMIT_AS, Hard: own.Max, Soft: own.Cur}) {
		t.Errorf("kept %+v", out)
	}
	if in[1].Soft != 1<<30 {
		t.Error("the input was modified")
	}
	if out, as, err := deferAddressSpace(in[:1]); err != nil || as != nil || len(out) != 1 {
		t.Errorf("without RLIMIT_AS: %v, %v, %v", out, as, err)
	}
}
