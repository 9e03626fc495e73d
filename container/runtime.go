package container

import (
	"context"

	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

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
	// Log receives the runtime's diagnostics (and its sandboxes').
	Log *logrus.Entry
	// Factory, when set, gives the sandboxes templates and ready sandboxes
	// (package factory).
	Factory sandbox.Factory

	mu       sync.Mutex
	managers map[string]*sandbox.Manager
}

// NewRuntime returns the runtime of root with configuration cfg, logging
// to log (nil: logrus's standard logger).
func NewRuntime(root string, cfg *config.Config, relay RelayOptions, log *logrus.Entry) *Runtime {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Runtime{Root: root, Config: cfg, Relay: relay, Log: log, managers: map[string]*sandbox.Manager{}}
}

func (r *Runtime) records() *RecordStore { return &RecordStore{Root: r.Root} }

// Manager returns the manager of the sandboxes under root, made once.
func (r *Runtime) Manager(root string) (*sandbox.Manager, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.managers[root]; m != nil {
		return m, nil
	}
	m, err := sandbox.NewManager(r.Config, root, r.Log)
	if err != nil {
		return nil, err
	}
	m.Factory = r.Factory
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
	c := In(m, sb, id)
	c.GuestPID, c.OwnsSandbox = rec.GuestPID, rec.OwnsSandbox
	return &Handle{r: r, rec: rec, lock: lock, c: c}, nil
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
	ctx, cancel := CreateContext(ctx, m)
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
	h := &Handle{r: r, rec: rec, lock: lock}
	defer func() {
		if retErr != nil {
			h.Unlock()
			if err := st.Remove(o.ID); err != nil {
				m.Log.WithError(err).Warn("cleaning up a failed create")
			}
		}
	}()

	c, err := Create(ctx, m, CreateConfig{
		ID: o.ID, Bundle: b, Pod: pod, Stdio: mode.stdio(),
		KnownNamespaces: r.podNamespaces(pod), RunsHooks: true, SystemdCgroup: r.SystemdCgroup,
	})
	if err != nil {
		return nil, err
	}
	rec.OwnsSandbox, rec.GuestPID = c.OwnsSandbox, c.GuestPID
	h.c = c
	sb := c.sb
	defer func() {
		if retErr != nil {
			// The process goes first: its relay then exits by itself,
			// and the relay's guard stays quiet (a killed relay's guard
			// would kill the process too, racing the removal).
			c.Undo(ctx, func() { h.relay.stop(m.Scaled(relayGrace)) })
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
