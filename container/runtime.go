package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hooks"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Runtime is cocoon-runtime's container layer: containers recorded under
// Root (runc's --root), their sandboxes under RuntimeSandboxRoot(Root), one
// relay (cocoon-relay) per container process, and the OCI hooks. One
// Runtime serves one command: the configuration is loaded once, and a
// sandbox found once keeps its agent connection for the whole command.
type Runtime struct {
	// Root holds the records, one directory per container.
	Root string
	// Config is the effective configuration.
	Config *config.Config
	// Relay is passed on to the relays.
	Relay RelayOptions
	// SystemdCgroup says cgroups paths are systemd's (--systemd-cgroup).
	SystemdCgroup bool
	// OnPoolTake runs when a sandbox was taken from the pool
	// (hypervisor.template_pool), to start a replacement.
	OnPoolTake func(sandbox.PoolKind)

	mu       sync.Mutex
	managers map[string]*sandbox.Manager
}

// NewRuntime returns the runtime of root with configuration cfg.
func NewRuntime(root string, cfg *config.Config, relay RelayOptions) *Runtime {
	return &Runtime{Root: root, Config: cfg, Relay: relay, managers: map[string]*sandbox.Manager{}}
}

func (r *Runtime) records() *RecordStore { return &RecordStore{Root: r.Root} }

// Manager returns the manager of the sandboxes under root, made once.
func (r *Runtime) Manager(root string) (*sandbox.Manager, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.managers[root]; m != nil {
		return m, nil
	}
	m, err := sandbox.NewManager(r.Config, root)
	if err != nil {
		return nil, err
	}
	m.OnPoolTake = r.OnPoolTake
	r.managers[root] = m
	return m, nil
}

// SandboxRoot is where this runtime's new sandboxes go.
func (r *Runtime) SandboxRoot() string { return RuntimeSandboxRoot(r.Root) }

// List returns the records of every container under the root.
func (r *Runtime) List() ([]*Record, error) { return r.records().List() }

// Load returns container id's record, without locking it.
func (r *Runtime) Load(id string) (*Record, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	return r.records().Load(id)
}

// Unresponsive tells whether the sandbox of a container that should run
// is stopped, which runc's statuses cannot say: state reports it running,
// and logs a warning.
func (r *Runtime) Unresponsive(rec *Record) bool {
	switch rec.CurrentStatus() {
	case Created, Running, Paused:
		return sandbox.Frozen(rec.SandboxRoot, rec.SandboxID)
	}
	return false
}

// RemoveLeftover removes what an aborted create left of container id: a
// directory without a record, as runc removes it.
func (r *Runtime) RemoveLeftover(id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(r.Root, id))
}

func validateID(id string) error {
	if id == "" {
		return errors.New("container id cannot be empty")
	}
	if err := statedir.ValidateID(id); err != nil {
		return fmt.Errorf("invalid container id: %w", err)
	}
	return nil
}

// Handle is a container opened by one command: its record, locked, and
// its sandbox (nil when gone). Close releases both.
type Handle struct {
	r    *Runtime
	rec  *Record
	lock *statedir.Lock
	m    *sandbox.Manager
	c    *Container
	// relay is the init process's relay when this command started it.
	relay *RelayProcess
}

// Record returns the container's record.
func (h *Handle) Record() *Record { return h.rec }

// Relay returns the init process's relay when this command created the
// container; nil otherwise.
func (h *Handle) Relay() *RelayProcess { return h.relay }

// Close releases the sandbox's agent connection and the record's lock.
func (h *Handle) Close() {
	if h.c.sb != nil {
		h.c.sb.Close()
	}
	h.Unlock()
}

// Unlock releases the record's lock only: other commands may act on the
// container while this one waits for it (run and exec in the foreground).
func (h *Handle) Unlock() {
	if h.lock != nil {
		h.lock.Unlock()
		h.lock = nil
	}
}

// Relock takes the record's lock again and reloads the record.
func (h *Handle) Relock() error {
	rec, lock, err := h.r.records().Lock(h.rec.ID)
	if err != nil {
		return err
	}
	h.rec, h.lock = rec, lock
	return nil
}

// Open locks container id's record and finds its sandbox.
func (r *Runtime) Open(ctx context.Context, id string) (*Handle, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	rec, lock, err := r.records().Lock(id)
	if err != nil {
		return nil, err
	}
	m, err := r.Manager(rec.SandboxRoot)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	sb, err := m.Load(ctx, rec.SandboxID)
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		sb = nil
	case err != nil:
		lock.Unlock()
		return nil, err
	}
	return &Handle{r: r, rec: rec, lock: lock, m: m, c: In(sb, id)}, nil
}

// CreateOptions are create's (and run's) flags.
type CreateOptions struct {
	ID            string
	Bundle        string
	PidFile       string
	ConsoleSocket string
	// Detach: nobody waits for the container in this process (create, run
	// --detach).
	Detach bool
}

// Create is runc create: it validates the bundle and the options, records
// the container, creates it in its pod's sandbox (Create), starts its
// relay, runs the prestart, createRuntime and createContainer hooks,
// carries the network the hooks made into the VM, writes the pid file and
// records the container as created. It returns the container opened. On
// failure everything it did is undone.
func (r *Runtime) Create(ctx context.Context, o CreateOptions) (_ *Handle, retErr error) {
	if err := validateID(o.ID); err != nil {
		return nil, err
	}
	bundle := o.Bundle
	if bundle == "" {
		bundle = "."
	}
	b, err := oci.LoadBundle(bundle)
	if err != nil {
		return nil, err
	}
	mode, err := NewStdioMode(b.Spec.Process.Terminal, o.ConsoleSocket, o.Detach)
	if err != nil {
		return nil, err
	}
	mode.setConsoleSize(b.Spec.Process)
	if err := checkPidFile(o.PidFile); err != nil {
		return nil, err
	}
	pod, err := PodOf(o.ID, b.Spec.Annotations)
	if err != nil {
		return nil, err
	}
	m, err := r.Manager(r.SandboxRoot())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.Scaled(m.Config.Agent.BootTimeout.Duration+createMargin))
	defer cancel()

	st := r.records()
	process := *b.Spec.Process
	rec := &Record{
		ID:          o.ID,
		Bundle:      b.Dir,
		Rootfs:      b.Rootfs,
		Status:      Creating,
		Created:     time.Now().UTC(),
		Annotations: b.Spec.Annotations,
		SandboxID:   pod.SandboxID,
		SandboxRoot: m.Root,
		Process:     &process,
		Hooks:       b.Spec.Hooks,
	}
	lock, err := st.Create(rec)
	if err != nil {
		return nil, err
	}
	h := &Handle{r: r, rec: rec, lock: lock, m: m}
	defer func() {
		if retErr != nil {
			h.Unlock()
			if err := st.Remove(o.ID); err != nil {
				m.Log.WithError(err).Warn("cleaning up a failed create")
			}
		}
	}()

	cr, err := Create(ctx, m, CreateConfig{
		ID: o.ID, Bundle: b, Pod: pod, Stdio: mode.stdio(),
		KnownNamespaces: r.podNamespaces(pod), RunsHooks: true, SystemdCgroup: r.SystemdCgroup,
	})
	if err != nil {
		return nil, err
	}
	rec.OwnsSandbox, rec.GuestPID = cr.Booted, cr.GuestPID
	h.c = cr.Container
	sb := cr.sb
	defer func() {
		if retErr != nil {
			// The process goes first: its relay then exits by itself,
			// and the relay's guard stays quiet (a killed relay's guard
			// would kill the process too, racing the removal).
			cr.Undo(ctx, func() { h.relay.stop(m.Scaled(relayGrace)) })
			sb.Close()
		}
	}()
	h.relay, err = startRelay(ctx, r.Relay, m.Accelerator.TimeoutScale(), relayConfig{
		sb: sb, containerID: o.ID, mode: mode, newNetNS: WantsNewNetNS(b.Spec), netNS: sb.NetNS(),
	})
	if err != nil {
		return nil, err
	}
	rec.Pid, rec.PidStart = h.relay.Pid, h.relay.start
	m.Log.WithFields(logrus.Fields{"container": o.ID, "pid": h.relay.Pid}).Debug("relay started")
	if err := runHooks(ctx, rec, specs.StateCreating, hooks.Prestart, hooks.CreateRuntime, hooks.CreateContainer); err != nil {
		return nil, err
	}
	// The hooks (Docker's libnetwork-setkey) have filled the namespace.
	if err := sb.ConnectNetwork(ctx); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := WritePidFile(o.PidFile, h.relay.Pid); err != nil {
			return nil, err
		}
	}
	rec.Status = Created
	if err := st.Save(rec); err != nil {
		return nil, err
	}
	return h, nil
}

// podNamespaces maps the namespaces of a pod's sandbox container, as the
// engine names them on the host (/proc/<its relay's PID>/ns/<type>), to
// the guest's; nil for the sandbox's owner or an unknown pod.
func (r *Runtime) podNamespaces(pod Pod) map[string]string {
	if pod.Owns || !pod.Member {
		return nil
	}
	infra, err := r.records().Load(pod.ID)
	if err != nil || infra.SandboxID != pod.SandboxID {
		return nil
	}
	return GuestNamespacePaths(infra.Pid, infra.GuestPID)
}

// callContext bounds a command's work on an existing container: the
// configured wall-clock bound, whatever the accelerator.
func (h *Handle) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.r.Config.Runtime.CommandTimeout.Duration)
}

// ready fails at once, with one line saying what to do, unless the
// container's sandbox is there and passes its health check.
func (h *Handle) ready(ctx context.Context) error {
	if h.c.sb == nil {
		return ErrSandboxGone
	}
	if err := h.c.sb.Health(ctx); err != nil {
		return fmt.Errorf("container %s: %w (delete --force %s removes it)", h.rec.ID, err, h.rec.ID)
	}
	return nil
}

// Start runs the init process's program, then the poststart hooks; a
// failing poststart hook kills the container, as with runc.
func (h *Handle) Start(ctx context.Context) error {
	rec := h.rec
	if err := CheckOp(OpStart, rec.ID, rec.CurrentStatus()); err != nil {
		return err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	// A container this command has just created (run) has a sandbox that
	// just answered: no health check.
	if h.relay == nil {
		if err := h.ready(ctx); err != nil {
			return err
		}
	}
	if err := h.c.Start(ctx); err != nil {
		return err
	}
	h.m.Log.WithField("container", rec.ID).Debug("container started")
	rec.Status = Running
	if err := h.r.records().Save(rec); err != nil {
		return err
	}
	if err := runHooks(ctx, rec, specs.StateRunning, hooks.Poststart); err != nil {
		_ = h.c.Signal(ctx, "", unix.SIGKILL, true)
		return err
	}
	return nil
}

// Delete is runc delete (with force: of a running container too): it
// removes the container from the guest (killing it), lets its relay exit,
// runs the poststop hooks, destroys the sandbox when no other container
// uses it, and removes the record.
func (h *Handle) Delete(ctx context.Context, force bool) error {
	rec, m, sb := h.rec, h.m, h.c.sb
	if !force {
		if err := CheckOp(OpDelete, rec.ID, rec.CurrentStatus()); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, m.Scaled(deleteTimeout))
	defer cancel()
	relayGrace := m.Scaled(relayGrace)
	if sb != nil {
		if err := sb.Health(ctx); err != nil {
			// Nothing in it can be asked: its VM is killed, and the
			// rest of the delete is bounded in wall-clock time.
			var kcancel context.CancelFunc
			ctx, kcancel = context.WithTimeout(ctx, h.r.Config.Runtime.DeleteTimeout.Duration)
			defer kcancel()
			if err := h.killSandbox(ctx, err); err != nil {
				return err
			}
			sb = nil
			// The relays lose the agent with the VM, and exit.
			relayGrace = min(relayGrace, killedRelayGrace)
		}
	}
	st := h.r.records()
	// The last container of a sandbox goes with it: the agent's power-off
	// stops the containers and syncs, and the sandbox's teardown unmounts
	// their share, so the container is not removed from the guest first
	// (one round trip less, and no guest-side cleanup that the VM's end
	// makes moot).
	last := sb != nil && !otherMembers(st, rec)
	if sb != nil {
		sbLock, err := sb.Lock()
		if err != nil {
			return err
		}
		defer sbLock.Unlock()
		if last {
			if err := sb.Destroy(ctx); err != nil {
				return err
			}
			h.c.sb = nil
			RemoveEmptyRoot(m.Root)
			m.Log.WithField("sandbox", rec.SandboxID).Debug("sandbox destroyed")
			// The relays lose the agent with the VM, and exit.
			relayGrace = min(relayGrace, killedRelayGrace)
		} else if err := sb.RemoveContainer(ctx, rec.ID, true); err != nil {
			m.Log.WithError(err).Warn("removing the container from its sandbox")
		}
	}
	stopRelay(ctx, rec.Pid, rec.PidStart, relayGrace)
	if h.relay != nil {
		// Started by this command: reap it.
		h.relay.stop(0)
	}
	if rec.Status != Creating {
		if err := runHooks(ctx, rec, specs.StateStopped, hooks.Poststop); err != nil {
			m.Log.WithError(err).Warn("poststop hooks")
		}
	}
	return st.Remove(rec.ID)
}

// otherMembers tells whether another container of the root uses rec's
// sandbox.
func otherMembers(st *RecordStore, rec *Record) bool {
	all, _ := st.List()
	for _, o := range all {
		if o.ID != rec.ID && o.SandboxID == rec.SandboxID && o.SandboxRoot == rec.SandboxRoot {
			return true
		}
	}
	return false
}

// Signal sends sig to the init process, or with all to every process of
// the container.
func (h *Handle) Signal(ctx context.Context, sig unix.Signal, all bool) error {
	if err := CheckOp(OpKill, h.rec.ID, h.rec.CurrentStatus()); err != nil {
		return err
	}
	if h.c.sb == nil {
		return ErrNotRunning
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		if sig != unix.SIGKILL || !errors.Is(err, sandbox.ErrUnresponsive) {
			return err
		}
		// What docker kill, docker rm -f and CRI-O's stop send: the only
		// way to end a process of a sandbox that cannot be asked is to
		// end the sandbox (its relays then exit).
		return h.killSandbox(ctx, err)
	}
	if err := h.c.Signal(ctx, "", sig, all); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (the agent may still deliver it if the sandbox recovers)", err)
		}
		return err
	}
	return nil
}

// killSandbox kills the container's unresponsive sandbox, within the
// configured delete bound.
func (h *Handle) killSandbox(ctx context.Context, why error) error {
	h.m.Log.WithError(why).Warnf("container %s: killing its sandbox", h.rec.ID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.r.Config.Runtime.DeleteTimeout.Duration)
	defer cancel()
	if err := h.c.sb.Kill(ctx); err != nil {
		return err
	}
	h.c.sb = nil
	RemoveEmptyRoot(h.m.Root)
	return nil
}

// Pause freezes the container's processes (pause) or thaws them, and
// records the status.
func (h *Handle) Pause(ctx context.Context, pause bool) error {
	op, to, do := OpResume, Running, h.c.Resume
	if pause {
		op, to, do = OpPause, Paused, h.c.Pause
	}
	if err := CheckOp(op, h.rec.ID, h.rec.CurrentStatus()); err != nil {
		return err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return err
	}
	if err := do(ctx); err != nil {
		return err
	}
	h.rec.Status = to
	return h.r.records().Save(h.rec)
}

// running fails unless the container runs (or is paused or created) in a
// sandbox that is there.
func (h *Handle) running() error {
	if h.rec.CurrentStatus() == Stopped || h.c.sb == nil {
		return ErrNotRunning
	}
	return nil
}

// Update changes the container's resources in its guest.
func (h *Handle) Update(ctx context.Context, res *specs.LinuxResources) error {
	if h.running() != nil {
		return errors.New("cannot update a stopped container")
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return err
	}
	if err := h.c.Update(ctx, res); err != nil {
		return err
	}
	if h.rec.OwnsSandbox {
		// The sandbox's host cgroup has the limits of the container it
		// was made for.
		return h.c.sb.UpdateCgroup(res)
	}
	return nil
}

// Stats returns the container's statistics (runc's types.Stats as JSON).
func (h *Handle) Stats(ctx context.Context) (json.RawMessage, error) {
	if err := h.running(); err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	return h.c.Stats(ctx)
}

// Processes lists the container's processes as the guest sees them.
func (h *Handle) Processes(ctx context.Context) ([]Process, error) {
	if err := h.running(); err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	return h.c.Processes(ctx)
}

// RelayPIDs lists the host PIDs of the live relays of the container's
// processes: init's first, then those of exec'd processes.
func (h *Handle) RelayPIDs() []int {
	if h.c.sb == nil {
		return []int{}
	}
	return relayPIDs(h.rec.Pid, relayAddress(h.c.sb), h.rec.ID)
}

// Process returns a copy of the container's process as create read it.
func (h *Handle) Process() (*specs.Process, error) {
	if h.rec.Process != nil {
		p := *h.rec.Process
		return &p, nil
	}
	// A record written before the process was kept in it.
	b, err := oci.LoadBundle(h.rec.Bundle)
	if err != nil {
		return nil, err
	}
	return b.Spec.Process, nil
}

// ExecOptions are exec's flags that are not the process's.
type ExecOptions struct {
	Detach        bool
	ConsoleSocket string
	PidFile       string
	// IgnorePaused allows exec in a paused container.
	IgnorePaused bool
}

// Exec starts process p in the container and its relay; in the
// foreground, the caller waits for the relay (RelayProcess.WaitForeground).
func (h *Handle) Exec(ctx context.Context, p *specs.Process, o ExecOptions) (*RelayProcess, error) {
	status := h.rec.CurrentStatus()
	if !(status == Paused && o.IgnorePaused) {
		if err := CheckOp(OpExec, h.rec.ID, status); err != nil {
			return nil, err
		}
	}
	mode, err := NewStdioMode(p.Terminal, o.ConsoleSocket, o.Detach)
	if err != nil {
		return nil, err
	}
	mode.setConsoleSize(p)
	if err := checkPidFile(o.PidFile); err != nil {
		return nil, err
	}
	execID, err := newExecID()
	if err != nil {
		return nil, err
	}
	ctx, cancel := h.callContext(ctx)
	defer cancel()
	if err := h.ready(ctx); err != nil {
		return nil, err
	}
	if err := h.c.Exec(ctx, execID, p, mode.stdio()); err != nil {
		return nil, err
	}
	rp, err := startRelay(ctx, h.r.Relay, h.m.Accelerator.TimeoutScale(), relayConfig{
		sb: h.c.sb, containerID: h.rec.ID, execID: execID, mode: mode,
	})
	if err != nil {
		h.c.Kill(ctx, execID, h.m.Scaled(2*time.Second))
		return nil, err
	}
	if o.PidFile != "" {
		if err := WritePidFile(o.PidFile, rp.Pid); err != nil {
			rp.Kill()
			return nil, err
		}
	}
	return rp, nil
}

// newExecID returns a random exec ID.
func newExecID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("choosing an exec id: %w", err)
	}
	return "exec-" + hex.EncodeToString(b[:]), nil
}
