package sandbox

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/hostcgroup"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// Cgroup is the host cgroup that a sandbox's host processes run in.
type Cgroup struct {
	// Path is the spec's linux.cgroupsPath.
	Path string
	// Systemd says the caller uses systemd's driver (runc's
	// --systemd-cgroup, the SystemdCgroup option of the runc shim).
	Systemd bool
	// Resources are the limits of the container the sandbox is made for:
	// the caller's cgroup gets them as given (hostcgroup.Exact), the
	// overhead cgroup beside it, which holds the VM, gets them plus the
	// VM's overhead (hostcgroup.Resources).
	Resources *specs.LinuxResources
}

// CgroupOf is the host cgroup that spec names, for WithCgroup; the zero
// Cgroup (no host cgroup) when it names none.
func CgroupOf(spec *specs.Spec, systemd bool) Cgroup {
	if spec == nil || spec.Linux == nil {
		return Cgroup{}
	}
	return Cgroup{Path: spec.Linux.CgroupsPath, Systemd: systemd, Resources: spec.Linux.Resources}
}

// WithCgroup gives the sandbox the host cgroup cg, and the overhead cgroup
// beside it (hostcgroup.VMMPath), created by Create and removed by Destroy:
// QEMU, the proxy and virtiofsd run in the overhead cgroup, the processes
// given to AddProcess (the relays) in cg, as with Kata's overhead cgroup
// (sandbox_cgroup_only = false); a cg without a path makes none.
func WithCgroup(cg Cgroup) CreateOption {
	return func(o *Options) { o.Cgroup = cg }
}

// createCgroup creates the host cgroups; the processes boot starts are
// placed in the overhead cgroup before they run (startPlaced, VMConfig.Cgroup), and this
// process never joins it.
func (s *Sandbox) createCgroup(cg Cgroup) error {
	if cg.Path == "" {
		return nil
	}
	c, err := hostcgroup.Create(hostcgroup.Spec{
		Path:           cg.Path,
		Systemd:        cg.Systemd,
		Resources:      cg.Resources,
		GuestMemoryMiB: s.GuestSize().MemoryMiB,
	})
	if err != nil {
		return err
	}
	st := c.State()
	s.cgroup, s.state.Cgroup = c, &st
	return nil
}

// placer is where the VMM is placed before it runs: the overhead cgroup
// (hostcgroup.Cgroup.Add), or nil for none (never a nil *hostcgroup.Cgroup in the interface).
func (s *Sandbox) placer() hypervisor.Placer {
	if s.cgroup == nil {
		return nil
	}
	return s.cgroup
}

// startPlaced starts one of the sandbox's host processes (the proxy,
// virtiofsd), in its overhead cgroup from its first instruction when it
// has one.
func (s *Sandbox) startPlaced(cmd *exec.Cmd) error {
	if s.cgroup == nil {
		return cmd.Start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return proc.StartPlaced(cmd, s.cgroup.Add)
}

// hostCgroup returns the sandbox's host cgroup, nil when it has none.
func (s *Sandbox) hostCgroup() (*hostcgroup.Cgroup, error) {
	if s.cgroup != nil || s.state.Cgroup == nil {
		return s.cgroup, nil
	}
	c, err := hostcgroup.Load(*s.state.Cgroup)
	if err != nil {
		return nil, err
	}
	s.cgroup = c
	return c, nil
}

// AddProcess moves the host process pid (a cocoon-relay, say) into the
// caller's host cgroup, if the sandbox has one, so that what reads the
// container's cgroup through that PID (the runc shim's stats, podman
// stats) reads the caller's limits (hostcgroup.Cgroup.AddRelay).
func (s *Sandbox) AddProcess(pid int) error {
	c, err := s.hostCgroup()
	if err != nil || c == nil {
		return err
	}
	if err := c.AddRelay(pid); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.state.ID, err)
	}
	return nil
}

// MemoryCgroup returns the directory of the caller's memory cgroup on the
// host (v1's memory hierarchy, else v2's), where AddProcess puts the
// relays; "" when the sandbox has no host cgroup.
func (s *Sandbox) MemoryCgroup() (string, error) {
	c, err := s.hostCgroup()
	if err != nil || c == nil {
		return "", err
	}
	paths := c.Paths()
	if dir, ok := paths["memory"]; ok {
		return dir, nil
	}
	return paths[""], nil
}

// UpdateCgroup writes new limits to the sandbox's host cgroups, if it has
// them (an update of the container's resources): as given to the caller's,
// with the VM's overhead to the overhead cgroup.
func (s *Sandbox) UpdateCgroup(r *specs.LinuxResources) error {
	c, err := s.hostCgroup()
	if err != nil || c == nil {
		return err
	}
	return c.Update(r, s.GuestSize().MemoryMiB)
}

// destroyCgroup removes the host cgroups once the processes in it (relays
// exiting with the VM) have left.
func (s *Sandbox) destroyCgroup(ctx context.Context) error {
	c, err := s.hostCgroup()
	if err != nil || c == nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.m.Scaled(time.Second))
	defer cancel()
	return c.Destroy(cctx)
}
