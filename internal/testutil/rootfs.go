// Package testutil holds helpers shared by cocoon's integration tests.
package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BusyboxPath is Debian's busybox-static (packaging/deps.sh installs it).
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs makes a busybox root file system at dir from the host's
// static busybox (nothing is downloaded): /bin/busybox with a symbolic link
// per applet, /etc/passwd and /etc/group with a user 1000, and the usual
// empty mount points.
func BusyboxRootfs(dir string) error {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := copyFile(BusyboxPath, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("copying busybox (is busybox-static installed?): %w", err)
	}
	list, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("listing busybox applets: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(list)))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || name == "busybox" || strings.Contains(name, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", name)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nuser:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Virtiofsd returns a virtio-fs daemon for the suites' virtio-fs tests, and
// the QEMU to use it with ("" for the configured one): the installed daemon
// (the Rust virtiofsd package's, or a QEMU 7.2's own) with the system's
// QEMU, else QEMU 7.2's, unpacked under $COCOON_CACHE by packaging/deps.sh
// (Debian 12 has no package of it beside QEMU 10), with that QEMU 7.2: the C
// daemon that QEMU 8.0 dropped corrupts what a QEMU 10 guest reads through
// it (programs die of illegal instructions).
func Virtiofsd() (daemon, qemu string, err error) {
	for _, p := range []string{"/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"} {
		if _, err := os.Stat(p); err == nil {
			return p, "", nil
		}
	}
	daemon = filepath.Join(CacheDir(), "qemu-7.2/usr/lib/qemu/virtiofsd")
	qemu = filepath.Join(CacheDir(), "qemu-7.2/usr/bin/qemu-system-x86_64")
	for _, p := range []string{daemon, qemu} {
		if _, err := os.Stat(p); err != nil {
			return "", "", errors.New("no virtiofsd: make deps (packaging/deps.sh) unpacks QEMU 7.2's")
		}
	}
	return daemon, qemu, nil
}
