package agent

import (
	"context"
	"encoding/json"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/api"
)

func (s *Service) containers() (*container.Manager, error) {
	if s.cfg.Containers == nil {
		return nil, errContainersDisabled
	}
	return s.cfg.Containers, nil
}

func (s *Service) container(id string) (*container.Container, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	c, err := m.Get(id)
	return c, rpcError(err)
}

func (s *Service) process(id, execID string) (*container.Process, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	p, err := c.Process(execID)
	return p, rpcError(err)
}

func stdioConfig(c *api.StdioConfig) container.StdioConfig {
	return container.StdioConfig{Stdin: c.GetStdin(), Stdout: c.GetStdout(), Stderr: c.GetStderr()}
}

// CreateContainer creates a container whose init process waits for
// StartContainer. The host attaches the streams it asked for in Stdio once
// this returns.
func (s *Service) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	spec, err := container.ParseSpec(req.SpecJson)
	if err != nil {
		return nil, rpcError(err)
	}
	if err := s.applyNetworkSysctls(spec); err != nil {
		return nil, rpcError(err)
	}
	c, err := m.Create(ctx, req.ContainerId, spec, stdioConfig(req.Stdio))
	if err != nil {
		return nil, rpcError(err)
	}
	return &api.CreateContainerResponse{Pid: int32(c.Init().Pid())}, nil
}

// StartContainer runs the init process's program.
func (s *Service) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// ExecProcess starts another process in a running container.
func (s *Service) ExecProcess(ctx context.Context, req *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	proc, err := container.ParseProcess(req.ProcessJson)
	if err != nil {
		return nil, rpcError(err)
	}
	p, err := c.Exec(ctx, req.ExecId, proc, stdioConfig(req.Stdio))
	if err != nil {
		return nil, rpcError(err)
	}
	return &api.ExecProcessResponse{Pid: int32(p.Pid())}, nil
}

// SignalProcess signals one process, or with All every process of the
// container.
func (s *Service) SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
	if req.Signal == 0 || req.Signal > 64 {
		return nil, rpcError(fmt.Errorf("%w: signal %d", errInvalid, req.Signal))
	}
	sig := unix.Signal(req.Signal)
	if req.All {
		c, err := s.container(req.ContainerId)
		if err != nil {
			return nil, err
		}
		return &api.Empty{}, rpcError(c.SignalAll(sig))
	}
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if err := p.Signal(sig); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// WaitProcess returns once the process has exited and its output is through
// to the streams the host attached, or said it would attach: a stream that
// was asked for and is never attached makes WaitProcess wait until its
// deadline.
func (s *Service) WaitProcess(ctx context.Context, req *api.ProcessRequest) (*api.WaitProcessResponse, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	st, err := p.Wait(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	return &api.WaitProcessResponse{
		ExitStatus:        int32(st.Code),
		ExitedAtUnixNanos: st.At.UnixNano(),
		OomKilled:         st.OOMKilled,
	}, nil
}

// CloseStdin closes the process's stdin.
func (s *Service) CloseStdin(ctx context.Context, req *api.ProcessRequest) (*api.Empty, error) {
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	p.CloseStdin()
	return &api.Empty{}, nil
}

// ResizeTty sets the size of the process's terminal.
func (s *Service) ResizeTty(ctx context.Context, req *api.ResizeTtyRequest) (*api.Empty, error) {
	if req.Rows > 0xffff || req.Cols > 0xffff {
		return nil, rpcError(fmt.Errorf("%w: terminal size %dx%d", errInvalid, req.Rows, req.Cols))
	}
	p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if err := p.Resize(uint16(req.Rows), uint16(req.Cols)); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// ListProcesses lists the processes of a container.
func (s *Service) ListProcesses(ctx context.Context, req *api.ContainerRequest) (*api.ListProcessesResponse, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	ps, err := c.Processes(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	resp := &api.ListProcessesResponse{}
	for _, p := range ps {
		resp.Processes = append(resp.Processes, &api.ProcessInfo{
			Pid:            int32(p.Pid),
			Ppid:           int32(p.Ppid),
			Uid:            p.UID,
			State:          p.State,
			Cmdline:        p.Cmdline,
			CpuTimeTicks:   p.CPUTicks,
			StartTimeTicks: p.StartTicks,
			RssBytes:       p.RSSBytes,
		})
	}
	return resp, nil
}

// StatsContainer returns the container's cgroup statistics as runc's
// types.Stats JSON.
func (s *Service) StatsContainer(ctx context.Context, req *api.ContainerRequest) (*api.StatsContainerResponse, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := c.Stats(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, rpcError(fmt.Errorf("encoding stats: %w", err))
	}
	// A cgroup without memory.events (none yet, or gone) has had no OOM kill
	// to report.
	oomKills, _ := c.OOMKillCount()
	return &api.StatsContainerResponse{StatsJson: b, OomKills: oomKills}, nil
}

// PauseContainer freezes the container.
func (s *Service) PauseContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.Pause(ctx); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// ResumeContainer thaws the container.
func (s *Service) ResumeContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.Resume(ctx); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// UpdateContainer changes the container's cgroup limits.
func (s *Service) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	r, err := container.ParseResources(req.ResourcesJson)
	if err != nil {
		return nil, rpcError(err)
	}
	if err := c.Update(ctx, r); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}

// RemoveContainer destroys a stopped or created container, or with Force a
// running one, which it kills first.
func (s *Service) RemoveContainer(ctx context.Context, req *api.RemoveContainerRequest) (*api.Empty, error) {
	m, err := s.containers()
	if err != nil {
		return nil, err
	}
	if err := m.Remove(ctx, req.ContainerId, req.Force); err != nil {
		return nil, rpcError(err)
	}
	return &api.Empty{}, nil
}
