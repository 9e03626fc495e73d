package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// forwardLog is the port forwarder's log in the sandbox directory.
const forwardLog = "forward.log"

// startForwarder starts the sandbox's port forwarder (`cocoon-proxy
// forward`, package portforward), detached and in the sandbox's host
// cgroup, for a pod whose network namespace a CNI plugin or the caller
// made: containerd and CRI-O serve CRI PortForward by dialing localhost in
// that namespace, and the forwarder carries those connections into the
// guest. It exits by itself when the VM goes away, and removes its
// redirect; teardown stops it otherwise. A forwarder that cannot start
// costs port forwarding only, not the sandbox: it is logged.
func (s *Sandbox) startForwarder() {
	ns := s.state.Network
	if ns == nil || ns.Owned || s.m.AgentDialer != nil {
		// No namespace of the caller's (Docker's own namespace is served
		// by Docker's published ports), or unit tests without a VM.
		return
	}
	log := s.m.Log.WithField("sandbox", s.state.ID)
	if err := s.runForwarder(ns.NSPath); err != nil {
		log.WithError(err).Warn("port forwarding into the sandbox is unavailable")
		return
	}
	if err := s.save(); err != nil {
		log.WithError(err).Warn("recording the port forwarder")
	}
}

func (s *Sandbox) runForwarder(nsPath string) error {
	path, err := s.m.proxyPath()
	if err != nil {
		return fmt.Errorf("starting the port forwarder: %w", err)
	}
	args := []string{"forward", "--netns", nsPath, "--log", filepath.Join(s.dir, forwardLog)}
	if s.state.Transport == api.TransportVsock {
		args = append(args, "--vsock-cid", strconv.FormatUint(uint64(s.state.VsockCID), 10))
	} else {
		args = append(args, "--proxy-socket", filepath.Join(s.dir, proxySocket))
	}
	cmd := exec.Command(path, args...)
	// Own session: it outlives this process, which may be a short-lived
	// runtime CLI, and no terminal signal reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if _, err := s.hostCgroup(); err != nil {
		return fmt.Errorf("starting the port forwarder: %w", err)
	}
	if err := s.startPlaced(cmd); err != nil {
		return fmt.Errorf("starting the port forwarder: %w", err)
	}
	s.state.ForwarderPID = cmd.Process.Pid
	// Reap it if it exits while this process still runs.
	go func() { _ = cmd.Wait() }()
	return nil
}

// stopForwarder waits briefly for the forwarder to exit after QEMU (it does
// so by itself once the agent's channel closes), then terminates it. A
// forwarder killed before it removed its redirect leaves it to
// teardownNetwork.
func (s *Sandbox) stopForwarder(ctx context.Context) error {
	pid := s.state.ForwarderPID
	if pid <= 0 || !s.isForwarder(pid) {
		return nil
	}
	return s.stopHelper(ctx, pid, "the port forwarder")
}

// isForwarder guards against a recycled PID: the process must still be
// the forwarder that logs into this sandbox's directory.
func (s *Sandbox) isForwarder(pid int) bool {
	cmdline, err := proc.Cmdline(pid)
	if err != nil {
		return false
	}
	return slices.Contains(strings.Fields(cmdline), filepath.Join(s.dir, forwardLog))
}
