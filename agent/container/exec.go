package container

import (
	"context"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Exec starts another process in the running container (runc exec).
func (c *Container) Exec(ctx context.Context, execID string, spec *specs.Process, stdio StdioConfig) (*Process, error) {
	if execID == "" {
		return nil, invalidf("exec id is required")
	}
	if err := checkProcess(spec); err != nil {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, err)
	}
	lp, as, err := newProcess(spec, c.m.inherited)
	if err != nil {
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, err)
	}
	if len(spec.Rlimits) == 0 {
		as = c.addressSpace // libcontainer gives it the container's rlimits
	}
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil, errorf(ErrNotFound, "container %s", c.id)
	}
	if _, dup := c.execs[execID]; dup {
		c.mu.Unlock()
		return nil, errorf(ErrAlreadyExists, "process %s of container %s", execID, c.id)
	}
	c.execs[execID] = nil // reserved
	c.mu.Unlock()

	status, err := c.lc.Status()
	if err == nil && status != libcontainer.Running {
		err = preconditionf("it is %s, not running", status)
	}
	var (
		p         *Process
		abandoned bool
	)
	if err == nil {
		abandoned, err = runCtx(ctx, func() error {
			var err error
			p, err = c.startProcess(execID, lp, as, spec.Terminal, stdio)
			return err
		}, func(err error) {
			if err == nil {
				_ = p.Signal(unix.SIGKILL)
				p.close()
			}
			c.unreserve(execID)
		})
	}
	if err != nil {
		if !abandoned {
			c.unreserve(execID)
		}
		return nil, fmt.Errorf("exec %s in container %s: %w", execID, c.id, err)
	}
	c.mu.Lock()
	c.execs[execID] = p
	c.mu.Unlock()
	p.log.Debug("process exec'd")
	return p, nil
}

func (c *Container) unreserve(execID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.execs[execID] == nil {
		delete(c.execs, execID)
	}
}
