package shimv2

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// drainTimeout bounds, at hardware speed, how long an exited process's
// output may take to reach its FIFOs.
const drainTimeout = 2 * time.Second

// toGRPC translates errors for containerd at the service's boundary.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, container.ErrSandboxGone), errors.Is(err, sandbox.ErrVMGone), errors.Is(err, sandbox.ErrUnresponsive):
		// Nothing in the pod's VM can be asked.
		err = fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	case errors.Is(err, container.ErrNotFound):
		err = fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	case errors.Is(err, container.ErrAlreadyExists):
		err = fmt.Errorf("%w: %w", errdefs.ErrAlreadyExists, err)
	case errors.Is(err, container.ErrFailedPrecondition):
		err = fmt.Errorf("%w: %w", errdefs.ErrFailedPrecondition, err)
	case errors.Is(err, container.ErrInvalidArgument), errors.Is(err, oci.ErrInvalidBundle):
		err = fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	return errgrpc.ToGRPC(err)
}

func (s *Service) lookup(id string) *task {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tasks[id]
}

// processOf finds a container's task and one of its processes.
func (s *Service) processOf(id, execID string) (*task, *process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tasks[id]
	if c == nil {
		return nil, nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if execID == "" {
		return c, c.init, nil
	}
	p := c.execs[execID]
	if p == nil {
		return nil, nil, fmt.Errorf("exec %s of container %s: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// scaled multiplies d by the accelerator's slowdown.
func (s *Service) scaled(d time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manager == nil {
		return d
	}
	return d * s.manager.Accelerator.TimeoutScale()
}

// follow waits for p's end and publishes it.
func (s *Service) follow(c *container.Container, p *process) {
	exit, err := p.wait(s.ctx, c, s.scaled(drainTimeout))
	l := log.G(s.ctx).WithField("container", p.containerID).WithField("exec", p.execID)
	if err != nil {
		l.WithError(err).Warn("following the process")
	}
	if exit.OOMKilled {
		s.publish(runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: p.containerID})
		if p.execID == "" {
			s.markOOM(p.containerID)
		}
	}
	_, status, at := p.state()
	l.WithField("status", status).Debug("process exited")
	s.publish(runtime.TaskExitEventTopic, &eventstypes.TaskExit{
		ContainerID: p.containerID,
		ID:          p.id(),
		Pid:         p.pid,
		ExitStatus:  status,
		ExitedAt:    protobuf.ToTimestamp(at),
	})
	p.done()
}

// oomFile is the file in a container's bundle that tells CRI-O (its "vm"
// runtime type, which reads no OOM event) that the guest's OOM killer
// ended the container, as Kata's shim writes it.
const oomFile = "oom"

// markOOM writes the oom file into the bundle of container id.
func (s *Service) markOOM(id string) {
	t := s.lookup(id)
	if t == nil {
		return
	}
	if err := os.WriteFile(filepath.Join(t.bundle, oomFile), nil, 0o644); err != nil {
		log.G(s.ctx).WithError(err).WithField("container", id).Warn("writing the bundle's oom file")
	}
}

// Start starts the init process (created by Create) or an exec'd process
// (added by Exec).
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (_ *taskAPI.StartResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.check(container.OpStart); err != nil {
		return nil, err
	}
	if err := t.ctr.Ready(ctx); err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		if err := t.ctr.Start(ctx); err != nil {
			return nil, err
		}
		p.setStatus(container.Running)
		s.publish(runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: r.ID, Pid: p.pid})
		return &taskAPI.StartResponse{Pid: p.pid}, nil
	}
	if err := t.ctr.Exec(ctx, r.ExecID, p.spec, p.stdio()); err != nil {
		return nil, err
	}
	if err := p.attach(ctx, t.ctr); err != nil {
		t.ctr.Kill(ctx, r.ExecID)
		return nil, fmt.Errorf("starting exec %s: %w", r.ExecID, err)
	}
	p.setStatus(container.Running)
	go s.follow(t.ctr, p)
	s.publish(runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: r.ID, ExecID: r.ExecID, Pid: p.pid})
	return &taskAPI.StartResponse{Pid: p.pid}, nil
}

// Exec adds a process to a container; Start starts it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tasks[r.ID]
	if c == nil {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrNotFound)
	}
	if c.execs[r.ExecID] != nil || r.ExecID == "" {
		return nil, fmt.Errorf("exec %q of container %s: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists)
	}
	if err := c.init.check(container.OpExec); err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", r.ID, err)
	}
	spec, err := oci.ParseProcess("exec process", r.Spec.GetValue())
	if err != nil {
		return nil, err
	}
	p := newProcess(r.ID, r.ExecID, stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	p.spec = spec
	p.pid = c.init.pid
	c.execs[r.ExecID] = p
	s.publish(runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &emptypb.Empty{}, nil
}

// State reports a process.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (_ *taskAPI.StateResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	c, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st, status, at := p.state()
	return &taskAPI.StateResponse{
		ID:         p.id(),
		Bundle:     c.bundle,
		Pid:        p.pid,
		Status:     taskStatus(st),
		Stdin:      p.io.stdin,
		Stdout:     p.io.stdout,
		Stderr:     p.io.stderr,
		Terminal:   p.io.terminal,
		ExitStatus: status,
		ExitedAt:   protobuf.ToTimestamp(at),
		ExecID:     r.ExecID,
	}, nil
}

// Kill signals a process, or with All every process of the container; a
// SIGKILL to a pod whose VM cannot be asked kills the VM (the container
// layer's rule, Container.Signal).
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (_ *emptypb.Empty, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	t, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	op := container.OpKill
	if r.All {
		op = container.OpKillAll
	}
	if err := p.check(op); err != nil {
		if errors.Is(err, container.ErrNotRunning) {
			// containerd's word for it: the process already finished
			// (not found, as runc's shim says). Not wrapped: it is a
			// failed precondition too, which containerd's CRI does
			// not take for a finished process (a pod's stop fails).
			return nil, fmt.Errorf("process %s already finished (%v): %w", p.id(), err, errdefs.ErrNotFound)
		}
		return nil, err
	}
	if err := t.ctr.Signal(ctx, r.ExecID, syscall.Signal(r.Signal), r.All); err != nil {
		if st, _, _ := p.state(); st == container.Stopped {
			return &emptypb.Empty{}, nil
		}
		if container.IsGone(err) {
			// Exited in the guest; its waiter has not told yet.
			return nil, fmt.Errorf("process %s already finished: %w: %w", p.id(), errdefs.ErrNotFound, err)
		}
		return nil, fmt.Errorf("signalling %s: %w", p.id(), err)
	}
	return &emptypb.Empty{}, nil
}

// Wait returns once the process has exited.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (_ *taskAPI.WaitResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	_, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	_, status, at := p.state()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Delete removes an exited process: an exec from the container's list, a
// container from its sandbox by the pod rules (Container.Delete: the last
// one destroys the VM) and its rootfs from the host.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (_ *taskAPI.DeleteResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	s.createMu.Lock()
	defer s.createMu.Unlock()
	c, p, err := s.processOf(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.check(container.OpDelete); err != nil {
		return nil, err
	}
	st, status, at := p.state()
	resp := &taskAPI.DeleteResponse{Pid: p.pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}
	if r.ExecID != "" {
		s.mu.Lock()
		delete(c.execs, r.ExecID)
		s.mu.Unlock()
		p.closeFifos()
		return resp, nil
	}
	gone, err := c.ctr.Delete(ctx)
	if err != nil {
		return nil, err
	}
	if st == container.Created {
		// Never started: its waiter goes away with the container.
		p.closeFifos()
	}
	if err := unmountRootfs(c.rootfs); err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.tasks, r.ID)
	if gone {
		s.sb = nil
	}
	s.mu.Unlock()
	s.publish(runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{
		ContainerID: r.ID, ID: r.ID, Pid: p.pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at),
	})
	return resp, nil
}

// destroySandbox destroys the pod's VM (Shutdown: the shim goes, and its
// pod with it).
func (s *Service) destroySandbox(ctx context.Context) {
	s.mu.Lock()
	sb, m := s.sb, s.manager
	s.sb = nil
	s.mu.Unlock()
	if sb != nil {
		container.DestroySandbox(ctx, m, sb)
	}
}

// Connect reports the shim's and the task's PIDs.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: "2"}
	if c := s.lookup(r.ID); c != nil {
		resp.TaskPid = c.init.pid
	}
	return resp, nil
}

// Shutdown ends the shim once it serves no container.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	if n > 0 && !r.Now {
		return &emptypb.Empty{}, nil
	}
	s.destroySandbox(ctx)
	s.shutdown()
	// Events are published synchronously: none is pending. Closing the
	// publisher lets the shim's main loop return.
	if err := s.publisher.Close(); err != nil {
		log.G(ctx).WithError(err).Debug("closing the event publisher")
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not supported: a VM's containers are not checkpointed.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, errgrpc.ToGRPC(fmt.Errorf("checkpointing %s: %w", r.ID, errdefs.ErrNotImplemented))
}
