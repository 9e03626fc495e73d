package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	_ "github.com/opencontainers/cgroups/devices" // device rules for the cgroup managers
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agent/reaper"
)

// Defaults of Config.
const (
	// DefaultRoot is libcontainer's state directory in the guest.
	DefaultRoot = "/run/cocoon/containers"
	// DefaultCgroupParent is the guest cgroup the containers' cgroups go under.
	DefaultCgroupParent = "/cocoon"
)

// Config configures a Manager.
type Config struct {
	// Root is libcontainer's state directory; DefaultRoot when empty.
	Root string
	// CgroupParent is the cgroup under which every container gets its own,
	// CgroupParent/<id>, whatever its spec's linux.cgroupsPath says (that
	// path names a host cgroup); DefaultCgroupParent when empty.
	CgroupParent string
	// NoPivotRoot makes containers use MS_MOVE and chroot instead of
	// pivot_root, as runc --no-pivot does. Only for roots pivot_root
	// refuses (an initramfs the agent did not move away from).
	NoPivotRoot bool
	// MountDir holds the guest-local mounts the agent makes for a
	// container, MountDir/<id> (see DefaultMountDir): device nodes the
	// shared directory cannot hold, and the root file system of a
	// container with a user namespace. Its parents must be searchable by
	// every user. DefaultMountDir when empty.
	MountDir string
	// Reaper starts every process and delivers its exit status.
	Reaper *reaper.Reaper
	// Log receives the manager's messages.
	Log *logrus.Entry
}

// Manager holds the containers of the guest.
type Manager struct {
	cfg Config
	// noNodes reports whether the file system of a guest directory
	// cannot hold device nodes (the 9p share); tests replace it.
	noNodes func(dir string) bool
	// inherited are the agent's limits when the manager was made, which
	// its processes get for the resources their specs leave out (see
	// ownRlimits).
	inherited []configs.Rlimit

	mu         sync.Mutex
	containers map[string]*Container // nil value: being created
}

// NewManager returns a manager with no containers.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Reaper == nil {
		return nil, errors.New("creating container manager: no reaper")
	}
	if cfg.Log == nil {
		return nil, errors.New("creating container manager: no logger")
	}
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.MountDir == "" {
		cfg.MountDir = DefaultMountDir
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("creating container manager: %w", err)
	}
	inherited, err := ownRlimits()
	if err != nil {
		return nil, fmt.Errorf("creating container manager: %w", err)
	}
	return &Manager{cfg: cfg, noNodes: on9p, inherited: inherited, containers: make(map[string]*Container)}, nil
}

// Create creates container id from spec (whose paths are guest paths): its
// init process exists, with its stdio, and waits for Start, as after runc
// create. spec is not modified.
func (m *Manager) Create(ctx context.Context, id string, spec *specs.Spec, stdio StdioConfig) (*Container, error) {
	if err := cleanID(id); err != nil {
		return nil, fmt.Errorf("creating container: %w", err)
	}
	if err := m.reserve(id); err != nil {
		return nil, err
	}
	var c *Container
	abandoned, err := runCtx(ctx, func() error {
		var err error
		c, err = m.create(id, spec, stdio)
		return err
	}, func(err error) {
		// The caller gave up: undo what was done.
		if err == nil {
			_ = c.destroy(context.Background(), true)
		}
		m.release(id)
	})
	if err != nil {
		if !abandoned {
			m.release(id)
		}
		return nil, fmt.Errorf("creating container %s: %w", id, err)
	}
	m.mu.Lock()
	m.containers[id] = c
	m.mu.Unlock()
	return c, nil
}

// reserve claims id for a container being created.
func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, taken := m.containers[id]; taken {
		return errorf(ErrAlreadyExists, "container %s", id)
	}
	m.containers[id] = nil
	return nil
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.containers, id)
}

func (m *Manager) create(id string, spec *specs.Spec, stdio StdioConfig) (_ *Container, err error) {
	spec, err = copySpec(spec)
	if err != nil {
		return nil, err
	}
	log := m.cfg.Log.WithField("container", id)
	if err := checkSpec(spec, log); err != nil {
		return nil, err
	}
	config, err := m.newConfig(id, spec)
	if err != nil {
		return nil, err
	}
	lp, as, err := newProcess(spec.Process, m.inherited)
	if err != nil {
		return nil, err
	}
	lp.Init = true
	log.Debug("create: spec translated")
	local, err := m.prepareLocal(id, config, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := local.release(); rerr != nil {
				log.WithError(rerr).Warn("undoing the guest mounts of a container that failed to start")
			}
		}
	}()
	log.Debug("create: guest mounts prepared")
	lc, err := libcontainer.Create(m.cfg.Root, id, config)
	log.Debug("create: libcontainer container made")
	if err != nil {
		return nil, stateError(err)
	}
	defer func() {
		if err != nil {
			if derr := lc.Destroy(); derr != nil {
				log.WithError(derr).Warn("destroying a container that failed to start")
			}
		}
	}()
	state, err := lc.State()
	if err != nil {
		return nil, fmt.Errorf("reading container state: %w", err)
	}
	cgm, err := manager.NewWithPaths(config.Cgroups, state.CgroupPaths)
	if err != nil {
		return nil, fmt.Errorf("opening container cgroup: %w", err)
	}
	c := &Container{id: id, m: m, lc: lc, cgm: cgm, log: log, execs: make(map[string]*Process), addressSpace: as, local: local}
	c.init, err = c.startProcess("", lp, as, spec.Process.Terminal, stdio)
	if err != nil {
		return nil, err
	}
	log.WithField("pid", c.init.pid).Info("container created")
	return c, nil
}

// copySpec returns a deep copy of spec, for checkSpec to adapt.
func copySpec(spec *specs.Spec) (*specs.Spec, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("copying spec: %w", err)
	}
	return ParseSpec(b)
}

// Get returns container id.
func (m *Manager) Get(id string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, errorf(ErrNotFound, "container %s", id)
	}
	return c, nil
}

// Process returns the process execID ("" for init) of container id.
func (m *Manager) Process(id, execID string) (*Process, error) {
	c, err := m.Get(id)
	if err != nil {
		return nil, err
	}
	return c.Process(execID)
}

// IDs returns the IDs of the containers, sorted.
func (m *Manager) IDs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for id, c := range m.containers {
		if c != nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Remove destroys container id: a stopped or created container, or with
// force any container, which is killed first. Its cgroup, state and stdio
// are released.
func (m *Manager) Remove(ctx context.Context, id string, force bool) error {
	c, err := m.Get(id)
	if err != nil {
		return err
	}
	if err := c.destroy(ctx, force); err != nil {
		return fmt.Errorf("removing container %s: %w", id, err)
	}
	m.mu.Lock()
	if m.containers[id] == c {
		delete(m.containers, id)
	}
	m.mu.Unlock()
	c.log.Info("container removed")
	return nil
}

// Shutdown kills and removes every container, for the end of the sandbox.
// It returns the first error, after trying them all.
func (m *Manager) Shutdown(ctx context.Context) error {
	var errs []error
	for _, id := range m.IDs() {
		if err := m.Remove(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runCtx runs fn and returns its error, or ctx's error as soon as ctx ends,
// with abandoned set: undo then runs with fn's result once fn returns.
// libcontainer's calls take no context; this is how they honour the host's
// deadline.
func runCtx(ctx context.Context, fn func() error, undo func(error)) (abandoned bool, err error) {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
		go func() { undo(<-done) }()
		return true, ctx.Err()
	}
}

// killWait is how long destroy waits for killed processes to be reaped when
// the caller's context has no deadline.
const killWait = 10 * time.Second
