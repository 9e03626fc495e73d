package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Container is one container in a running sandbox: the operations that
// both front ends need once it exists in the guest. It holds no state of
// its own beyond its ID and sandbox; cocoon-runtime's Record and the
// containerd shim's task keep theirs.
type Container struct {
	// ID is the container's ID in the sandbox.
	ID string
	sb *sandbox.Sandbox
}

// In returns container id of sandbox sb.
func In(sb *sandbox.Sandbox, id string) *Container {
	return &Container{ID: id, sb: sb}
}

// Sandbox returns the sandbox the container runs in.
func (c *Container) Sandbox() *sandbox.Sandbox { return c.sb }

// Stdio says which of a process's standard streams the caller attaches; a
// process with a terminal has one terminal stream instead, whatever it
// says.
type Stdio struct {
	Stdin, Stdout, Stderr bool
}

func (s Stdio) config() *api.StdioConfig {
	return &api.StdioConfig{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr}
}

// StdioOf is the Stdio that announces the streams of io.
func StdioOf(io agentclient.IO) Stdio {
	c := io.Config()
	return Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr}
}

// Exit is how a process ended.
type Exit struct {
	// Status follows runc: the exit code, or 128+N when killed by signal N.
	Status int
	// At is when it exited.
	At time.Time
	// OOMKilled is set when the guest's OOM killer ended it.
	OOMKilled bool
}

// Process is one process of a container as the guest sees it.
type Process struct {
	PID, PPID int
	UID       uint32
	State     string
	Cmdline   string
	// CPUTicks is user+system time in clock ticks.
	CPUTicks uint64
}

// agent returns the sandbox's shared connection to its agent.
func (c *Container) agent(ctx context.Context) (*agentclient.Client, error) {
	if c.sb == nil {
		return nil, ErrSandboxGone
	}
	return c.sb.Client(ctx)
}

// Start runs the init process's program.
func (c *Container) Start(ctx context.Context) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.StartContainer(ctx, &api.ContainerRequest{ContainerId: c.ID}); err != nil {
		return fmt.Errorf("starting container %s: %w", c.ID, err)
	}
	return nil
}

// Exec adds process p as execID and starts it; its streams (as stdio
// announces them) wait for Attach or a relay.
func (c *Container) Exec(ctx context.Context, execID string, p *specs.Process, stdio Stdio) error {
	gp, err := oci.GuestProcess(p)
	if err != nil {
		return err
	}
	data, err := json.Marshal(gp)
	if err != nil {
		return fmt.Errorf("exec %s: encoding the process: %w", execID, err)
	}
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: c.ID, ExecId: execID, ProcessJson: data, Stdio: stdio.config(),
	}); err != nil {
		return fmt.Errorf("exec %s in container %s: %w", execID, c.ID, err)
	}
	return nil
}

// Signal sends sig to the init process (execID empty) or to an exec'd
// one; with all, to every process of the container.
func (c *Container) Signal(ctx context.Context, execID string, sig unix.Signal, all bool) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.SignalProcess(ctx, &api.SignalProcessRequest{
		ContainerId: c.ID, ExecId: execID, Signal: uint32(sig), All: all,
	}); err != nil {
		return fmt.Errorf("signalling container %s: %w", c.ID, err)
	}
	return nil
}

// Kill sends SIGKILL to a process (execID) or to the whole container,
// best effort and with a deadline of its own: it cleans up after a failure,
// which may be ctx's.
func (c *Container) Kill(ctx context.Context, execID string, grace time.Duration) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	_ = c.Signal(kctx, execID, unix.SIGKILL, execID == "")
}

// Wait returns once the process has exited and its output is flushed to
// its streams.
func (c *Container) Wait(ctx context.Context, execID string) (Exit, error) {
	ag, err := c.agent(ctx)
	if err != nil {
		return Exit{}, err
	}
	resp, err := ag.WaitProcess(ctx, &api.ProcessRequest{ContainerId: c.ID, ExecId: execID})
	if err != nil {
		return Exit{}, err
	}
	e := Exit{Status: int(resp.GetExitStatus()), OOMKilled: resp.GetOomKilled(), At: time.Unix(0, resp.GetExitedAtUnixNanos())}
	if resp.GetExitedAtUnixNanos() == 0 {
		e.At = time.Now()
	}
	return e, nil
}

// Attach opens the process's streams and relays them to and from io.
func (c *Container) Attach(ctx context.Context, execID string, io agentclient.IO) (*agentclient.Attached, error) {
	ag, err := c.agent(ctx)
	if err != nil {
		return nil, err
	}
	return ag.Attach(ctx, c.ID, execID, io)
}

// CloseStdin closes the process's stdin in the guest.
func (c *Container) CloseStdin(ctx context.Context, execID string) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	_, err = ag.CloseStdin(ctx, &api.ProcessRequest{ContainerId: c.ID, ExecId: execID})
	return err
}

// Resize sets the size of the process's terminal.
func (c *Container) Resize(ctx context.Context, execID string, rows, cols uint32) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	_, err = ag.ResizeTty(ctx, &api.ResizeTtyRequest{ContainerId: c.ID, ExecId: execID, Rows: rows, Cols: cols})
	return err
}

// Pause freezes the container's processes.
func (c *Container) Pause(ctx context.Context) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.PauseContainer(ctx, &api.ContainerRequest{ContainerId: c.ID}); err != nil {
		return fmt.Errorf("pause container %s: %w", c.ID, err)
	}
	return nil
}

// Resume thaws them.
func (c *Container) Resume(ctx context.Context) error {
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.ResumeContainer(ctx, &api.ContainerRequest{ContainerId: c.ID}); err != nil {
		return fmt.Errorf("resume container %s: %w", c.ID, err)
	}
	return nil
}

// Update changes the container's cgroup limits in the guest (of the block
// I/O limits, nothing: see oci.GuestBlockIO).
func (c *Container) Update(ctx context.Context, r *specs.LinuxResources) error {
	guest := *r
	guest.BlockIO = oci.GuestBlockIO(r.BlockIO)
	data, err := json.Marshal(&guest)
	if err != nil {
		return fmt.Errorf("updating container %s: encoding resources: %w", c.ID, err)
	}
	ag, err := c.agent(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: c.ID, ResourcesJson: data}); err != nil {
		return fmt.Errorf("updating container %s: %w", c.ID, err)
	}
	return nil
}

// Stats returns the container's cgroup statistics in the guest, as runc's
// types.Stats in JSON.
func (c *Container) Stats(ctx context.Context) (json.RawMessage, error) {
	ag, err := c.agent(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := ag.StatsContainer(ctx, &api.ContainerRequest{ContainerId: c.ID})
	if err != nil {
		return nil, fmt.Errorf("reading stats of %s: %w", c.ID, err)
	}
	data := resp.GetStatsJson()
	if !json.Valid(data) {
		return nil, fmt.Errorf("reading stats of %s: the agent sent invalid JSON", c.ID)
	}
	return data, nil
}

// Processes lists the container's processes, with their guest PIDs.
func (c *Container) Processes(ctx context.Context) ([]Process, error) {
	ag, err := c.agent(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := ag.ListProcesses(ctx, &api.ContainerRequest{ContainerId: c.ID})
	if err != nil {
		return nil, fmt.Errorf("listing processes of %s: %w", c.ID, err)
	}
	var out []Process
	for _, p := range resp.GetProcesses() {
		out = append(out, Process{
			PID: int(p.GetPid()), PPID: int(p.GetPpid()), UID: p.GetUid(), State: p.GetState(),
			Cmdline: p.GetCmdline(), CPUTicks: p.GetCpuTimeTicks(),
		})
	}
	return out, nil
}

// Remove removes the container from the guest (with force a running one
// too) and its root file system and volumes from the share.
func (c *Container) Remove(ctx context.Context, force bool) error {
	if c.sb == nil {
		return nil
	}
	return c.sb.RemoveContainer(ctx, c.ID, force)
}

// IsGone tells whether err says that the process or container no longer
// exists in the guest (it exited, or was removed).
func IsGone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrFailedPrecondition)
}
