// Package containertest builds what tests of containers need: a busybox
// root file system made from the host's static busybox (Debian's
// busybox-static), never downloaded, and runc's default spec for it.
package containertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Busybox is the static busybox the root file systems are made from.
const Busybox = "/bin/busybox"

// BuildRootfs makes a busybox root file system at root: the static binary
// and a symbolic link per applet in /bin, the directories runc's default
// spec mounts on, and /etc/passwd and /etc/group with root, user (1000),
// extra (2000) and more (3000).
//
// It runs busybox --list and waits for it: call it before a reaper that
// owns the test process's waits starts.
func BuildRootfs(root string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "vol", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("building rootfs: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return fmt.Errorf("building rootfs: %w", err)
	}
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		return fmt.Errorf("building rootfs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		return fmt.Errorf("building rootfs: %w", err)
	}
	out, err := exec.Command(Busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("building rootfs: listing applets: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			return fmt.Errorf("building rootfs: %w", err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nextra:x:2000:\nmore:x:3000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("building rootfs: %w", err)
		}
	}
	return nil
}

// Spec returns runc's default spec (what runc spec writes) for the rootfs
// at root, running args without a terminal, with hostname "cocoon".
func Spec(root string, args ...string) *specs.Spec {
	s := specconv.Example()
	s.Root = &specs.Root{Path: root}
	s.Process.Terminal = false
	s.Process.Args = args
	s.Hostname = "cocoon"
	return s
}
