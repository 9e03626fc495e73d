package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
)

// TestOwnProc starts the relay as cocoon-runtime does, as PID 1 of a PID
// namespace and in a mount namespace of its own with --own-proc: the /proc
// of its mount namespace (what podman top reads through the container PID)
// lists the relay alone, the host's /proc is untouched, and the relay
// still forwards the signals sent to its PID on the host and exits with
// its process's status.
func TestOwnProc(t *testing.T) {
	sb := newSandbox(t)
	cmd, out, s := startOwnRelay(t, sb, "--exec", "e", "--own-proc")

	// /proc/PID/root resolves paths in the relay's mount namespace.
	root := fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)
	checkOwnProc(t, root)
	cl, err := os.ReadFile(filepath.Join(root, "proc/1/cmdline"))
	if arg0, _, _ := bytes.Cut(cl, []byte{0}); err != nil || filepath.Base(string(arg0)) != "cocoon-relay" {
		t.Errorf("PID 1 of the relay's /proc runs %q (%v), want cocoon-relay", cl, err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", os.Getpid())); err != nil {
		t.Errorf("the host's /proc lost this test: %v", err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mi), " /proc "); n != 1 {
		t.Errorf("the host's mount table has %d mounts on /proc, want 1:\n%s", n, mi)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-sb.Signals:
		if req.GetSignal() != uint32(syscall.SIGTERM) || req.GetExecId() != "e" {
			t.Errorf("SignalProcess(%v), want SIGTERM to e", req)
		}
	case <-time.After(waitTimeout):
		t.Fatal("SIGTERM not forwarded")
	}
	closeWrite(t, s[api.Stdout])
	closeWrite(t, s[api.Stderr])
	sb.Exit <- 143
	if got := exitCode(t, cmd); got != 143 {
		t.Errorf("exit code %d, want 143; output %q", got, out.String())
	}
}

// TestOwnRoot: with --root, the relay's mount namespace has the
// container's root file system as its root, with the relay's /proc on its
// /proc: what writes through /proc/PID/root (Podman's cp to a running
// container) writes into the container's files, never the host's; the
// relay still reaches its agent (every stream dials it) and exits with the
// process's status.
func TestOwnRoot(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.Mkdir(filepath.Join(rootfs, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "marker"), []byte("container\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := newSandbox(t)
	cmd, out, s := startOwnRelay(t, sb, "--exec", "e", "--own-proc", "--root", rootfs)

	root := fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)
	if b, err := os.ReadFile(filepath.Join(root, "marker")); err != nil || string(b) != "container\n" {
		t.Errorf("the relay's /marker: %q, %v; want the container's", b, err)
	}
	if err := os.WriteFile(filepath.Join(root, "copied"), []byte("in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "copied")); err != nil || string(b) != "in\n" {
		t.Errorf("a file written through the relay's root: %q, %v; want it in the container's root file system", b, err)
	}
	checkOwnProc(t, root)
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mi), rootfs) {
		t.Errorf("the host's mount table has the relay's mounts (%v):\n%s", err, mi)
	}
	closeWrite(t, s[api.Stdout])
	closeWrite(t, s[api.Stderr])
	sb.Exit <- 3
	if got := exitCode(t, cmd); got != 3 {
		t.Errorf("exit code %d, want 3; output %q", got, out.String())
	}
}

// TestOwnProcRefused: --own-proc in the caller's PID namespace, or in its
// mount namespace, fails before it mounts anything.
func TestOwnProcRefused(t *testing.T) {
	for name, flags := range map[string]uintptr{"SamePIDNS": unix.CLONE_NEWNS, "SameMountNS": unix.CLONE_NEWPID} {
		t.Run(name, func(t *testing.T) {
			sb := newSandbox(t)
			cmd := sb.relayCmd("--exec", "e", "--own-proc")
			cmd.SysProcAttr.Cloneflags = flags
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if got := exitCode(t, cmd); got != 255 || !strings.Contains(out.String(), "--own-proc") {
				t.Errorf("exit code %d, output %q; want 255 and an --own-proc error", got, out.String())
			}
		})
	}
}

// checkOwnProc checks that the /proc under root lists the relay alone.
func checkOwnProc(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "proc"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, e.Name())
		}
	}
	if !slices.Equal(pids, []string{"1"}) {
		t.Errorf("the relay's /proc lists PIDs %v, want [1]", pids)
	}
}

// startOwnRelay starts a relay of sb with args in a PID and a mount
// namespace of its own, and waits for its two streams; out collects its
// output.
func startOwnRelay(t *testing.T, sb *sandbox, args ...string) (*exec.Cmd, *bytes.Buffer, map[api.Stdio]net.Conn) {
	t.Helper()
	cmd := sb.relayCmd(args...)
	cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWPID | unix.CLONE_NEWNS
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, sb.attached(t, 2)
}
