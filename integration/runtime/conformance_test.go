//go:build integration

package runtime_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// TestConformance runs the same bundles with runc and cocoon-runtime for the
// parts of the runtime spec that the guest first got wrong (issue 14: device
// nodes, read-only device paths, user namespaces, RLIMIT_AS under seccomp,
// bind mounts with file system options; issue 23: mounts in the listed
// order, FIFOs in linux.devices; issue 25: read-only binds of a tree with a
// submount):
// cocoon must print want and exit 0, every time, and so must runc, with the
// same output, unless runc failed for a reason of its own on the host
// (runcExcuse), which is logged.
func TestConformance(t *testing.T) {
	rts := runtimes(t)
	for _, tc := range []struct {
		name string
		// spec returns the bundle's spec; rootfs is a private busybox root
		// file system in a directory every user can search.
		spec func(t *testing.T, rootfs string) *specs.Spec
		want string
		// host, when set, reports what the container left in rootfs on
		// the host, which must be hostWant.
		host     func(t *testing.T, rootfs string) string
		hostWant string
		// runcExcuse, when set, says why runc's result is no reference
		// (a failure of runc on the host, not of the bundle), or "".
		runcExcuse func(result) string
	}{
		{"DeviceNode", deviceSpec(true), "8:29a block special file 640 1:2\n1:7 character special file 666 0:0\n3\n", nil, "", nil},
		{"DeviceNodeWithoutDevTmpfs", deviceSpec(false), "8:29a block special file 640 1:2\n1:7 character special file 666 0:0\n3\n", nil, "", nil},
		{"ReadonlyDevicePath", readonlyDeviceSpec, "8:29a block special file\nro\n", nil, "", nil},
		{
			"UserNamespace", usernsSpec,
			"         0       1000      65536\n         0       2000      65536\n0 0\n0:0\n65534:65534\n0:0\n0:0\nwritten\n",
			owners("tmp/new", "tmp/dir", "owned"), "1000:2000 1000:2000 1000:2000", nil,
		},
		{"RlimitASWithSeccomp", rlimitASSpec, "1048576\n1048576\n", nil, "", runcOutOfAddressSpace},
		{"BindMountDataOptions", bindDataSpec, "1\nin-volume\n", nil, "", nil},
		{"MountOrder", mountOrderSpec, mountOrderWant, nil, "", nil},
		{"FifoDevice", fifoSpec(true), fifoWant, nil, "", nil},
		{"FifoDeviceWithoutDevTmpfs", fifoSpec(false), fifoWant, nil, "", nil},
		{"RecursiveReadOnlyBind", submountSpec("rro"), "in sub\ntop read-only\nsub read-only\n", nil, "", nil},
		{"ReadOnlyBindKeepsSubmounts", submountSpec("ro"), "in sub\ntop read-only\nsub writable\n", nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			results := make(map[string]result)
			for _, r := range rts {
				rootfs := privateRootfs(t)
				bundle := writeBundle(t, tc.spec(t, rootfs))
				id := fmt.Sprintf("conf-%s-%s", strings.ToLower(tc.name), r.name)
				got := run(t, cmdOpts{}, r.bin, r.args("run", "--bundle", bundle, id)...)
				t.Logf("%s: %v", r.name, got)
				if r.name == "runc" && tc.runcExcuse != nil {
					if why := tc.runcExcuse(got); why != "" {
						t.Logf("runc's result is no reference: %s", why)
						continue
					}
				}
				results[r.name] = got
				if got.code != 0 || got.stdout != tc.want {
					t.Errorf("%s: %v; want exit 0, stdout %q", r.name, got, tc.want)
				}
				if tc.host != nil {
					if h := tc.host(t, rootfs); h != tc.hostWant {
						t.Errorf("%s: on the host %q, want %q", r.name, h, tc.hostWant)
					}
				}
			}
			if runc, ok := results["runc"]; ok && runc != results["cocoon"] {
				t.Errorf("runc %v\ncocoon %v", runc, results["cocoon"])
			}
		})
	}
}

// privateRootfs builds a busybox root file system of the test's own (runc
// writes device nodes and mount points into it), under a directory that
// every user can search: a container whose root is mapped to another user
// must reach it, under runc as in the guest.
func privateRootfs(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cocoon-conformance-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// spec is baseSpec on rootfs, running the shell script script.
func spec(t *testing.T, rootfs, script string) *specs.Spec {
	s := baseSpec(t, "sh", "-c", script)
	s.Root.Path = rootfs
	return s
}

// deviceSpec asks for a block device 8:666 and a character device 1:7
// (/dev/full's numbers under another name) in linux.devices, with modes and
// owners; withDevTmpfs keeps runc's default tmpfs on /dev, or drops it so
// that the nodes go into the root file system's /dev (on the 9p share in
// the guest, which cannot hold device nodes).
func deviceSpec(withDevTmpfs bool) func(t *testing.T, rootfs string) *specs.Spec {
	return func(t *testing.T, rootfs string) *specs.Spec {
		s := spec(t, rootfs, "stat -c '%t:%T %F %a %u:%g' /dev/test3 /dev/test-full; head -c 3 /dev/test-full | wc -c")
		if !withDevTmpfs {
			var kept []specs.Mount
			for _, m := range s.Mounts {
				if m.Destination != "/dev" {
					kept = append(kept, m)
				}
			}
			s.Mounts = kept
		}
		mode, full := os.FileMode(0o640), os.FileMode(0o666)
		one, two, zero := uint32(1), uint32(2), uint32(0)
		s.Linux.Devices = append(s.Linux.Devices,
			specs.LinuxDevice{Path: "/dev/test3", Type: "b", Major: 8, Minor: 666, FileMode: &mode, UID: &one, GID: &two},
			specs.LinuxDevice{Path: "/dev/test-full", Type: "c", Major: 1, Minor: 7, FileMode: &full, UID: &zero, GID: &zero},
		)
		return s
	}
}

// readonlyDeviceSpec makes /readonly-device, a block device node of the
// root file system (8:666, which no driver serves: opening it fails with
// ENXIO), a read-only path.
func readonlyDeviceSpec(t *testing.T, rootfs string) *specs.Spec {
	dev := filepath.Join(rootfs, "readonly-device")
	if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(8, 666))); err != nil {
		t.Fatal(err)
	}
	s := spec(t, rootfs, "stat -c '%t:%T %F' /readonly-device; grep ' /readonly-device ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1")
	s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/readonly-device")
	return s
}

// usernsSpec maps the container's root to host user 1000 and group 2000;
// /owned belongs to 1000:2000 on the host, so to root in the container,
// and busybox to the host's root, which the namespace does not map. What
// the container's root creates belongs to 1000:2000 on the host.
func usernsSpec(t *testing.T, rootfs string) *specs.Spec {
	owned := filepath.Join(rootfs, "owned")
	if err := os.WriteFile(owned, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 1000, 2000); err != nil {
		t.Fatal(err)
	}
	s := spec(t, rootfs, "cat /proc/self/uid_map /proc/self/gid_map; echo $(id -u) $(id -g); stat -c '%u:%g' /owned /bin/busybox; "+
		"touch /tmp/new && mkdir /tmp/dir && stat -c '%u:%g' /tmp/new /tmp/dir && echo written > /owned && cat /owned")
	s.Root.Readonly = false
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 2000, Size: 65536}}
	return s
}

// owners returns a host function that reports the owners of names in the
// root file system.
func owners(names ...string) func(t *testing.T, rootfs string) string {
	return func(t *testing.T, rootfs string) string {
		var out []string
		for _, n := range names {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(rootfs, n), &st); err != nil {
				out = append(out, err.Error())
				continue
			}
			out = append(out, fmt.Sprintf("%d:%d", st.Uid, st.Gid))
		}
		return strings.Join(out, " ")
	}
}

// rlimitASSpec limits the address space to 1 GiB under a seccomp profile
// (an allow list with 32-bit names, as Docker's has): the runtime builds
// the filter after it has set the rlimits.
func rlimitASSpec(t *testing.T, rootfs string) *specs.Spec {
	s := spec(t, rootfs, "ulimit -v; ulimit -H -v")
	s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_AS", Hard: 1 << 30, Soft: 1 << 30})
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls:      []specs.LinuxSyscall{{Names: strings.Fields(seccompAllowed), Action: specs.ActAllow}},
	}
	return s
}

// runcOutOfAddressSpace excuses runc when its own init, a Go program that
// reserves much of its address space at start, cannot build the seccomp
// filter under the 1 GiB RLIMIT_AS (runc sets the limits first): "unable
// to init seccomp: error adding seccomp filter rule for syscall pipe2:
// cannot allocate memory", some runs and not others. That is runc's luck
// on the host, not an answer about the bundle.
func runcOutOfAddressSpace(r result) string {
	if r.code != 0 && strings.Contains(r.stderr, "cannot allocate memory") {
		return "runc ran out of address space under the container's RLIMIT_AS before the container ran"
	}
	return ""
}

// seccompAllowed is what busybox sh and the runtimes' init need after the
// filter is loaded, and more, with the 32-bit names that libseccomp
// resolves for the x86 architecture.
const seccompAllowed = `access arch_prctl brk capget capset chdir close close_range clone clone3
dup dup2 dup3 execve execveat exit exit_group faccessat faccessat2 fchdir fcntl fcntl64 fstat
fstat64 fstatat64 fstatfs fstatfs64 futex getcwd getdents getdents64 getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid getppid getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit getsid gettid gettimeofday getuid getuid32
ioctl kill lseek lstat lstat64 madvise mmap mmap2 mprotect mremap munmap nanosleep newfstatat
open openat openat2 pipe pipe2 poll ppoll prctl pread64 prlimit64 read readlink readlinkat
readv restart_syscall rseq rt_sigaction rt_sigprocmask rt_sigreturn sched_getaffinity
sched_yield select set_robust_list set_tid_address setgid setgid32 setgroups setgroups32
setresgid setresgid32 setresuid setresuid32 setrlimit setuid setuid32 sigaltstack stat stat64
statfs statfs64 statx tgkill tkill ugetrlimit umask uname vfork wait4 waitid write writev`

// bindDataSpec bind-mounts a volume with file system options, which runc
// 1.1 passes to mount(2) and the kernel ignores for a bind mount.
func bindDataSpec(t *testing.T, rootfs string) *specs.Spec {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in-volume"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec(t, rootfs, "grep -c ' /mnt/vol ' /proc/self/mounts; ls /mnt/vol")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/vol", Type: "bind", Source: vol, Options: []string{"bind", "mode=755", "size=1k"}})
	return s
}

// mountOrderSpec lists tmpfs mounts, then bind mounts of a host directory
// with every propagation option (and file system options, which a bind
// mount ignores), then mounts that land inside earlier ones: a bind mount
// inside a tmpfs and a tmpfs inside a bind mount. The runtime spec wants
// them made in the listed order, which /proc/self/mountinfo shows; made in
// another, the later ones would be hidden or land elsewhere.
func mountOrderSpec(t *testing.T, rootfs string) *specs.Spec {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in-volume"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := spec(t, rootfs, `awk '$5 ~ "^/mnt/order/" { print $5 }' /proc/self/mountinfo; ls /mnt/order/t1/in /mnt/order/b-rbind-rshared/tmp`)
	for _, name := range []string{"t1", "t2", "t3"} {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/order/" + name, Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755", "size=1k"}})
	}
	for _, prop := range []string{"shared", "slave", "private", "unbindable"} {
		for _, bind := range []string{"bind", "rbind"} {
			p := prop
			if bind == "rbind" {
				p = "r" + prop
			}
			s.Mounts = append(s.Mounts, specs.Mount{
				Destination: "/mnt/order/b-" + bind + "-" + p, Type: "bind", Source: vol,
				Options: []string{bind, p, "mode=755", "size=1k"},
			})
		}
	}
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/mnt/order/t1/in", Type: "bind", Source: vol, Options: []string{"rbind", "rprivate"}},
		specs.Mount{Destination: "/mnt/order/b-rbind-rshared/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1k"}},
	)
	return s
}

// mountOrderWant is what mountOrderSpec's container prints: its mounts in
// the listed order, and the files of the volume under the tmpfs t1.
const mountOrderWant = `/mnt/order/t1
/mnt/order/t2
/mnt/order/t3
/mnt/order/b-bind-shared
/mnt/order/b-rbind-rshared
/mnt/order/b-bind-slave
/mnt/order/b-rbind-rslave
/mnt/order/b-bind-private
/mnt/order/b-rbind-rprivate
/mnt/order/b-bind-unbindable
/mnt/order/b-rbind-runbindable
/mnt/order/t1/in
/mnt/order/b-rbind-rshared/tmp
/mnt/order/b-rbind-rshared/tmp:

/mnt/order/t1/in:
in-volume
tmp
`

// submountSpec bind-mounts a host directory that holds a tmpfs mount with
// the option ro (issue 25): "rro", recursive read-only, which the features
// document offers and CRI's recursiveReadOnly uses, makes neither the
// directory nor the tmpfs writable; "ro" leaves the tmpfs writable. The
// tmpfs is seen either way.
func submountSpec(ro string) func(t *testing.T, rootfs string) *specs.Spec {
	return func(t *testing.T, rootfs string) *specs.Spec {
		vol := t.TempDir()
		sub := testutil.TmpfsSubmount(t, vol, "sub")
		if err := os.WriteFile(filepath.Join(sub, "in-sub"), []byte("in sub\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := spec(t, rootfs, `cat /mnt/vol/sub/in-sub
touch /mnt/vol/new 2>/dev/null && echo top writable || echo top read-only
touch /mnt/vol/sub/new 2>/dev/null && echo sub writable || echo sub read-only`)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/vol", Type: "bind", Source: vol, Options: []string{"rbind", ro}})
		return s
	}
}

// fifoSpec asks for FIFOs in linux.devices: one with device numbers (8:666,
// which a FIFO does not have: runc ignores them), mode and owner, and one
// with neither; withDevTmpfs as in deviceSpec. The container writes through
// the second.
func fifoSpec(withDevTmpfs bool) func(t *testing.T, rootfs string) *specs.Spec {
	return func(t *testing.T, rootfs string) *specs.Spec {
		s := spec(t, rootfs, "stat -c '%t:%T %F %a %u:%g' /dev/test3 /dev/fifo0; echo through > /dev/fifo0 & cat /dev/fifo0; wait")
		if !withDevTmpfs {
			var kept []specs.Mount
			for _, m := range s.Mounts {
				if m.Destination != "/dev" {
					kept = append(kept, m)
				}
			}
			s.Mounts = kept
		}
		mode := os.FileMode(0o640)
		one, two := uint32(1), uint32(2)
		s.Linux.Devices = append(s.Linux.Devices,
			specs.LinuxDevice{Path: "/dev/test3", Type: "p", Major: 8, Minor: 666, FileMode: &mode, UID: &one, GID: &two},
			specs.LinuxDevice{Path: "/dev/fifo0", Type: "p"},
		)
		return s
	}
}

// fifoWant is what fifoSpec's container prints.
const fifoWant = "0:0 fifo 640 1:2\n0:0 fifo 666 0:0\nthrough\n"

// propagationSeen is what the container prints when the host's mount
// under its volume reached it.
const propagationSeen = "from the host\n"

// TestPropagation is the CRI validation suite's "Container Mount
// Propagation" (issue 25) under runc and under cocoon with each shared
// file system, on the same bundle: a volume whose source is a shared
// mount (as kubelet's volumes are), then, once the container runs, a
// tmpfs mounted on the host under the source, with a file in it, and a
// tmpfs mounted in the container under the volume. rslave, rshared and no
// option at all (runc's rslave root) see the host's mount, rprivate does
// not, as with runc. The container's mount reaches the host under runc
// with rshared only, and never under cocoon: it cannot cross the VM (the
// README says so). Deleting the container leaves nothing mounted of the
// source or the sandbox, and unmounts nothing of the host's.
func TestPropagation(t *testing.T) {
	rts := runtimes(t)
	virtioFS := virtioFSConfig(t)
	for _, tc := range []struct {
		name, option, rootfs string
		seen                 bool
		// runcHostSees: the container's mount reaches the host (runc).
		runcHostSees bool
	}{
		// rootfsPropagation as containerd's CRI sets it for each.
		{"rslave", "rslave", "rslave", true, false},
		{"rshared", "rshared", "rshared", true, true},
		{"rprivate", "rprivate", "", false, false},
		{"none", "", "", true, false},
	} {
		for _, r := range rts {
			for _, fs := range []string{"9p", "virtio-fs"} {
				if r.name == "runc" && fs != "9p" {
					continue
				}
				name := fmt.Sprintf("%s/%s", tc.name, r.name)
				args := r.args
				if r.name == "cocoon" {
					name += "/" + fs
					if fs == "virtio-fs" {
						args = func(a ...string) []string {
							return append([]string{"--config", virtioFS, "--root", e.root}, a...)
						}
					}
				}
				t.Run(name, func(t *testing.T) {
					vol := sharedVolume(t)
					s := spec(t, privateRootfs(t), "sleep 600")
					options := []string{"rbind", "rw"}
					if tc.option != "" {
						options = append(options, tc.option)
					}
					s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/vol", Type: "bind", Source: vol, Options: options})
					s.Linux.RootfsPropagation = tc.rootfs
					// To mount in the container, as the suite's privileged
					// container does.
					c := s.Process.Capabilities
					c.Bounding = append(c.Bounding, "CAP_SYS_ADMIN")
					c.Effective = append(c.Effective, "CAP_SYS_ADMIN")
					c.Permitted = append(c.Permitted, "CAP_SYS_ADMIN")
					id := "prop-" + strings.ReplaceAll(strings.ToLower(name), "/", "-")
					if res := run(t, cmdOpts{}, r.bin, args("run", "--detach", "--bundle", writeBundle(t, s), id)...); res.code != 0 {
						t.Fatalf("run --detach: %v", res)
					}
					deleted := false
					t.Cleanup(func() {
						if !deleted {
							run(t, cmdOpts{}, r.bin, args("delete", "--force", id)...)
						}
					})

					// The host's mount, made after the container started.
					mnt := filepath.Join(vol, "mnt")
					if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(mnt, "file"), []byte(propagationSeen), 0o644); err != nil {
						t.Fatal(err)
					}
					// virtio-fs's guest may hold a directory entry for a
					// second (cache=auto); a mount that does not come
					// prints nothing after the wait.
					res := run(t, cmdOpts{}, r.bin, args("exec", id, "sh", "-c",
						"for i in $(seq 30); do cat /mnt/vol/mnt/file 2>/dev/null && exit; sleep 0.1; done")...)
					if seen := res.stdout == propagationSeen; res.code != 0 || seen != tc.seen {
						t.Errorf("the host's mount in the container: %v; want seen %v", res, tc.seen)
					}

					// The container's mount.
					res = run(t, cmdOpts{}, r.bin, args("exec", id, "sh", "-c",
						"mkdir /mnt/vol/ctr && mount -t tmpfs tmpfs /mnt/vol/ctr && echo x > /mnt/vol/ctr/x")...)
					if res.code != 0 {
						t.Fatalf("mounting in the container: %v", res)
					}
					entries, err := os.ReadDir(filepath.Join(vol, "ctr"))
					if err != nil {
						t.Fatal(err)
					}
					if want := tc.runcHostSees && r.name == "runc"; (len(entries) > 0) != want {
						t.Errorf("the container's mount on the host: %d entries, want seen %v", len(entries), want)
					}

					if res := run(t, cmdOpts{}, r.bin, args("delete", "--force", id)...); res.code != 0 {
						t.Fatalf("delete --force: %v", res)
					}
					deleted = true
					wantLeft := []string{vol, mnt}
					if tc.runcHostSees && r.name == "runc" {
						wantLeft = append(wantLeft, filepath.Join(vol, "ctr"))
					}
					if left := testutil.MustMountsUnder(t, vol); strings.Join(left, " ") != strings.Join(wantLeft, " ") {
						t.Errorf("mounted under the source after delete: %q, want %q (the host's own)", left, wantLeft)
					}
					if left := testutil.MustMountsUnder(t, filepath.Join(sandboxRoot(), id)); len(left) > 0 {
						t.Errorf("mounted under the sandbox after delete: %q", left)
					}
					if b, err := os.ReadFile(filepath.Join(mnt, "file")); err != nil || string(b) != propagationSeen {
						t.Errorf("the host's mount after delete: %q, %v", b, err)
					}
				})
			}
		}
	}
}

// sharedVolume makes a volume source as kubelet's are: a directory with
// an empty mnt/ in it, bind-mounted on itself and shared, unmounted with
// whatever is under it when the test ends.
func sharedVolume(t *testing.T) string {
	t.Helper()
	vol := t.TempDir()
	if err := os.Mkdir(filepath.Join(vol, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(vol, vol, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(vol, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", vol, err)
		}
	})
	if err := unix.Mount("", vol, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	return vol
}
