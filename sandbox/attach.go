package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/oci"
)

// ErrNotAttached is returned for container operations on a sandbox whose
// attach phase has not run.
var ErrNotAttached = errors.New("sandbox is not attached")

// AttachConfig is the container-specific configuration of a sandbox,
// applied by Attach after boot.
type AttachConfig struct {
	// Hostname is the guest's hostname; empty means the sandbox ID.
	Hostname string
	// DNS lines for the guest's own /etc/resolv.conf ("nameserver 10.0.0.1").
	DNS []string
	// Sysctls are applied to the guest kernel.
	Sysctls map[string]string
}

// Attach is the second phase of creation: the guest mounts the shared
// directory (tag ShareTag, at oci.GuestSharePath), takes the hostname, DNS
// and sysctls, and configures its NICs with the addresses, routes and
// neighbours of the network namespace given to Create, whose loopback then
// forwards to the guest's (CRI port-forward; see startForwarder).
func (s *Sandbox) Attach(ctx context.Context, cfg AttachConfig) error {
	if s.state.Attached {
		return fmt.Errorf("attaching sandbox %s: already attached", s.state.ID)
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = s.state.ID
	}
	c, err := s.Client(ctx)
	if err != nil {
		return fmt.Errorf("attaching sandbox %s: %w", s.state.ID, err)
	}
	if _, err := c.CreateSandbox(ctx, &api.CreateSandboxRequest{
		Hostname:        hostname,
		SharedMountTag:  ShareTag,
		SharedMountPath: oci.GuestSharePath,
		SharedMountType: s.sharedMountType(),
		Dns:             cfg.DNS,
		Sysctls:         cfg.Sysctls,
	}); err != nil {
		return fmt.Errorf("attaching sandbox %s: %w", s.state.ID, err)
	}
	if err := s.configureNetwork(ctx); err != nil {
		return fmt.Errorf("attaching sandbox %s: %w", s.state.ID, err)
	}
	s.state.Attached = true
	s.state.Hostname = hostname
	if err := s.save(); err != nil {
		return fmt.Errorf("attaching sandbox %s: %w", s.state.ID, err)
	}
	s.startForwarder()
	return nil
}

// sharedMountType is the file system the guest mounts the share with.
func (s *Sandbox) sharedMountType() string {
	if s.virtioFS() {
		return api.SharedMountVirtioFS
	}
	return api.SharedMount9p
}
