// Package shimv2 is cocoon's containerd shim v2 task service: containerd
// drives it as it drives containerd-shim-runc-v2, and it adapts the task API
// to the container layer (package container), which runs the tasks in a
// cocoon sandbox (VM) and owns the pod and state rules; this package keeps
// containerd's side of a task: its processes' FIFOs and events, and the
// rootfs mount. One shim serves a pod: the pod's sandbox (pause) container
// creates the VM, and the containers whose CRI annotations name that
// sandbox join it (StartShim returns the running shim's address for them).
// A container outside a pod (ctr run) gets a shim and a VM of its own.
//
// The shim reaches the agent through the sandbox's cocoon-proxy, as every
// other host process does: one code path, the proxy already multiplexes
// the agent channel, and cocoon-runtime can reach the same VM meanwhile.
package shimv2

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// RuntimeName is the shim's runtime type in containerd's configuration.
const RuntimeName = "io.containerd.cocoon.v2"

// Service is the shim's task service.
type Service struct {
	// ctx lives as long as the shim; the waiters of processes use it.
	ctx       context.Context
	id        string
	publisher shim.Publisher
	// events is false when the shim's caller gave it no address to
	// publish events to: CRI-O, which reads every exit through Wait.
	events   bool
	shutdown func()

	// createMu serializes Create and Delete, which change the sandbox.
	createMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	manager *sandbox.Manager
	sb      *sandbox.Sandbox
	tasks   map[string]*task
}

// New returns the task service of the shim that serves the bundle in the
// working directory (its name is the shim's ID: its first container's),
// publishing events with publisher; shutdown ends the shim.
func New(ctx context.Context, publisher shim.Publisher, shutdown func()) (*Service, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return &Service{
		ctx:       ctx,
		id:        filepath.Base(cwd),
		publisher: publisher,
		events:    os.Getenv(ttrpcAddressEnv) != "",
		shutdown:  shutdown,
		tasks:     map[string]*task{},
	}, nil
}

// RegisterTTRPC serves the task API on the shim's TTRPC server.
func (s *Service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTTRPCTaskService(server, s)
	return nil
}

// RegisterTaskService registers the task service as the shim library's
// TTRPC plugin, which the shim serves (shim.RunShim); call it once, before.
func RegisterTaskService() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (any, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return New(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service).Shutdown)
		},
	})
}

// managerFor returns the sandbox manager of the containerd namespace that
// the shim serves, whose sandboxes are in a directory of their own per
// containerd instance and namespace (container.ContainerdSandboxRoot of the
// directory that holds the namespace's bundles, the parent of the shim's
// working directory: containerd runs every shim command in a bundle). Its
// configuration is cfgPath when the runtime options name one, else
// $COCOON_CONFIG or the default.
func managerFor(ctx context.Context, cfgPath string) (*sandbox.Manager, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if cfgPath == "" {
		cfgPath = os.Getenv(config.EnvPath)
	}
	cfg, err := config.Load(config.Path(cfgPath))
	if err != nil {
		return nil, err
	}
	l := log.G(ctx).WithField("namespace", ns)
	m, err := sandbox.NewManager(cfg, container.ContainerdSandboxRoot(filepath.Dir(cwd)), l)
	if err != nil {
		return nil, err
	}
	// The configuration the shim loaded, which the pool's refills load too.
	m.Factory = factory.New(cfgPath, l)
	return m, nil
}

// getManager returns the shim's sandbox manager, made on first use (the
// pod's first create) with the configuration at cfgPath ("": the default).
func (s *Service) getManager(ctx context.Context, cfgPath string) (*sandbox.Manager, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manager != nil {
		return s.manager, nil
	}
	m, err := managerFor(ctx, cfgPath)
	if err != nil {
		return nil, fmt.Errorf("loading cocoon's configuration: %w", err)
	}
	m.Log = m.Log.WithField("shim", s.id)
	s.manager = m
	return m, nil
}

// publish sends an event to containerd; failures are only logged. Without
// an address (CRI-O), there is no one to send it to.
func (s *Service) publish(topic string, event any) {
	if !s.events {
		return
	}
	if err := s.publisher.Publish(s.ctx, topic, event); err != nil {
		log.G(s.ctx).WithError(err).WithField("topic", topic).Warn("publishing event")
	}
}
