package mountns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNamespace: a tmpfs mounted in a new namespace is seen there, by a
// process started there too, and not in the caller's namespace; when the
// last holder lets go, the mount goes with the namespace.
func TestNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount namespaces")
	}
	dir := t.TempDir()
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	own, _ := os.Readlink("/proc/self/ns/mnt")
	var inside string
	err = Do(ns, func() error {
		inside, _ = os.Readlink("/proc/thread-self/ns/mnt")
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "marker"), []byte("inside"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if inside == "" || inside == own {
		t.Fatalf("Do ran in namespace %q, the caller's is %q", inside, own)
	}
	if _, err := os.Stat(filepath.Join(dir, "marker")); !os.IsNotExist(err) {
		t.Errorf("the caller's namespace sees the namespace's tmpfs: %v", err)
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); self != own {
		t.Errorf("the process's first thread moved to %s", self)
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), " "+dir+" ") {
		t.Errorf("the caller's mountinfo lists %s", dir)
	}
	var got []byte
	if err := Do(ns, func() (err error) { got, err = os.ReadFile(filepath.Join(dir, "marker")); return err }); err != nil || string(got) != "inside" {
		t.Errorf("a second Do reads %q, %v", got, err)
	}
}
