package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/internal/statedir"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
)

// Errors of a sandbox that cannot serve.
var (
	// ErrUnresponsive: the sandbox missed its health check (its VMM is
	// stopped, paused or silent, or its agent does not answer).
	ErrUnresponsive = errors.New("sandbox is unresponsive")
	// ErrVMGone: the sandbox's VM has exited.
	ErrVMGone = errors.New("sandbox's VM is gone")
)

// HealthTimeout is the deadline of a health check under this manager's
// accelerator.
func (m *Manager) HealthTimeout() time.Duration {
	return m.Scaled(m.Config.Agent.HealthTimeout.Duration)
}

// Health checks, cheaply and within HealthTimeout, that the sandbox
// serves: its VMM runs (the process is not stopped, QMP answers that the
// guest runs) and its agent answers a ping. It returns nil, an error that
// is ErrVMGone, or one that is ErrUnresponsive, saying why.
func (s *Sandbox) Health(ctx context.Context) error {
	if s.vm == nil {
		return fmt.Errorf("sandbox %s: %w", s.state.ID, ErrVMGone)
	}
	ctx, cancel := context.WithTimeout(ctx, s.m.HealthTimeout())
	defer cancel()
	st, err := s.vm.Status(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("%w: the VMM (pid %d) of sandbox %s does not answer: %v", ErrUnresponsive, s.state.VM.PID, s.state.ID, err)
	case st == hypervisor.Stopped:
		return fmt.Errorf("sandbox %s: %w", s.state.ID, ErrVMGone)
	case st == hypervisor.Frozen:
		return fmt.Errorf("%w: the VMM (pid %d) of sandbox %s is stopped", ErrUnresponsive, s.state.VM.PID, s.state.ID)
	case st != hypervisor.Running:
		return fmt.Errorf("%w: the VM of sandbox %s is %s", ErrUnresponsive, s.state.ID, st)
	}
	c, err := s.Client(ctx)
	if err == nil {
		_, err = c.Check(ctx, &api.CheckRequest{})
	}
	if err != nil {
		return fmt.Errorf("%w: the agent of sandbox %s does not answer within %s: %v", ErrUnresponsive, s.state.ID, s.m.HealthTimeout(), err)
	}
	return nil
}

// KillVM kills the sandbox's VM at once, without asking it, and returns
// once it is gone: every process in it ends, and the agent connections of
// host processes break. Destroy then removes the rest.
func (s *Sandbox) KillVM(ctx context.Context) error {
	if s.vm == nil {
		return nil
	}
	kctx, cancel := context.WithTimeout(ctx, 0)
	defer cancel()
	if err := s.vm.Stop(kctx); err != nil {
		return fmt.Errorf("killing the VM of sandbox %s: %w", s.state.ID, err)
	}
	return nil
}

// Kill destroys a sandbox that cannot be asked to stop (unresponsive or
// dead): its VM is killed at once, then everything else goes as with
// Destroy (virtiofsd, proxy, taps and filters, mounts, directory).
func (s *Sandbox) Kill(ctx context.Context) error {
	return s.teardown(ctx, false /* graceful */)
}

// Frozen tells, without a manager and without asking anything, whether the
// VMM of sandbox id under root is stopped (SIGSTOP): what a quick status
// report can afford to check.
func Frozen(root, id string) bool {
	var st State
	if err := statedir.ReadJSON(filepath.Join(root, id, stateFile), &st); err != nil {
		return false
	}
	return proc.Stopped(st.VM.PID)
}
