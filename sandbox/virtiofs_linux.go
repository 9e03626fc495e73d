package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// Files of the virtio-fs daemon in a sandbox directory.
const (
	virtiofsdSocket = "virtiofsd.sock"
	virtiofsdLog    = "virtiofsd.log"
)

// sharedFSVirtioFS is config.Hypervisor.SharedFS for virtio-fs.
const sharedFSVirtioFS = "virtio-fs"

// virtiofsdArgs are the daemon's options for the share dir, serving socket.
//
//   - sandbox=namespace (the default, spelled out): the daemon pivots into
//     the share in its own mount, PID and network namespaces, its mounts
//     slaves of the host's. It does so once QEMU has connected, and the
//     containers' root file systems and volumes are bind-mounted under the
//     share later still: they reach the daemon only because the share is a
//     shared mount (see shareMount).
//   - cache=auto: the guest caches attributes and directory entries for a
//     second and keeps a file's pages while its mtime holds, so that the
//     host's changes to a volume (docker cp, a file written on the host)
//     show in the guest; cache=always would hide them.
//   - announce_submounts: each bind mount under the share is its own file
//     system in the guest, with its own device number, so inode numbers
//     from different host file systems never collide (9p's multidevs=remap).
//   - no_posix_lock, no_flock: locks stay in the guest (like 9p's).
//   - xattr: file capabilities (setcap'ed binaries) and overlay-style
//     attributes of the images pass through.
func virtiofsdArgs(dir, socket string) []string {
	return []string{
		"--socket-path=" + socket,
		"-o", "source=" + dir,
		"-o", "sandbox=namespace",
		"-o", "cache=auto",
		"-o", "announce_submounts",
		"-o", "no_posix_lock",
		"-o", "no_flock",
		"-o", "xattr",
		"-o", "log_level=warn",
	}
}

// virtioFS reports whether the sandbox shares its directory with virtio-fs.
func (s *Sandbox) virtioFS() bool { return s.state.SharedFS == sharedFSVirtioFS }

// virtiofsdSocketPath is where the sandbox's virtio-fs daemon listens.
func (s *Sandbox) virtiofsdSocketPath() string { return filepath.Join(s.dir, virtiofsdSocket) }

// startVirtiofsd starts the virtio-fs daemon for the share, detached like
// QEMU, and returns once its socket is there, so that QEMU can connect. It
// records the daemon's PID in the state before waiting, so that a failed
// create stops it. The daemon serves one connection: it exits when QEMU
// disconnects, that is when the VM is gone.
func (s *Sandbox) startVirtiofsd(ctx context.Context) error {
	path := s.m.Config.Hypervisor.Virtiofsd
	socket := s.virtiofsdSocketPath()
	logf, err := os.OpenFile(filepath.Join(s.dir, virtiofsdLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("starting virtiofsd: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(path, virtiofsdArgs(s.SharedDir(), socket)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own session: it outlives this process, which may be a short-lived
	// runtime CLI, and no terminal signal reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// In the share's mount namespace, where the share's mounts are: the
	// daemon makes its own from it.
	if err := mountns.Do(s.mntns, func() error { return s.startPlaced(cmd) }); err != nil {
		return fmt.Errorf("starting virtiofsd %s: %w", path, err)
	}
	s.state.VirtiofsdPID = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := s.save(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, s.m.Scaled(time.Second))
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// The daemon creates it with the umask's mode: only the
			// owner (QEMU, as root) may connect.
			if err := os.Chmod(socket, 0o600); err != nil {
				return fmt.Errorf("virtiofsd: restricting socket: %w", err)
			}
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, virtiofsdLog))
			return fmt.Errorf("virtiofsd exited before listening (%v): %s", err, lastLine(log))
		case <-wctx.Done():
			return fmt.Errorf("virtiofsd: no socket %s: %w", socket, wctx.Err())
		case <-tick.C:
		}
	}
}

// stopVirtiofsd waits briefly for the daemon to exit after QEMU (it does so
// by itself once QEMU disconnects), then terminates it: a daemon whose QEMU
// never connected waits forever. The socket goes with the sandbox directory.
func (s *Sandbox) stopVirtiofsd(ctx context.Context) error {
	pid := s.state.VirtiofsdPID
	if pid <= 0 || !s.isVirtiofsd(pid) {
		return nil
	}
	return s.stopHelper(ctx, pid, "virtiofsd")
}

// isVirtiofsd guards against a recycled PID: the process must still be the
// daemon of this sandbox's socket.
func (s *Sandbox) isVirtiofsd(pid int) bool {
	cmdline, err := proc.Cmdline(pid)
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(cmdline), "--socket-path="+s.virtiofsdSocketPath())
}

// shareMount prepares the share dir in the share's mount namespace ns,
// where it must be a mount of its own: private for 9p; for virtio-fs
// shared in a peer group of its own, so that the containers' binds made
// under it later propagate into the daemon's mount namespace (made from
// ns), and to nothing that existed before the share.
func shareMount(ns *os.File, dir string, virtioFS bool) error {
	return mountns.Do(ns, func() error {
		if err := privateShare(dir); err != nil {
			return err
		}
		if !virtioFS {
			return nil
		}
		if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
			return fmt.Errorf("making share %s shared: %w", dir, err)
		}
		return nil
	})
}

// lastLine is the last non-empty line of b, for an error message.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if l := lines[len(lines)-1]; l != "" {
		return l
	}
	return "no output"
}
