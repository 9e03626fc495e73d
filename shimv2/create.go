package shimv2

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/runtime"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
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
	m, err := s.getManager(ctx)
	if err != nil {
		return nil, err
	}
	// Create's work outlives containerd's request only through the
	// shim's context; the sandbox boot is bounded here.
	ctx, cancel := context.WithTimeout(ctx, m.Config.Agent.BootTimeout.Duration*m.Accelerator.TimeoutScale()+m.Accelerator.TimeoutScale()*20*time.Second)
	defer cancel()
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second*m.Accelerator.TimeoutScale())
	}

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
	sbID, owns, err := podOf(r.ID, b.Spec.Annotations)
	if err != nil {
		return nil, err
	}
	hostname := guestHostname(b, sbID)
	if !privateNamespace(b, specs.UTSNamespace) {
		// The container shares the guest's UTS namespace (a host-network
		// pod's), private to the pod's VM: Attach names it.
		b.Spec.Hostname = ""
	}

	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	switch {
	case owns && sb != nil:
		return nil, fmt.Errorf("creating %s: this shim already runs sandbox %s: %w", r.ID, sb.ID(), errdefs.ErrFailedPrecondition)
	case !owns && (sb == nil || sb.ID() != sbID):
		return nil, fmt.Errorf("creating %s: pod sandbox %s is not served by this shim: %w", r.ID, sbID, errdefs.ErrNotFound)
	case owns:
		sb, err = m.Create(ctx, sbID, sandbox.WithNetwork(podNetwork(b.Spec)))
		if err != nil {
			removeEmptyRoot(m.Root)
			return nil, err
		}
		defer func() {
			if retErr != nil {
				cctx, cancel := cleanupCtx()
				defer cancel()
				if err := sb.Destroy(cctx); err != nil {
					log.G(ctx).WithError(err).Warn("cleaning up a failed create")
				}
				removeEmptyRoot(m.Root)
			}
		}()
		if err := sb.Attach(ctx, sandbox.AttachConfig{Hostname: hostname}); err != nil {
			return nil, err
		}
	}

	if !owns {
		b.GuestNamespaces = s.podNamespaces(b.Spec.Annotations[annotationSandboxID])
	}
	p := newProcess(r.ID, "", stdio{stdin: r.Stdin, stdout: r.Stdout, stderr: r.Stderr, terminal: r.Terminal})
	p.killAllOnExit = !privateNamespace(b, specs.PIDNamespace)
	guestPid, err := sb.CreateContainer(ctx, r.ID, b, p.stdioConfig())
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := cleanupCtx()
			defer cancel()
			if err := sb.RemoveContainer(cctx, r.ID, true); err != nil {
				log.G(ctx).WithError(err).Warn("cleaning up a failed create")
			}
		}
	}()
	c, err := sb.Client(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.attach(ctx, c); err != nil {
		return nil, err
	}
	// The process is reported with the VM's PID: its guest PID means
	// nothing on the host, and the VM is what runs it there.
	p.pid = uint32(sb.State().VM.PID)

	s.mu.Lock()
	if owns {
		s.sb = sb
	}
	s.containers[r.ID] = &container{id: r.ID, bundle: r.Bundle, rootfs: rootfs, guestPid: guestPid, init: p, execs: map[string]*process{}}
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
	c := s.containers[podID]
	if c == nil {
		return nil
	}
	host := strconv.FormatUint(uint64(c.init.pid), 10)
	paths := map[string]string{}
	for _, name := range []string{"ipc", "uts", "pid", "cgroup", "mnt", "user", "time"} {
		paths["/proc/"+host+"/ns/"+name] = fmt.Sprintf("/proc/%d/ns/%s", c.guestPid, name)
	}
	return paths
}

// privateNamespace tells whether the container has a namespace of type t
// of its own.
func privateNamespace(b *oci.Bundle, t specs.LinuxNamespaceType) bool {
	if b.Spec.Linux == nil {
		return false
	}
	for _, ns := range b.Spec.Linux.Namespaces {
		if ns.Type == t && ns.Path == "" {
			return true
		}
	}
	return false
}

// guestHostname is the hostname of the VM that sandbox sbID's first
// container creates: the spec's; else, for a container in the host's UTS
// namespace (a host-network pod, which the kubelet gives no hostname), the
// host's, as with runc; else a short form of the sandbox ID.
func guestHostname(b *oci.Bundle, sbID string) string {
	if b.Spec.Hostname != "" {
		return b.Spec.Hostname
	}
	if !privateNamespace(b, specs.UTSNamespace) {
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	if len(sbID) > 12 {
		return sbID[:12]
	}
	return sbID
}

// podNetwork is the network the pod's VM carries: the namespace CNI filled
// for a CRI pod (its path is in the spec), loopback only for a host-network
// pod. This shim runs no OCI hooks, so a new namespace without a path stays
// empty here, as it would with runc and no hooks.
func podNetwork(spec *specs.Spec) sandbox.Network {
	n := sandbox.NetworkOf(spec)
	if n.New {
		return sandbox.Network{}
	}
	return n
}
