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

// Container is one container in a sandbox: what both front ends call once
// it exists in the guest, and the pod rules they share (Signal, Delete).
// Beyond what Create learnt, it holds no state of its own: cocoon-runtime's
// Record and the containerd shim's processes keep theirs.
type Container struct {
	// ID is the container's ID in the sandbox.
	ID string
	// GuestPID is the init process's PID in the guest: a pod's sandbox
	// container's namespaces are joined there (0: not known).
	GuestPID int
	// OwnsSandbox is set for the container that booted its sandbox (a pod's
	// sandbox container, or a container outside a pod).
	OwnsSandbox bool

	m  *sandbox.Manager
	sb *sandbox.Sandbox // nil once the sandbox is gone
}

// In returns container id of sandbox sb (nil: gone) under manager m.
func In(m *sandbox.Manager, sb *sandbox.Sandbox, id string) *Container {
	return &Container{ID: id, m: m, sb: sb}
}

// Sandbox returns the sandbox the container runs in; nil once it is gone.
func (c *Container) Sandbox() *sandbox.Sandbox { return c.sb }

// Ready fails at once, saying why, unless the container's sandbox is there
// and passes its health check (sandbox.Health): nothing in a sandbox that
// cannot be asked can be done. The error is ErrSandboxGone,
// sandbox.ErrVMGone or sandbox.ErrUnresponsive.
func (c *Container) Ready(ctx context.Context) error {
	if c.sb == nil {
		return fmt.Errorf("container %s: %w", c.ID, ErrSandboxGone)
	}
	if err := c.sb.Health(ctx); err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	return nil
}

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

// Signal sends sig to the init process (execID empty) or to an exec'd one,
// with all to every process of the container, once the sandbox has passed
// its health check. The pod rule for a sandbox that cannot be asked: a
// SIGKILL (what docker kill, ctr task kill, crictl rmp -f and the kubelet
// send) kills its VM, the only way to end a process in it, and every
// process of the pod ends with it (one whose VM is gone already has
// ended); Delete then removes the rest. Any other signal fails with
// Ready's error.
func (c *Container) Signal(ctx context.Context, execID string, sig unix.Signal, all bool) error {
	if err := c.Ready(ctx); err != nil {
		if sig != unix.SIGKILL || !(errors.Is(err, sandbox.ErrUnresponsive) || errors.Is(err, sandbox.ErrVMGone)) {
			return err
		}
		c.m.Log.WithError(err).Warnf("container %s: killing its sandbox's VM", c.ID)
		return c.sb.KillVM(ctx)
	}
	if err := c.signal(ctx, execID, sig, all); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (the agent may still deliver it if the sandbox recovers)", err)
		}
		return err
	}
	return nil
}

// signal asks the agent to deliver sig.
func (c *Container) signal(ctx context.Context, execID string, sig unix.Signal, all bool) error {
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

// Kill sends SIGKILL to a process (execID) or to every process of the
// container (execID empty), best effort and with a deadline of its own: it
// cleans up after a failure, which may be ctx's, or after an init process
// that shared its PID namespace (its exit takes the others along).
func (c *Container) Kill(ctx context.Context, execID string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.m.Scaled(killGrace))
	defer cancel()
	if err := c.signal(kctx, execID, unix.SIGKILL, execID == ""); err != nil && !IsGone(err) {
		c.m.Log.WithError(err).WithField("container", c.ID).Debug("killing")
	}
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
// I/O limits, nothing: see oci.GuestBlockIO), and, for the container that
// made its sandbox, the sandbox's host cgroups (the caller's gets them as
// given, the overhead cgroup with the VM's costs added): both front ends,
// cocoon-runtime update and the shim's Update, come here.
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
	if c.OwnsSandbox && c.sb != nil {
		return c.sb.UpdateCgroup(r)
	}
	return nil
}

// Stats is what the guest says of a container's cgroup.
type Stats struct {
	// JSON is runc's types.Stats (what `runc events --stats` prints under
	// "data").
	JSON json.RawMessage
	// OOMKills counts the processes that the guest's OOM killer ended in
	// the container's memory cgroup.
	OOMKills uint64
}

// Stats returns the container's cgroup statistics in the guest.
func (c *Container) Stats(ctx context.Context) (Stats, error) {
	ag, err := c.agent(ctx)
	if err != nil {
		return Stats{}, err
	}
	resp, err := ag.StatsContainer(ctx, &api.ContainerRequest{ContainerId: c.ID})
	if err != nil {
		return Stats{}, fmt.Errorf("reading stats of %s: %w", c.ID, err)
	}
	data := resp.GetStatsJson()
	if !json.Valid(data) {
		return Stats{}, fmt.Errorf("reading stats of %s: the agent sent invalid JSON", c.ID)
	}
	return Stats{JSON: data, OOMKills: resp.GetOomKills()}, nil
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

// IsGone tells whether err says that the process or container no longer
// exists in the guest (it exited, or was removed).
func IsGone(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrFailedPrecondition)
}
