package testutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TmpfsSubmount mounts a small tmpfs on dir/name, a new directory, and
// unmounts it when the test ends (an error if it cannot: something still
// holds it). It returns the mount point. The caller is root.
func TmpfsSubmount(t *testing.T, dir, name string) string {
	t.Helper()
	sub := filepath.Join(dir, name)
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", sub, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(sub, 0); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v", sub, err)
		}
	})
	return sub
}
