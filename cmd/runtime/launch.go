package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/relay"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// stdioMode says where a process's stdio goes, decided before the process
// exists in the guest: its api.StdioConfig depends on it.
type stdioMode struct {
	// terminal: the process has a terminal (process.terminal).
	terminal bool
	// consoleSocket receives the pty master (terminal only).
	consoleSocket string
	// foreground: the runtime waits for the process (run and exec
	// without --detach); with a terminal and no console socket it relays
	// its own stdio to the pty master, as runc does.
	foreground bool
}

// newStdioMode checks the combination as runc does.
func newStdioMode(terminal bool, consoleSocket string, detach bool) (stdioMode, error) {
	switch {
	case consoleSocket != "" && !terminal:
		return stdioMode{}, errors.New("cannot use console socket if runc will not detach or allocate tty")
	case terminal && detach && consoleSocket == "":
		return stdioMode{}, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if consoleSocket != "" {
		abs, err := filepath.Abs(consoleSocket)
		if err != nil {
			return stdioMode{}, fmt.Errorf("console socket: %w", err)
		}
		consoleSocket = abs
	}
	return stdioMode{terminal: terminal, consoleSocket: consoleSocket, foreground: !detach}, nil
}

// stdioConfig is what the process is created with in the guest.
func (m stdioMode) stdioConfig() *api.StdioConfig {
	if m.terminal {
		return &api.StdioConfig{} // one Terminal stream
	}
	return relay.AttachedStdio(os.Stdin, os.Stdout, os.Stderr)
}

// shimProcess is a started cocoon-shim.
type shimProcess struct {
	cmd   *exec.Cmd
	pid   int
	start uint64
	// master is the pty master that a foreground terminal relays; nil
	// otherwise.
	master *os.File
}

// shimOptions names the process a shim relays and how.
type shimOptions struct {
	sb          *sandbox.Sandbox
	containerID string
	execID      string
	mode        stdioMode
	// newNetNS starts the shim in a network namespace of its own: the
	// container's host-side one, which prestart hooks (Docker's
	// libnetwork-setkey) find through the container PID.
	newNetNS bool
	// netNS, when set, is the namespace that the sandbox made for the
	// container (sandbox.Sandbox.NetNS): the shim starts in it instead of
	// a new one, and its NIC is already in the VM.
	netNS string
}

// shimPath finds cocoon-shim: next to this binary, else in $PATH.
func shimPath() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "cocoon-shim")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("cocoon-shim")
	if err != nil {
		return "", fmt.Errorf("finding cocoon-shim: %w", err)
	}
	return p, nil
}

// startShim starts the cocoon-shim of a process that exists in the guest
// and returns once it has attached the process's streams. It runs in its
// own session, with the caller's stdio or a pty's slave as its controlling
// terminal; the pty's master goes to the console socket (then is closed
// here) or, in the foreground, stays in shimProcess.master. On failure
// nothing is left running.
func startShim(ctx context.Context, c *cli.Context, m *sandbox.Manager, o shimOptions) (_ *shimProcess, retErr error) {
	path, err := shimPath()
	if err != nil {
		return nil, err
	}
	args := append([]string{"cocoon-shim"}, sandboxAddress(o.sb)...)
	args = append(args, "--container", o.containerID, "--ready-fd", "3",
		"--timeout-scale", strconv.Itoa(int(m.Accelerator.TimeoutScale())))
	if o.execID != "" {
		args = append(args, "--exec", o.execID)
	}
	if l := c.String("log"); l != "" {
		args = append(args, "--log", l, "--log-format", c.String("log-format"))
	}
	if c.Bool("debug") {
		args = append(args, "--debug")
	}
	attr := &syscall.SysProcAttr{Setsid: true}
	if o.newNetNS && o.netNS == "" {
		attr.Cloneflags = unix.CLONE_NEWNET
	}
	stdio := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	sp := &shimProcess{}
	var slave *os.File
	if o.mode.terminal {
		var master *os.File
		master, slave, err = openPty()
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		sp.master = master
		if o.mode.foreground && o.mode.consoleSocket == "" {
			// The shim reads its terminal's size when it starts.
			copySize(os.Stdin, master)
		}
		defer func() {
			if retErr != nil || o.mode.consoleSocket != "" {
				master.Close()
				sp.master = nil
			}
		}()
		stdio = []*os.File{slave, slave, slave}
		attr.Setctty, attr.Ctty = true, 0
		args = append(args, "--terminal")
	} else {
		cfg := o.mode.stdioConfig()
		args = append(args, "--stdin="+strconv.FormatBool(cfg.Stdin),
			"--stdout="+strconv.FormatBool(cfg.Stdout), "--stderr="+strconv.FormatBool(cfg.Stderr))
	}
	ready, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the shim: %w", err)
	}
	defer ready.Close()
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Env:         []string{},
		Stdin:       stdio[0],
		Stdout:      stdio[1],
		Stderr:      stdio[2],
		ExtraFiles:  []*os.File{readyW},
		SysProcAttr: attr,
	}
	if o.netNS != "" {
		err = network.Do(o.netNS, cmd.Start)
	} else {
		err = cmd.Start()
	}
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the shim: %w", err)
	}
	sp.cmd, sp.pid = cmd, cmd.Process.Pid
	defer func() {
		if retErr != nil {
			sp.kill()
		}
	}()
	if err := waitReady(ctx, ready); err != nil {
		return nil, err
	}
	if sp.start, err = container.StartTime(sp.pid); err != nil {
		return nil, fmt.Errorf("the shim exited at once: %w", err)
	}
	if o.mode.consoleSocket != "" {
		if err := sendConsole(o.mode.consoleSocket, sp.master); err != nil {
			return nil, err
		}
	}
	// A shim that is not in the foreground is never waited for here, not
	// even in the background: a process that exits at once (docker exec
	// of cat) would be reaped by this runtime, and its status lost to the
	// caller's subreaper (containerd's shim), whose exec then hangs. Once
	// the runtime exits, the subreaper (or init) reaps it.
	return sp, nil
}

// waitReady reads the shim's ready pipe to its end: "ready" or the
// shim's error.
func waitReady(ctx context.Context, r *os.File) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = r.SetReadDeadline(dl)
	}
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return fmt.Errorf("waiting for the shim: %w", err)
	}
	msg := strings.TrimSpace(string(data))
	switch msg {
	case "ready":
		return nil
	case "":
		return errors.New("the shim exited before attaching the process")
	}
	return fmt.Errorf("shim: %s", msg)
}

// kill stops the shim and reaps it (it is still our child).
func (sp *shimProcess) kill() { sp.stop(0) }

// stop lets the shim exit by itself for up to grace (its process is gone
// or going), then kills it, and reaps it (it is still our child).
func (sp *shimProcess) stop(grace time.Duration) {
	if sp == nil || sp.cmd == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = sp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = sp.cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	if sp.master != nil {
		sp.master.Close()
	}
}

// stopShim waits a while for the shim of a removed process to exit by
// itself (with the process's status, for whoever reaps it), then
// terminates it.
func stopShim(ctx context.Context, pid int, start uint64, grace time.Duration) {
	if !container.ShimAlive(pid, start) {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	if proc.Wait(wctx, pid) == nil {
		return
	}
	if !container.ShimAlive(pid, start) {
		return
	}
	tctx, tcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer tcancel()
	_ = proc.Terminate(tctx, pid)
}
