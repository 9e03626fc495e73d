package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

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
