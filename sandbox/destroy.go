package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/proc"
)

// Destroy stops the containers and syncs through the agent, stops the VM
// and whatever is left (virtiofsd, proxy, port forwarder), removes the
// taps, tc filters and port forwarding redirect from the network namespace,
// unmounts whatever is still mounted in the share (containers that were
// never removed, a crashed run's) and removes the sandbox directory. It succeeds on a sandbox whose VM or proxy already died.
func (s *Sandbox) Destroy(ctx context.Context) error {
	return s.teardown(ctx, true /* graceful */)
}

func (s *Sandbox) teardown(ctx context.Context, graceful bool) error {
	if s.gone {
		return nil
	}
	var errs []error
	if s.vm != nil {
		if graceful {
			s.powerOff(ctx)
		}
		// Not graceful: a failed create's VM or one that cannot be asked
		// (Kill) is killed at once.
		grace := time.Duration(0)
		if graceful {
			grace = s.m.Scaled(stopGrace)
		}
		sctx, cancel := context.WithTimeout(ctx, grace)
		if err := s.vm.Stop(sctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	// After QEMU: the virtio-fs daemon exits once QEMU has disconnected.
	if err := s.stopVirtiofsd(ctx); err != nil {
		errs = append(errs, err)
	}
	if pid := s.state.ProxyPID; pid > 0 {
		// The proxy exits by itself once QEMU has closed the agent socket.
		if err := s.stopHelper(ctx, pid, "proxy"); err != nil {
			errs = append(errs, err)
		}
	}
	// After the proxy: the forwarder exits once its stream to the agent
	// has closed.
	if err := s.stopForwarder(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.Close(); err != nil {
		s.m.Log.WithError(err).Debug("closing the agent connection")
	}
	// After the VMM (QEMU, virtiofsd): the last hold on the share's
	// mount namespace, which takes its mounts along.
	s.releaseNS()
	// After QEMU is gone (its taps with it): the filters on the
	// namespace's interfaces.
	if err := s.teardownNetwork(); err != nil {
		errs = append(errs, err)
	}
	// After every process of the sandbox has stopped. A cgroup that
	// cannot go yet keeps the directory, whose state finds it again on the
	// next Destroy.
	if err := s.destroyCgroup(ctx); err != nil {
		errs = append(errs, err)
	} else if err := removeUnmounted(nil, s.dir); err != nil {
		// Never remove the directory while something is mounted under
		// it: that would delete a container's root file system or volumes.
		errs = append(errs, fmt.Errorf("removing sandbox directory: %w", err))
	} else if link := s.m.dir(s.state.ID); link != s.dir {
		// Adopted: its name links to its directory.
		if target, err := os.Readlink(link); err == nil && target == s.dir {
			if err := os.Remove(link); err != nil {
				errs = append(errs, fmt.Errorf("removing sandbox link: %w", err))
			}
		}
		if s.m.Factory != nil {
			s.m.Factory.Released(s.dir)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying sandbox %s: %w", s.state.ID, err)
	}
	s.gone, s.vm = true, nil
	return nil
}

// stopHelper waits briefly for one of the sandbox's host processes to exit
// by itself after QEMU, then terminates it.
func (s *Sandbox) stopHelper(ctx context.Context, pid int, name string) error {
	wctx, cancel := context.WithTimeout(ctx, s.m.Scaled(exitGrace))
	defer cancel()
	if err := proc.Wait(wctx, pid); err == nil {
		return nil
	}
	tctx, tcancel := context.WithTimeout(ctx, s.m.Scaled(stopGrace))
	defer tcancel()
	if err := proc.Terminate(tctx, pid); err != nil {
		return fmt.Errorf("stopping %s: %w", name, err)
	}
	return nil
}

// powerOff asks the agent to stop the containers and sync file systems.
// The guest has no disk: once the agent has replied nothing in it needs
// saving, so Stop quits QEMU at once rather than waiting for the guest's own
// power-off (which the agent still starts, as a fallback, a moment later).
// Failures only mean that Stop has more to do.
func (s *Sandbox) powerOff(ctx context.Context) {
	actx, cancel := context.WithTimeout(ctx, s.m.Scaled(time.Second))
	defer cancel()
	c, err := s.Client(actx)
	if err != nil {
		s.m.Log.WithError(err).Debug("agent unreachable; stopping the VM instead")
		return
	}
	if _, err := c.DestroySandbox(actx, &api.DestroySandboxRequest{}); err != nil {
		s.m.Log.WithError(err).Debug("agent did not power off; stopping the VM instead")
	}
}
