package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/cocoon-containers/cocoon/sandbox"
)

// Delete removes the container from its sandbox by the pod rules that both
// front ends follow, and says whether the sandbox went with it (the relays
// and waiters of its processes then lose the agent):
//
//   - a sandbox that cannot be asked (its VM gone, or unresponsive) is
//     killed with everything in it, within the configured wall-clock bound
//     (runtime.delete_timeout): a hung pod is never stuck in deletion;
//   - otherwise, under the sandbox's lock, which Create takes to join, the
//     sandbox's last container destroys it: the agent's power-off stops the
//     containers and syncs, and the teardown unmounts their shares, so the
//     container is not removed from the guest first;
//   - any other container is removed from the guest and the share.
//
// Whether other containers use the sandbox is read from its share, under
// that lock; if it cannot be read the delete fails: a VM is never
// destroyed on a guess.
func (c *Container) Delete(ctx context.Context) (sandboxGone bool, err error) {
	if c.sb == nil {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.m.Scaled(deleteTimeout))
	defer cancel()
	if err := c.sb.Health(ctx); err != nil {
		if err := c.killSandbox(ctx, err); err != nil {
			return false, err
		}
		return true, nil
	}
	lock, err := c.sb.Lock()
	if errors.Is(err, sandbox.ErrNotFound) {
		// Destroyed meanwhile, by another container's delete.
		c.sb = nil
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("deleting container %s: %w", c.ID, err)
	}
	defer lock.Unlock()
	others, err := c.otherMembers()
	if err != nil {
		return false, fmt.Errorf("deleting container %s: %w", c.ID, err)
	}
	if len(others) > 0 {
		if err := c.sb.RemoveContainer(ctx, c.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
			return false, fmt.Errorf("deleting container %s: %w", c.ID, err)
		}
		return false, nil
	}
	if err := c.sb.Destroy(ctx); err != nil {
		return false, fmt.Errorf("deleting container %s: %w", c.ID, err)
	}
	c.m.Log.WithField("sandbox", c.sb.ID()).Debug("sandbox destroyed with its last container")
	c.sandboxGone()
	return true, nil
}

// otherMembers lists the other containers of the sandbox: those with a
// directory in its share (Create makes it, a removal takes it away).
func (c *Container) otherMembers() ([]string, error) {
	ids, err := c.sb.Containers()
	if err != nil {
		return nil, err
	}
	var others []string
	for _, id := range ids {
		if id != c.ID {
			others = append(others, id)
		}
	}
	return others, nil
}

// killSandbox kills the container's sandbox, which cannot be asked, with
// all it holds, within the configured wall-clock bound.
func (c *Container) killSandbox(ctx context.Context, why error) error {
	c.m.Log.WithError(why).Warnf("container %s: killing its sandbox", c.ID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.m.Config.Runtime.DeleteTimeout.Duration)
	defer cancel()
	if err := c.sb.Kill(ctx); err != nil {
		return fmt.Errorf("deleting container %s: %w", c.ID, err)
	}
	c.sandboxGone()
	return nil
}

// sandboxGone forgets the destroyed sandbox, and its root if empty.
func (c *Container) sandboxGone() {
	c.sb = nil
	RemoveEmptyRoot(c.m.Root)
}

// Cleanup removes what container id left in its sandbox once its front end
// is gone without deleting it (a containerd shim that died: containerd
// then runs the shim's delete command for each of its containers). Pod
// rule: the sandbox's owner destroys it, whatever still runs in it (the
// pod went with its shim); a member is removed from it. A sandbox that is
// gone already is no error.
func Cleanup(ctx context.Context, m *sandbox.Manager, id string, pod Pod) error {
	ctx, cancel := context.WithTimeout(ctx, m.Scaled(deleteTimeout))
	defer cancel()
	sb, err := m.Load(ctx, pod.SandboxID)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cleaning up container %s: %w", id, err)
	}
	if pod.Owns {
		err := sb.Destroy(ctx)
		RemoveEmptyRoot(m.Root)
		return err
	}
	defer sb.Close()
	if err := sb.RemoveContainer(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("cleaning up container %s: %w", id, err)
	}
	return nil
}
