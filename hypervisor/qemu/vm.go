package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/hypervisor"
)

// DefaultStopTimeout is how long Stop waits for QEMU to quit when its ctx
// has no deadline, before it kills QEMU.
const DefaultStopTimeout = 10 * time.Second

// killWait bounds the wait for a process to vanish after SIGKILL.
const killWait = 5 * time.Second

var _ hypervisor.VM = (*VM)(nil)

// VM is a QEMU process, started by Start or found by Attach. Each QMP call
// opens a connection of its own, so VMs attached in several processes can
// be driven at once.
type VM struct {
	dir   string
	proc  *process
	dial  dialFunc
	files []string
	log   *logrus.Entry
	// saveFD is QEMU's descriptor of the template state file that Save
	// writes; 0 for a VM that is not a template.
	saveFD int
	// version is the QEMU's, for a VM that Start started.
	version Version
}

// State returns what Attach needs to find this VM again.
func (v *VM) State() hypervisor.State {
	return hypervisor.State{Hypervisor: Name, PID: v.proc.pid, Dir: v.dir}
}

// Status asks QEMU for the run state: Running, Paused (vCPUs stopped, for
// whatever reason), Stopped once the process is gone or the guest has
// shut down, or Frozen, without asking, when the QEMU process itself is
// stopped (it would not answer).
func (v *VM) Status(ctx context.Context) (hypervisor.Status, error) {
	if v.proc.exitedNow() {
		return hypervisor.Stopped, nil
	}
	if procStopped(v.proc.pid) {
		return hypervisor.Frozen, nil
	}
	var info statusInfo
	if err := execute(ctx, v.dial, "query-status", &info); err != nil {
		if v.proc.exitedNow() {
			return hypervisor.Stopped, nil
		}
		return "", fmt.Errorf("vm status (pid %d): %w", v.proc.pid, err)
	}
	switch {
	case info.Running:
		return hypervisor.Running, nil
	case info.Status == "shutdown" || info.Status == "guest-panicked":
		return hypervisor.Stopped, nil
	default:
		return hypervisor.Paused, nil
	}
}

// Pause stops the vCPUs (QMP stop).
func (v *VM) Pause(ctx context.Context) error {
	return v.command(ctx, "pausing vm", "stop")
}

// Resume restarts the vCPUs (QMP cont).
func (v *VM) Resume(ctx context.Context) error {
	return v.command(ctx, "resuming vm", "cont")
}

// command runs a QMP command that returns nothing; the error wraps
// hypervisor.ErrNotRunning when QEMU is gone.
func (v *VM) command(ctx context.Context, what, command string) error {
	if v.proc.exitedNow() {
		return fmt.Errorf("%s (pid %d): %w", what, v.proc.pid, hypervisor.ErrNotRunning)
	}
	if err := execute(ctx, v.dial, command, nil); err != nil {
		if v.proc.exitedNow() {
			return fmt.Errorf("%s (pid %d): %w", what, v.proc.pid, hypervisor.ErrNotRunning)
		}
		return fmt.Errorf("%s (pid %d): %w", what, v.proc.pid, err)
	}
	return nil
}

// Wait returns nil when QEMU has exited, or ctx's error first. It works for
// a QEMU started by another process (pidfd, else polling /proc).
func (v *VM) Wait(ctx context.Context) error {
	if err := v.proc.wait(ctx); err != nil {
		return fmt.Errorf("waiting for vm (pid %d): %w", v.proc.pid, err)
	}
	return nil
}

// Stop asks QEMU to quit (QMP quit), waits for it until ctx's deadline
// (DefaultStopTimeout when ctx has none), then kills it and waits again.
// It removes the sockets and pid file QEMU leaves in the VM directory; the
// logs stay. Stopping a VM that already exited is not an error.
func (v *VM) Stop(ctx context.Context) error {
	if !v.proc.exitedNow() {
		grace := ctx
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			grace, cancel = context.WithTimeout(ctx, DefaultStopTimeout)
			defer cancel()
		}
		if err := execute(grace, v.dial, "quit", nil); err != nil {
			// QEMU may close the socket before answering; Wait decides.
			v.log.WithError(err).Debug("qmp quit")
		}
		if err := v.proc.wait(grace); err != nil {
			v.log.Warn("qemu did not quit in time, killing it")
			if err := v.proc.kill(); err != nil {
				return fmt.Errorf("stopping vm: %w", err)
			}
			// ctx is over: give SIGKILL a bounded wait of its own.
			kctx, cancel := context.WithTimeout(context.Background(), killWait)
			defer cancel()
			if err := v.proc.wait(kctx); err != nil {
				return fmt.Errorf("stopping vm: qemu pid %d survived SIGKILL: %w", v.proc.pid, err)
			}
		}
	}
	v.removeFiles()
	return nil
}

// removeFiles deletes the sockets and pid file of an exited QEMU.
func (v *VM) removeFiles() {
	for _, f := range v.files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			v.log.WithError(err).Warn("removing qemu file")
		}
	}
}

// awaitQMP retries QMP until it answers, QEMU exits, or ctx ends.
func (v *VM) awaitQMP(ctx context.Context) error {
	for {
		if v.proc.exitedNow() {
			return v.proc.exitError()
		}
		// One attempt at a time with a short deadline: the socket appears
		// once QEMU has parsed its options.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		err := execute(actx, v.dial, "query-status", &statusInfo{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if v.proc.exitedNow() {
				return v.proc.exitError()
			}
			return fmt.Errorf("waiting for qmp: %w (last error: %v)", ctx.Err(), err)
		case <-v.proc.exited:
			return v.proc.exitError()
		case <-time.After(connectRetry):
		}
	}
}
