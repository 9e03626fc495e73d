package agentclient

import (
	"context"

	"github.com/cocoon-containers/cocoon/api"
)

// The container API. Every call but WaitProcess has the client's call
// timeout unless ctx has a deadline; errors are translated as callError
// says, so that callers can test them with errors.Is(err, ErrNotFound) and
// the other sentinels.

// CreateSandbox is the attach phase of a booted guest: it mounts the shared
// directory and sets the hostname, DNS and guest sysctls.
func (c *Client) CreateSandbox(ctx context.Context, req *api.CreateSandboxRequest) (*api.Empty, error) {
	return call(ctx, c, "create sandbox", c.svc.CreateSandbox, req)
}

// Restored tells a guest restored from a template that a new host runs
// it: clock and CRNG reseed.
func (c *Client) Restored(ctx context.Context, req *api.RestoredRequest) (*api.Empty, error) {
	return call(ctx, c, "restored", c.svc.Restored, req)
}

// SetGuestTime sets the guest's clock.
func (c *Client) SetGuestTime(ctx context.Context, req *api.SetGuestTimeRequest) (*api.Empty, error) {
	return call(ctx, c, "set guest time", c.svc.SetGuestTime, req)
}

// CreateContainer creates a container whose spec has guest paths; its init
// process waits for StartContainer.
func (c *Client) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	return call(ctx, c, "create container", c.svc.CreateContainer, req)
}

// StartContainer runs the init process's program.
func (c *Client) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	return call(ctx, c, "start container", c.svc.StartContainer, req)
}

// ExecProcess starts another process in a running container.
func (c *Client) ExecProcess(ctx context.Context, req *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
	return call(ctx, c, "exec process", c.svc.ExecProcess, req)
}

// SignalProcess signals one process, or every process of the container.
func (c *Client) SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
	return call(ctx, c, "signal process", c.svc.SignalProcess, req)
}

// WaitProcess returns when the process has exited and its output has
// reached the attached streams. Unlike the other calls it has no default
// timeout, since processes run as long as they like: it ends when ctx does
// or when the connection to the agent is lost (ErrUnavailable).
func (c *Client) WaitProcess(ctx context.Context, req *api.ProcessRequest) (*api.WaitProcessResponse, error) {
	resp, err := c.svc.WaitProcess(ctx, req)
	if err != nil {
		return nil, callError(ctx, "wait process", err)
	}
	return resp, nil
}

// CloseStdin closes the process's stdin, as closing the write side of its
// stdin stream does.
func (c *Client) CloseStdin(ctx context.Context, req *api.ProcessRequest) (*api.Empty, error) {
	return call(ctx, c, "close stdin", c.svc.CloseStdin, req)
}

// ResizeTty sets the size of the process's terminal.
func (c *Client) ResizeTty(ctx context.Context, req *api.ResizeTtyRequest) (*api.Empty, error) {
	return call(ctx, c, "resize tty", c.svc.ResizeTty, req)
}

// ListProcesses lists the processes of a container.
func (c *Client) ListProcesses(ctx context.Context, req *api.ContainerRequest) (*api.ListProcessesResponse, error) {
	return call(ctx, c, "list processes", c.svc.ListProcesses, req)
}

// StatsContainer returns the container's cgroup statistics.
func (c *Client) StatsContainer(ctx context.Context, req *api.ContainerRequest) (*api.StatsContainerResponse, error) {
	return call(ctx, c, "stats container", c.svc.StatsContainer, req)
}

// PauseContainer freezes every process of the container.
func (c *Client) PauseContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	return call(ctx, c, "pause container", c.svc.PauseContainer, req)
}

// ResumeContainer thaws a paused container.
func (c *Client) ResumeContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	return call(ctx, c, "resume container", c.svc.ResumeContainer, req)
}

// UpdateContainer changes the container's cgroup resources.
func (c *Client) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	return call(ctx, c, "update container", c.svc.UpdateContainer, req)
}

// RemoveContainer destroys a stopped container, or with Force a running one.
func (c *Client) RemoveContainer(ctx context.Context, req *api.RemoveContainerRequest) (*api.Empty, error) {
	return call(ctx, c, "remove container", c.svc.RemoveContainer, req)
}

// UpdateInterfaces configures the guest's NICs (found by MAC address) and
// brings lo up.
func (c *Client) UpdateInterfaces(ctx context.Context, req *api.UpdateInterfacesRequest) (*api.Empty, error) {
	return call(ctx, c, "update interfaces", c.svc.UpdateInterfaces, req)
}

// UpdateRoutes adds the guest's routes and permanent neighbour entries.
func (c *Client) UpdateRoutes(ctx context.Context, req *api.UpdateRoutesRequest) (*api.Empty, error) {
	return call(ctx, c, "update routes", c.svc.UpdateRoutes, req)
}
