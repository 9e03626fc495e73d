package testutil

import (
	"os"
	"path/filepath"
	"strings"
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

// MountsUnder lists the mount points at or under dir that this process
// sees, in mountinfo's order.
func MountsUnder(dir string) ([]string, error) {
	return MountsUnderOf("self", dir)
}

// MountsUnderOf lists the mount points at or under dir that process pid
// ("self", or a number) sees, in its mount namespace, in mountinfo's order.
func MountsUnderOf(pid, dir string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join("/proc", pid, "mountinfo"))
	if err != nil {
		return nil, err
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			found = append(found, fields[4])
		}
	}
	return found, nil
}

// MustMountsUnder is MountsUnder that fails the test on an error.
func MustMountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	mps, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	return mps
}
