//go:build integration

package integration

import (
	"bufio"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// busyboxPath is Debian's busybox-static (packaging/deps.sh installs it).
const busyboxPath = "/bin/busybox"

// dataSize is the size of /data in the test rootfs, the payload of the
// stdout throughput test.
const dataSize = 64 << 20

// testRootfs is a busybox root file system built from the host's static
// busybox; nothing is downloaded.
type testRootfs struct {
	dir     string
	dataSum [sha256.Size]byte // of /data
}

// buildRootfs makes dir/rootfs: /bin/busybox with a symbolic link per
// applet (what `busybox --install -s` makes), /etc/passwd and /etc/group
// with a user 1000, and /data: dataSize pseudo-random bytes.
func buildRootfs(t *testing.T, dir string) testRootfs {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{root, filepath.Join(root, "tmp")} {
		mode := os.FileMode(0o755)
		if strings.HasSuffix(d, "tmp") {
			mode = 0o777 | os.ModeSticky
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, busyboxPath, filepath.Join(root, "bin", "busybox"), 0o755)
	list, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		t.Fatalf("listing busybox applets (is busybox-static installed?): %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(list)))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:\nusers:x:100:\nuser:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	f, err := os.Create(filepath.Join(root, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{'c', 'o', 'c', 'o', 'o', 'n'})
	if _, err := io.CopyN(io.MultiWriter(f, h), src, dataSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r := testRootfs{dir: root}
	copy(r.dataSum[:], h.Sum(nil))
	return r
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
