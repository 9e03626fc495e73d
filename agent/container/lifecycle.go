package container

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// Start runs the init process's program (runc start).
func (c *Container) Start(ctx context.Context) error {
	status, err := c.lc.Status()
	if err != nil {
		return fmt.Errorf("starting container %s: %w", c.id, err)
	}
	if status != libcontainer.Created {
		return preconditionf("starting container %s: it is %s, not created", c.id, status)
	}
	// The init process waits on the exec FIFO: trace it to its exec, to
	// set its RLIMIT_AS there (see deferAddressSpace).
	var trace *execTrace
	if c.addressSpace != nil {
		if trace, err = traceExec(c.init.pid, c.addressSpace); err != nil {
			c.log.WithError(err).Warn("cannot trace the init process to its exec: setting RLIMIT_AS once it runs")
		}
	}
	if _, err := runCtx(ctx, c.lc.Exec, func(error) {}); err != nil {
		if trace != nil {
			trace.stop()
		}
		return fmt.Errorf("starting container %s: %w", c.id, stateError(err))
	}
	if c.addressSpace != nil {
		if trace != nil {
			err = trace.wait()
		}
		if trace == nil || errors.Is(err, errNotAtExec) {
			err = setAddressSpaceAfterExec(c.init.pid, c.addressSpace)
		}
		if err != nil {
			_ = c.lc.Signal(unix.SIGKILL)
			return fmt.Errorf("starting container %s: %w", c.id, err)
		}
	}
	c.log.Debug("container started")
	return nil
}

// SignalAll sends sig to every process of the container (runc kill --all).
// SIGKILL goes through cgroup v2's cgroup.kill, which kills every process
// of the cgroup at once, forks in flight included. Otherwise the cgroup is
// frozen while its processes are listed and signalled, so none escapes by
// forking.
func (c *Container) SignalAll(sig unix.Signal) error {
	if !c.cgm.Exists() {
		return preconditionf("container %s is not running", c.id)
	}
	paused, _ := c.isPaused()
	if sig == unix.SIGKILL {
		killed, err := c.killCgroup(paused)
		if err != nil {
			return fmt.Errorf("signalling container %s: %w", c.id, err)
		}
		if killed {
			return nil
		}
	}
	if !paused {
		if err := c.cgm.Freeze(cgroups.Frozen); err != nil {
			c.log.WithError(err).Warn("freezing before signalling every process")
		}
	}
	pids, err := c.cgm.GetAllPids()
	if err == nil {
		for _, pid := range pids {
			if kerr := unix.Kill(pid, sig); kerr != nil && kerr != unix.ESRCH {
				c.log.WithError(kerr).WithField("pid", pid).Warn("signalling a process")
			}
		}
	}
	// Thaw what this froze; and a paused container being killed, since a
	// frozen v1 cgroup only dies once thawed.
	if !paused || sig == unix.SIGKILL {
		if terr := c.cgm.Freeze(cgroups.Thawed); terr != nil {
			c.log.WithError(terr).Warn("thawing after signalling every process")
		}
	}
	if err != nil {
		return fmt.Errorf("signalling container %s: %w", c.id, err)
	}
	return nil
}

// killCgroup kills every process of the container through cgroup.kill, and
// tells whether it did: false, with no error, where there is no
// cgroup.kill (cgroup v1, or a kernel older than 5.14).
//
// It never freezes the cgroup. A freeze waits (10 s, in libcontainer's
// cgroups package, with no context) until the kernel reports the cgroup
// frozen, and the guest kernel may not report it while the cgroup's
// processes are dying from an earlier SIGKILL: a forced removal racing the
// guard of a killed shim took 12 s.
func (c *Container) killCgroup(paused bool) (bool, error) {
	dir := c.cgm.Path("")
	if dir == "" {
		return false, nil
	}
	err := cgroups.WriteFile(dir, "cgroup.kill", "1")
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// A frozen cgroup's processes die of cgroup.kill; thaw it all the same,
	// as libcontainer does, so that it no longer reads as paused.
	if paused {
		if terr := c.cgm.Freeze(cgroups.Thawed); terr != nil {
			c.log.WithError(terr).Warn("thawing after killing every process")
		}
	}
	return true, nil
}

func (c *Container) isPaused() (bool, error) {
	st, err := c.cgm.GetFreezerState()
	return st == cgroups.Frozen, err
}

// Pause freezes every process of the container.
func (c *Container) Pause(ctx context.Context) error {
	if err := c.lc.Pause(); err != nil {
		return fmt.Errorf("pausing container %s: %w", c.id, stateError(err))
	}
	return nil
}

// Resume thaws the container.
func (c *Container) Resume(ctx context.Context) error {
	if err := c.lc.Resume(); err != nil {
		return fmt.Errorf("resuming container %s: %w", c.id, stateError(err))
	}
	return nil
}

// destroy kills the container if force is set or it was never started,
// waits for its processes, and releases everything.
func (c *Container) destroy(ctx context.Context, force bool) error {
	status, err := c.lc.Status()
	if err != nil {
		return err
	}
	if status != libcontainer.Stopped {
		if !force && status != libcontainer.Created {
			return preconditionf("container %s is %s: stop it first, or force", c.id, status)
		}
		if status == libcontainer.Paused {
			_ = c.lc.Resume()
		}
		if err := c.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			c.log.WithError(err).Warn("killing the container")
		}
	}
	if c.cgm.Exists() {
		// Without a PID namespace of its own, exec'd processes and their
		// children outlive init.
		_ = c.SignalAll(unix.SIGKILL)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, killWait)
		defer cancel()
	}
	c.mu.Lock()
	c.removed = true
	procs := []*Process{c.init}
	for _, p := range c.execs {
		if p != nil {
			procs = append(procs, p)
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.exited:
		case <-ctx.Done():
			return fmt.Errorf("waiting for process %d to die: %w", p.pid, ctx.Err())
		}
	}
	if err := c.lc.Destroy(); err != nil {
		return fmt.Errorf("destroying container: %w", err)
	}
	if err := c.local.release(); err != nil {
		// The container is gone; a mount left behind costs little.
		c.log.WithError(err).Warn("releasing the container's guest mounts")
	}
	for _, p := range procs {
		p.close()
	}
	return nil
}
