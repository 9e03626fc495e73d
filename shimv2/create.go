package shimv2

import (
	"context"
	"fmt"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/oci"
)

// Create creates a container: it mounts the rootfs, boots the pod's VM
// (the pod's sandbox container, or a container outside a pod) or joins it,
// creates the container in the guest and attaches its stdio.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	defer func() { retErr = toGRPC(retErr) }()
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return nil, fmt.Errorf("creating %s: checkpoints: %w", r.ID, errdefs.ErrNotImplemented)
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if s.lookup(r.ID) != nil {
		return nil, fmt.Errorf("creating %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	cfgPath, err := configPath(r.Options)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", r.ID, err)
	}
	m, err := s.getManager(ctx, cfgPath)
	if err != nil {
		return nil, err
	}
	// Create's work outlives containerd's request only through the
	// shim's context; the sandbox boot is bounded here.
	ctx, cancel := container.CreateContext(ctx, m)
	defer cancel()

	rootfs, err := mountRootfs(r.Bundle, r.Rootfs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := unmountRootfs(rootfs); err != nil {
				log.G(ctx).WithError(err).Warn("cleaning up a failed create")
			}
		}
	}()
	b, err := oci.LoadBundle(r.Bundle)
	if err != nil {
		return nil, err
	}
	pod, err := container.PodOf(r.ID, b.Spec.Annotations)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb == nil && !pod.Owns {
		return nil, fmt.Errorf("creating %s: pod sandbox %s is not served by this shim: %w", r.ID, pod.SandboxID, errdefs.ErrNotFound)
	}
	p := newProcess(r.ID, "", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	p.killAllOnExit = !container.PrivateNamespace(b.Spec, specs.PIDNamespace)
	c, err := container.Create(ctx, m, container.CreateConfig{
		ID: r.ID, Bundle: b, Pod: pod, Stdio: p.stdio(), Sandbox: sb,
		KnownNamespaces: s.podNamespaces(pod.ID),
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			c.Undo(ctx, nil)
		}
	}()
	if err := p.attach(ctx, c); err != nil {
		return nil, err
	}
	// The process is reported with the VM's PID: its guest PID means
	// nothing on the host, and the VM is what runs it there.
	p.pid = uint32(c.Sandbox().State().VM.PID)

	s.mu.Lock()
	if c.OwnsSandbox {
		s.sb = c.Sandbox()
	}
	s.tasks[r.ID] = &task{ctr: c, bundle: r.Bundle, rootfs: rootfs, init: p, execs: map[string]*process{}}
	s.mu.Unlock()
	// The init process can be waited for (and killed) from now on.
	go s.follow(c, p)

	s.publish(runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         p.pid,
	})
	return &taskAPI.CreateTaskResponse{Pid: p.pid}, nil
}

// podNamespaces maps the host paths by which containerd's CRI names the
// namespaces of the pod's sandbox container (/proc/<its PID>/ns/<type>,
// with the PID that Create reported) to their paths in the guest, where
// the pod's containers join them.
func (s *Service) podNamespaces(podID string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[podID]
	if t == nil {
		return nil
	}
	return container.GuestNamespacePaths(int(t.init.pid), t.ctr.GuestPID)
}
