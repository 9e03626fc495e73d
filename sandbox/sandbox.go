// Package sandbox is cocoon's host-side sandbox: one VM, the proxy that
// multiplexes its agent channel, and the connection to the agent inside it,
// with its share, NICs and host cgroup. Creation has two phases, boot
// (nothing container-specific: kernel, initrd, agent ready; or a restore
// from a VM template, or a sandbox taken ready from the pool) and attach (a
// container's share, hostname, NIC configuration). Which containers a
// sandbox holds, and when it goes, are the container layer's pod rules
// (package container).
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hostcgroup"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/mountns"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/oci"
)

// DefaultRoot is where sandbox directories live. It is short, because
// QEMU's and the proxy's unix sockets live in a sandbox's directory and a
// socket path must stay under 108 bytes, and its name starts with a dot,
// which no container ID does, so that it can sit in cocoon-runtime's
// default root (/run/cocoon) beside the container directories.
// cocoon-runtime keeps one subdirectory per runtime root under it.
const DefaultRoot = "/run/cocoon/.vm"

// File names inside a sandbox directory.
const (
	stateFile   = "state.json"
	lockFile    = "lock"
	agentSocket = "agent.sock"
	proxySocket = "proxy.sock"
	consoleLog  = "console.log"
	proxyLog    = "proxy.log"
	sharedDir   = "shared"
	// ShareTag is the mount tag of the shared directory in the guest.
	ShareTag = "cocoon-share"
)

// ErrNotFound is returned by Load for a sandbox that does not exist.
var ErrNotFound = errors.New("sandbox not found")

// ErrExists is returned by Create for an ID already in use.
var ErrExists = errors.New("sandbox already exists")

// State is what is persisted about a sandbox so another process can find it.
type State struct {
	ID          string                 `json:"id"`
	VM          hypervisor.State       `json:"vm"`
	Accelerator hypervisor.Accelerator `json:"accelerator"`
	Transport   string                 `json:"transport"`
	VsockCID    uint32                 `json:"vsockCid,omitempty"`
	ProxyPID    int                    `json:"proxyPid,omitempty"`
	// ForwarderPID is the port forwarder (`cocoon-proxy forward`) of a
	// sandbox in a network namespace of the caller's.
	ForwarderPID int `json:"forwarderPid,omitempty"`
	// SharedFS is how the share reaches the guest: config's "9p" or
	// "virtio-fs" (empty in states written before virtio-fs: 9p).
	SharedFS string `json:"sharedFs,omitempty"`
	// VirtiofsdPID is the virtio-fs daemon serving the share.
	VirtiofsdPID int       `json:"virtiofsdPid,omitempty"`
	Created      time.Time `json:"created"`
	// Size is the guest's size (zero fields: the configuration's).
	Size Size `json:"size,omitempty"`
	// Attached is set once the attach phase (Attach) has run.
	Attached bool `json:"attached,omitempty"`
	// Template is the directory of the template the VM was restored
	// from; empty for a VM that booted.
	Template string `json:"template,omitempty"`
	// Hostname is the guest's hostname, set by Attach.
	Hostname string `json:"hostname,omitempty"`
	// Network is the namespace whose interfaces the guest took over; nil
	// when the guest has only loopback.
	Network *NetworkState `json:"network,omitempty"`
	// Cgroup is the host cgroup of the sandbox's host processes; nil for
	// none (see WithCgroup).
	Cgroup *hostcgroup.State `json:"cgroup,omitempty"`
}

// Manager creates and finds sandboxes under one root directory.
type Manager struct {
	// Root holds one directory per sandbox.
	Root string
	// Config is the effective configuration.
	Config *config.Config
	// Hypervisor boots the VMs.
	Hypervisor hypervisor.Hypervisor
	// Accelerator is the resolved accelerator (never "auto").
	Accelerator hypervisor.Accelerator
	// Log receives host-side diagnostics.
	Log *logrus.Entry
	// AgentDialer, when set, replaces the agent transport of every sandbox:
	// no proxy is started and every stream to the agent is opened with it.
	// Unit tests set it to a clienttest fake.
	AgentDialer agentclient.Dialer
	// Factory, when set, spares Create a cold boot where it can: a ready
	// sandbox, or an image to restore the VM from (package factory).
	Factory Factory
}

// Sandbox is a running VM with its agent channel.
type Sandbox struct {
	m     *Manager
	dir   string
	state State
	vm    hypervisor.VM

	mu    sync.Mutex          // guards agent
	agent *agentclient.Client // shared connection, see Client

	cgroup *hostcgroup.Cgroup // the host cgroup, once created or loaded
	// image is where a sandbox made AsImage is to be saved.
	image *hypervisor.Template
	// gone is set once the sandbox has been torn down: what is left of
	// it (this value) answers as a sandbox whose VM is gone.
	gone bool

	nsMu sync.Mutex // guards mntns
	// mntns is the mount namespace of the share's mounts (see shareNS),
	// once made or opened.
	mntns *os.File
}

// ID returns the sandbox ID.
func (s *Sandbox) ID() string { return s.state.ID }

// Dir returns the sandbox's private directory.
func (s *Sandbox) Dir() string { return s.dir }

// SharedDir returns the host directory the guest sees as its shared mount.
func (s *Sandbox) SharedDir() string { return filepath.Join(s.dir, sharedDir) }

// GuestSize returns the guest's vCPUs and memory, defaults resolved.
func (s *Sandbox) GuestSize() Size {
	z := s.state.Size
	if z.VCPUs == 0 {
		z.VCPUs = s.m.Config.Hypervisor.VCPUs
	}
	if z.MemoryMiB == 0 {
		z.MemoryMiB = s.m.Config.Hypervisor.MemoryMiB
	}
	return z
}

// Share returns the layout of the shared directory on both sides.
func (s *Sandbox) Share() oci.Share {
	return oci.Share{HostDir: s.SharedDir(), GuestDir: oci.GuestSharePath}
}

// State returns the persisted state.
func (s *Sandbox) State() State { return s.state }

// ConsoleLog returns the path of the guest console log.
func (s *Sandbox) ConsoleLog() string { return filepath.Join(s.dir, consoleLog) }

func (m *Manager) dir(id string) string { return filepath.Join(m.Root, id) }

// Scaled returns d multiplied by the accelerator's slowdown.
func (m *Manager) Scaled(d time.Duration) time.Duration {
	return d * m.Accelerator.TimeoutScale()
}

// Create boots a new sandbox and returns once its agent answers: the boot
// phase, with nothing container-specific, so that booted sandboxes can wait
// in a pool. Attach must run before containers are created. On any failure
// everything Create started or created is removed again. WithNetwork gives
// the guest the NICs of a network namespace.
func (m *Manager) Create(ctx context.Context, id string, opts ...CreateOption) (_ *Sandbox, retErr error) {
	var o Options
	for _, opt := range opts {
		opt(&o)
	}
	if err := statedir.ValidateID(id); err != nil {
		return nil, fmt.Errorf("creating sandbox: %w", err)
	}
	if err := os.MkdirAll(m.Root, 0o700); err != nil {
		return nil, fmt.Errorf("creating sandbox root: %w", err)
	}
	dir := m.dir(id)
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", id, ErrExists)
	}
	if m.Factory != nil && o.image == nil {
		if s := m.Factory.Take(ctx, m, id, o); s != nil {
			return s, nil
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("creating sandbox %s: %w", id, ErrExists)
		}
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	s := &Sandbox{m: m, dir: dir, state: State{
		ID:          id,
		Accelerator: m.Accelerator,
		Transport:   m.transport(),
		SharedFS:    m.Config.Hypervisor.SharedFS,
		Size:        o.Size,
		Created:     time.Now().UTC(),
	}, image: o.image}
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Scaled(undoTimeout))
			defer cancel()
			if err := s.teardown(cctx, false /* graceful */); err != nil {
				m.Log.WithError(err).Warn("cleaning up a failed sandbox")
			}
		}
	}()
	if err := os.Mkdir(s.SharedDir(), 0o700); err != nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	// The share's mounts are the VM's alone: a namespace of their own,
	// which the VMM enters and holds.
	ns, err := mountns.New()
	if err != nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	s.mntns = ns
	if err := shareMount(s.mntns, s.SharedDir(), s.virtioFS()); err != nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	links, nics, err := s.setupNetwork(o.Network)
	if err != nil {
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	if err := s.createCgroup(o.Cgroup); err != nil {
		network.Close(links)
		return nil, fmt.Errorf("creating sandbox %s: %w", id, err)
	}
	err = s.boot(ctx, nics)
	// QEMU holds the taps now (or failed): this process's copies go.
	network.Close(links)
	if err != nil {
		return nil, fmt.Errorf("booting sandbox %s: %w", id, err)
	}
	// The VMM holds the share's namespace now; this process lets go, so
	// that the namespace ends with the VM (shareNS finds it again).
	s.releaseNS()
	return s, nil
}

// Load finds a sandbox created earlier, possibly by another process.
func (m *Manager) Load(ctx context.Context, id string) (*Sandbox, error) {
	if err := statedir.ValidateID(id); err != nil {
		return nil, fmt.Errorf("loading sandbox: %w", err)
	}
	s := &Sandbox{m: m, dir: m.dir(id)}
	if target, err := os.Readlink(s.dir); err == nil && filepath.IsAbs(target) {
		// Taken from the pool: its files are where it was made.
		s.dir = target
	}
	if err := statedir.ReadJSON(filepath.Join(s.dir, stateFile), &s.state); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("loading sandbox %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("loading sandbox %s: %w", id, err)
	}
	vm, err := m.Hypervisor.Attach(ctx, s.state.VM)
	if err != nil && !errors.Is(err, hypervisor.ErrNotRunning) {
		return nil, fmt.Errorf("loading sandbox %s: %w", id, err)
	}
	s.vm = vm // nil when the VM is gone: Destroy still cleans up
	return s, nil
}

// Lock serializes operations on one sandbox across processes: creating a
// container in it and deciding, on a delete, whether it was the last. A
// sandbox destroyed before (or while waiting for) the lock is ErrNotFound.
func (s *Sandbox) Lock() (*statedir.Lock, error) {
	if s.gone {
		return nil, fmt.Errorf("locking sandbox %s: %w", s.state.ID, ErrNotFound)
	}
	l, err := statedir.LockFile(filepath.Join(s.dir, lockFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("locking sandbox %s: %w", s.state.ID, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	// The holder before may have destroyed it.
	if _, err := os.Stat(filepath.Join(s.dir, stateFile)); err != nil {
		l.Unlock()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("locking sandbox %s: %w", s.state.ID, ErrNotFound)
		}
		return nil, err
	}
	return l, nil
}

func (s *Sandbox) save() error {
	return statedir.WriteJSON(filepath.Join(s.dir, stateFile), s.state)
}
