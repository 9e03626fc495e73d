package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// CreateConfig is what Create needs to create a container.
type CreateConfig struct {
	// ID is the container's ID.
	ID string
	// Bundle is the loaded bundle; Create adapts its spec to the pod.
	Bundle *oci.Bundle
	// Pod is where the container runs (PodOf).
	Pod Pod
	// Stdio announces the streams the caller will attach.
	Stdio Stdio
	// Sandbox is the pod's sandbox when the caller holds it (the
	// containerd shim serves one pod); nil: Create boots the sandbox
	// (Pod.Owns) or finds it under the manager's root.
	Sandbox *sandbox.Sandbox
	// KnownNamespaces maps the host paths of the pod sandbox container's
	// namespaces to the guest's (GuestNamespacePaths).
	KnownNamespaces map[string]string
	// RunsHooks is set when the caller runs the OCI hooks (cocoon-runtime):
	// a new network namespace, which they fill, is then mirrored into the
	// VM once they have run (sandbox.ConnectNetwork).
	RunsHooks bool
	// SystemdCgroup says linux.cgroupsPath is systemd's (runc's
	// --systemd-cgroup); a slice:prefix:name path is recognized anyway.
	SystemdCgroup bool
}

// CreateContext bounds a create under m's accelerator: the sandbox's boot
// (agent.boot_timeout) and a margin for the rest. Both front ends create
// within it.
func CreateContext(ctx context.Context, m *sandbox.Manager) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.Scaled(m.Config.Agent.BootTimeout.Duration+createMargin))
}

// Create creates a container in its pod's sandbox: it applies the pod
// rules to the bundle (PodNamespaces), boots and attaches the sandbox when
// the container owns it (or when CRI-O dropped the pod's infra container)
// or joins it, and creates the container in the guest, under the
// sandbox's lock, which Delete takes too: a container that joins is seen by
// the delete of any other. On failure nothing is left: no container, no
// sandbox it booted.
func Create(ctx context.Context, m *sandbox.Manager, cfg CreateConfig) (_ *Container, retErr error) {
	if err := statedir.ValidateID(cfg.ID); err != nil {
		return nil, fmt.Errorf("invalid container id: %w", err)
	}
	b, pod := cfg.Bundle, cfg.Pod
	// Before PodNamespaces drops the pod member's namespace paths that
	// mean nothing in the guest.
	hostNS := oci.HostNamespaces(b.Spec, cfg.KnownNamespaces)
	// The pod's hostname, before a pod member's UTS namespace (and with
	// it the hostname) is found to be the guest's.
	attach := sandbox.AttachConfig{Hostname: GuestHostname(b.Spec, pod.SandboxID)}
	attach.Sysctls = PodNamespaces(b, pod, cfg.KnownNamespaces)

	sb, owns := cfg.Sandbox, pod.Owns
	switch {
	case sb != nil && owns:
		return nil, fmt.Errorf("creating %s: sandbox %s already runs: %w", cfg.ID, sb.ID(), ErrFailedPrecondition)
	case sb != nil && sb.ID() != pod.SandboxID:
		return nil, fmt.Errorf("creating %s: pod sandbox %s is not this one's (%s): %w", cfg.ID, pod.SandboxID, sb.ID(), ErrNotFound)
	case sb == nil && !owns:
		loaded, err := m.Load(ctx, pod.SandboxID)
		switch {
		case errors.Is(err, sandbox.ErrNotFound) && pod.MayBoot:
			owns = true
		case err != nil:
			return nil, fmt.Errorf("joining the pod's sandbox: %w", err)
		default:
			sb = loaded
			defer func() {
				if retErr != nil {
					sb.Close()
				}
			}()
		}
	}
	c := &Container{ID: cfg.ID, m: m, OwnsSandbox: owns}
	if owns {
		if err := checkHostNamespaces(m, cfg.ID, b, hostNS); err != nil {
			return nil, err
		}
		size, err := SizeOf(b.Spec, m.Config.Hypervisor)
		if err != nil {
			return nil, err
		}
		sb, err = m.Create(ctx, pod.SandboxID, sandbox.WithNetwork(podNetwork(b.Spec, cfg.RunsHooks)),
			sandbox.WithSize(size),
			sandbox.WithCgroup(sandbox.CgroupOf(b.Spec, cfg.SystemdCgroup)))
		if err != nil {
			RemoveEmptyRoot(m.Root)
			return nil, err
		}
		defer func() {
			if retErr != nil {
				DestroySandbox(ctx, m, sb)
			}
		}()
	}
	lock, err := sb.Lock()
	if err != nil {
		return nil, fmt.Errorf("creating %s in sandbox %s: %w", cfg.ID, sb.ID(), err)
	}
	defer lock.Unlock()
	if owns {
		if err := sb.Attach(ctx, attach); err != nil {
			return nil, err
		}
		m.Log.WithField("sandbox", sb.ID()).Debug("sandbox attached")
	}
	pid, err := sb.CreateContainer(ctx, cfg.ID, b, cfg.Stdio.config())
	if err != nil {
		return nil, err
	}
	m.Log.WithFields(logrus.Fields{"container": cfg.ID, "guest_pid": pid}).Debug("container created in the guest")
	c.sb, c.GuestPID = sb, pid
	return c, nil
}

// Undo removes a container that Create made, and the sandbox if Create
// booted it or if it is left empty (the pod rule of Delete), best effort:
// it cleans up after a failure, with deadlines of its own. between runs
// once the container is gone, before the sandbox goes (the container's
// relay exits then by itself).
func (c *Container) Undo(ctx context.Context, between func()) {
	if c.sb == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.m.Scaled(cleanupTimeout))
	defer cancel()
	if err := c.sb.RemoveContainer(cctx, c.ID, true); err != nil {
		c.m.Log.WithError(err).Warn("cleaning up a failed create")
	}
	if between != nil {
		between()
	}
	if !c.OwnsSandbox {
		// Deleted now, it is the sandbox's last container if no other is
		// left in it.
		if _, err := c.Delete(cctx); err != nil {
			c.m.Log.WithError(err).Warn("cleaning up a failed create")
		}
		return
	}
	DestroySandbox(ctx, c.m, c.sb)
	c.sb = nil
}

// DestroySandbox destroys sandbox sb of manager m, best effort and with a
// deadline of its own (a failure, or a shim that shuts down, may be what
// ended ctx), and removes the sandbox root once it is empty.
func DestroySandbox(ctx context.Context, m *sandbox.Manager, sb *sandbox.Sandbox) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Scaled(cleanupTimeout))
	defer cancel()
	if err := sb.Destroy(cctx); err != nil {
		m.Log.WithError(err).WithField("sandbox", sb.ID()).Warn("destroying the sandbox")
	}
	RemoveEmptyRoot(m.Root)
}
