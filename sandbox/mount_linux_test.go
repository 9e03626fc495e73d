package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/oci"
)

func TestUnescapeMountPoint(t *testing.T) {
	tests := map[string]string{
		`/run/cocoon/plain`:        "/run/cocoon/plain",
		`/tmp/with\040space`:       "/tmp/with space",
		`/tmp/tab\011and\012nl`:    "/tmp/tab\tand\nnl",
		`/tmp/back\134slash`:       `/tmp/back\slash`,
		`/tmp/not\08octal`:         `/tmp/not\08octal`,
		`/tmp/trailing\04`:         `/tmp/trailing\04`,
		`/tmp/\040\040two-leading`: "/tmp/  two-leading",
		`/tmp/end-with-escape\040`: "/tmp/end-with-escape ",
	}
	for in, want := range tests {
		if got := unescapeMountPoint(in); got != want {
			t.Errorf("unescapeMountPoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnmountAllOddNames mounts under a directory whose name needs
// escaping in mountinfo, nested, and checks that everything is found,
// unmounted and removed without touching the sources.
func TestUnmountAllOddNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for bind mounts")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "odd name\twith tab")
	outer := oci.Bind{Source: src, Target: filepath.Join(dir, "a b")}
	inner := oci.Bind{Source: src, Target: filepath.Join(dir, "a b", "inner")}
	for _, b := range []oci.Bind{outer, inner} {
		if err := bindMount(nil, b); err != nil {
			t.Fatal(err)
		}
	}
	mps, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 2 || mps[0] != inner.Target || mps[1] != outer.Target {
		t.Fatalf("mounts under %q: %q", dir, mps)
	}
	if err := removeUnmounted(nil, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dir, err)
	}
	if got, err := os.ReadFile(filepath.Join(src, "keep")); err != nil || string(got) != "x" {
		t.Errorf("source damaged: %q, %v", got, err)
	}
	if err := removeUnmounted(nil, dir); err != nil {
		t.Errorf("removing a missing directory: %v", err)
	}
}

// TestBindMountFlags: every bind into the share is nodev and nosuid, a
// read-only one is read-only from the start (its top; every mount of the
// tree when recursive), and sealReadOnly makes a marked one read-only
// later, for root too.
func TestBindMountFlags(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts")
	}
	src, share := t.TempDir(), t.TempDir()
	testutil.TmpfsSubmount(t, src, "sub")
	binds := []oci.Bind{
		{Source: src, Target: filepath.Join(share, "c", "rootfs"), SealReadOnly: true},
		{Source: src, Target: filepath.Join(share, "c", "mounts", "0"), ReadOnly: true},
		{Source: src, Target: filepath.Join(share, "c", "mounts", "1")},
		{Source: src, Target: filepath.Join(share, "c", "mounts", "2"), ReadOnly: true, Recursive: true},
	}
	t.Cleanup(func() {
		if err := removeUnmounted(nil, filepath.Join(share, "c")); err != nil {
			t.Error(err)
		}
	})
	for _, b := range binds {
		if err := bindMount(nil, b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(target string, wantRO bool) {
		t.Helper()
		var st unix.Statfs_t
		if err := unix.Statfs(target, &st); err != nil {
			t.Fatal(err)
		}
		if st.Flags&unix.ST_NODEV == 0 || st.Flags&unix.ST_NOSUID == 0 {
			t.Errorf("%s: flags %#x lack nodev or nosuid", target, st.Flags)
		}
		err := os.WriteFile(filepath.Join(target, "w"), nil, 0o600)
		if ro := errors.Is(err, unix.EROFS); ro != wantRO {
			t.Errorf("%s: writing: %v, want read-only %v", target, err, wantRO)
		}
		os.Remove(filepath.Join(target, "w"))
	}
	check(binds[0].Target, false)
	check(binds[1].Target, true)
	check(filepath.Join(binds[1].Target, "sub"), false)
	check(binds[2].Target, false)
	check(binds[3].Target, true)
	check(filepath.Join(binds[3].Target, "sub"), true)
	if err := sealReadOnly(nil, binds); err != nil {
		t.Fatal(err)
	}
	check(binds[0].Target, true)
	check(filepath.Join(binds[0].Target, "sub"), true)
	check(binds[2].Target, false)
	check(filepath.Join(binds[2].Target, "sub"), false)
}

// TestBindMountPropagation: a host mount made under a shared source after
// the binds reaches the bind that receives the host's mounts (FromHost)
// and not the private one, in the share's mount namespace and (virtio-fs,
// whose share is shared) in a namespace made from it like virtiofsd's
// before the binds; removing the binds unmounts nothing on the source.
func TestBindMountPropagation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts")
	}
	for name, virtioFS := range map[string]bool{"9p": false, "virtio-fs": true} {
		t.Run(name, func(t *testing.T) {
			src := sharedMount(t, t.TempDir())
			share := t.TempDir()
			ns := shareNamespace(t)
			if err := shareMount(ns, share, virtioFS); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := removeUnmounted(ns, share); err != nil {
					t.Error(err)
				}
			})
			// The daemon's view: its own mount namespace, slave of the
			// share's, made before the binds as virtiofsd's is.
			var daemonRoot string
			if virtioFS {
				daemonRoot = slaveNamespace(t, ns)
			}
			slave := oci.Bind{Source: src, Target: filepath.Join(share, "c", "mounts", "0"), FromHost: true}
			private := oci.Bind{Source: src, Target: filepath.Join(share, "c", "mounts", "1")}
			for _, b := range []oci.Bind{slave, private} {
				if err := bindMount(ns, b); err != nil {
					t.Fatal(err)
				}
			}
			sub := testutil.TmpfsSubmount(t, src, "sub")
			if err := os.WriteFile(filepath.Join(sub, "file"), []byte("on the host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			seen := func(b oci.Bind) (inShare, inDaemon bool) {
				inShare = statIn(ns, filepath.Join(b.Target, "sub", "file")) == nil
				if daemonRoot != "" {
					_, err := os.Stat(filepath.Join(daemonRoot, b.Target, "sub", "file"))
					inDaemon = err == nil
				}
				return inShare, inDaemon
			}
			if inShare, inDaemon := seen(slave); !inShare || (virtioFS && !inDaemon) {
				t.Errorf("the slave bind does not see the host's new mount: in the share's namespace %v, the daemon's %v", inShare, inDaemon)
			}
			if inShare, inDaemon := seen(private); inShare || inDaemon {
				t.Errorf("the private bind sees the host's new mount: in the share's namespace %v, the daemon's %v", inShare, inDaemon)
			}
			if err := removeUnmounted(ns, filepath.Join(share, "c")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(sub, "file")); err != nil {
				t.Errorf("the host's mount under the source went with the binds: %v", err)
			}
			if _, inDaemon := seen(slave); inDaemon {
				t.Error("the bind is left in the daemon's namespace")
			}
		})
	}
}

// TestShareNamespace: the share's mounts are in its own namespace, not the
// host's, and they behave as runc's copies in a container's namespace do:
// a read-only bind of a directory that holds a tmpfs leaves the tmpfs
// writable, and the host can unmount the tmpfs and remove the directory
// while the bind is there (EBUSY were the copy in the host's namespace),
// which takes the copy along. Closing the namespace leaves nothing.
func TestShareNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts")
	}
	src := filepath.Join(t.TempDir(), "volume")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	tmpfs := filepath.Join(src, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", tmpfs, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(tmpfs, unix.MNT_DETACH) })
	share := t.TempDir()
	ns := shareNamespace(t)
	if err := shareMount(ns, share, false); err != nil {
		t.Fatal(err)
	}
	b := oci.Bind{Source: src, Target: filepath.Join(share, "c", "mounts", "0"), ReadOnly: true}
	if err := bindMount(ns, b); err != nil {
		t.Fatal(err)
	}
	if mps, err := mountsUnder(share); err != nil || len(mps) > 0 {
		t.Errorf("the host's namespace sees the share's mounts: %q, %v", mps, err)
	}
	write := func(dir string) error {
		return mountns.Do(ns, func() error { return os.WriteFile(filepath.Join(dir, "w"), nil, 0o600) })
	}
	if err := write(b.Target); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing the read-only bind: %v, want EROFS", err)
	}
	if err := write(filepath.Join(b.Target, "tmpfs")); err != nil {
		t.Errorf("writing the tmpfs under the read-only bind: %v, want it writable (non-recursive)", err)
	}
	if err := unix.Unmount(tmpfs, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatalf("removing the volume's directory on the host while the share holds it: %v", err)
	}
	if err := statIn(ns, filepath.Join(b.Target, "tmpfs", "w")); err == nil {
		t.Error("the share's copy of the removed directory's tmpfs is still there")
	}
	if err := removeUnmounted(ns, filepath.Join(share, "c")); err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := mountns.Do(ns, func() (err error) { left, err = mountsUnder(share); return err }); err != nil || len(left) != 1 {
		t.Errorf("the share's namespace holds %q (%v), want the share alone", left, err)
	}
}

// shareNamespace makes a share's mount namespace for the test.
func shareNamespace(t *testing.T) *os.File {
	t.Helper()
	ns, err := mountns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// statIn stats path in mount namespace ns.
func statIn(ns *os.File, path string) error {
	return mountns.Do(ns, func() error {
		_, err := os.Stat(path)
		return err
	})
}

// sharedMount makes dir a shared mount of its own, as kubelet's volumes
// are, until the test ends.
func sharedMount(t *testing.T, dir string) string {
	t.Helper()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// slaveNamespace starts a process in a mount namespace of its own whose
// mounts are slaves of ns's, as virtiofsd's (sandbox=namespace), and
// returns the root of its view (/proc/PID/root).
func slaveNamespace(t *testing.T, ns *os.File) string {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "sleep", "600")
	if err := mountns.Do(ns, cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	nsLink := fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// unshare has made the namespace once it runs sleep.
		ns, _ := os.Readlink(nsLink)
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		if ns != "" && ns != own && strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare made no mount namespace (%s)", ns)
		}
	}
	return fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)
}
