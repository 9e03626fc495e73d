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
		if err := bindMount(b); err != nil {
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
	if err := removeUnmounted(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dir, err)
	}
	if got, err := os.ReadFile(filepath.Join(src, "keep")); err != nil || string(got) != "x" {
		t.Errorf("source damaged: %q, %v", got, err)
	}
	if err := removeUnmounted(dir); err != nil {
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
		if err := removeUnmounted(filepath.Join(share, "c")); err != nil {
			t.Error(err)
		}
	})
	for _, b := range binds {
		if err := bindMount(b); err != nil {
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
	if err := sealReadOnly(binds); err != nil {
		t.Fatal(err)
	}
	check(binds[0].Target, true)
	check(filepath.Join(binds[0].Target, "sub"), true)
	check(binds[2].Target, false)
	check(filepath.Join(binds[2].Target, "sub"), false)
}

// TestBindMountPropagation: a host mount made under a shared source after
// the binds reaches the bind that receives the host's mounts (FromHost)
// and not the private one, in the host's namespace and (virtio-fs, whose
// share is shared) in a namespace made like virtiofsd's before the binds;
// removing the binds unmounts nothing on the source.
func TestBindMountPropagation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts")
	}
	for name, virtioFS := range map[string]bool{"9p": false, "virtio-fs": true} {
		t.Run(name, func(t *testing.T) {
			src := sharedMount(t, t.TempDir())
			share := t.TempDir()
			if err := shareMount(share, virtioFS); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := removeUnmounted(share); err != nil {
					t.Error(err)
				}
			})
			// The daemon's view: its own mount namespace, slave of the
			// host's, made before the binds as virtiofsd's is.
			daemonRoot := "/"
			if virtioFS {
				daemonRoot = slaveNamespace(t)
			}
			slave := oci.Bind{Source: src, Target: filepath.Join(share, "c", "mounts", "0"), FromHost: true}
			private := oci.Bind{Source: src, Target: filepath.Join(share, "c", "mounts", "1")}
			for _, b := range []oci.Bind{slave, private} {
				if err := bindMount(b); err != nil {
					t.Fatal(err)
				}
			}
			sub := testutil.TmpfsSubmount(t, src, "sub")
			if err := os.WriteFile(filepath.Join(sub, "file"), []byte("on the host\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			seen := func(root string, b oci.Bind) bool {
				_, err := os.Stat(filepath.Join(root, b.Target, "sub", "file"))
				return err == nil
			}
			for _, root := range []string{"/", daemonRoot} {
				if !seen(root, slave) {
					t.Errorf("the slave bind does not see the host's new mount (root %s)", root)
				}
				if seen(root, private) {
					t.Errorf("the private bind sees the host's new mount (root %s)", root)
				}
			}
			if err := removeUnmounted(filepath.Join(share, "c")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(sub, "file")); err != nil {
				t.Errorf("the host's mount under the source went with the binds: %v", err)
			}
			if mps, err := mountsUnder(filepath.Join(share, "c")); err != nil || len(mps) > 0 {
				t.Errorf("left mounted: %q, %v", mps, err)
			}
			if virtioFS && seen(daemonRoot, slave) {
				t.Error("the bind is left in the daemon's namespace")
			}
		})
	}
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
// mounts are slaves of this one's, as virtiofsd's (sandbox=namespace), and
// returns the root of its view (/proc/PID/root).
func slaveNamespace(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "sleep", "600")
	if err := cmd.Start(); err != nil {
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
