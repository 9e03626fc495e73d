package sandbox

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/network"
)

// Network says where a sandbox's network comes from; NetworkOf reads it
// from a container's spec.
type Network struct {
	// NSPath is a network namespace that the caller made (a CNI plugin,
	// a CRI runtime, `ip netns`): its interfaces are scanned before boot,
	// mirrored to taps that become the guest's NICs, and the guest gets
	// their addresses and routes in Attach.
	NSPath string
	// Host is set when the spec has no network namespace: the container
	// would share the host's network, which a VM cannot. The guest gets
	// only loopback, and Create logs a warning (CRI host-network pods must
	// still run).
	Host bool
}

// NetworkOf tells where the network of a container with spec comes from.
// A network namespace without a path (one the runtime itself creates, as
// for Docker, whose hooks fill it after the VM booted) gives the zero
// Network: no NIC at boot.
func NetworkOf(spec *specs.Spec) Network {
	if spec == nil || spec.Linux == nil {
		return Network{Host: true}
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return Network{NSPath: ns.Path}
		}
	}
	return Network{Host: true}
}

// CreateOption configures Create.
type CreateOption func(*createOptions)

type createOptions struct {
	network Network
}

// WithNetwork gives the sandbox the network n (see Network); without it the
// guest has only loopback.
func WithNetwork(n Network) CreateOption {
	return func(o *createOptions) { o.network = n }
}

// NetworkState is what is persisted about a sandbox's network so that
// Attach configures the guest and Destroy finds the taps and filters.
type NetworkState struct {
	NSPath string          `json:"nsPath"`
	Config *network.Config `json:"config"`
}

// setupNetwork scans the sandbox's namespace and mirrors its interfaces to
// taps, returned as NICs for the VM (nil for none). The caller closes the
// links once the VMM has them.
func (s *Sandbox) setupNetwork(n Network) ([]network.Link, []hypervisor.NIC, error) {
	if n.Host {
		s.m.Log.WithField("sandbox", s.state.ID).Warn("the container shares the host's network namespace, which a VM cannot: the guest gets only loopback")
		return nil, nil, nil
	}
	if n.NSPath == "" {
		return nil, nil, nil
	}
	cfg, err := network.Scan(n.NSPath)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Empty() {
		// Loopback only, as `--network none` makes: no NIC.
		return nil, nil, nil
	}
	s.state.Network = &NetworkState{NSPath: n.NSPath, Config: cfg}
	if err := s.save(); err != nil {
		return nil, nil, err
	}
	links, err := network.Setup(n.NSPath, cfg)
	if err != nil {
		return nil, nil, err
	}
	nics := make([]hypervisor.NIC, len(links))
	for i, l := range links {
		nics[i] = hypervisor.NIC{MAC: l.HardwareAddr, Tap: l.Tap, MTU: l.Interface.MTU}
	}
	return links, nics, nil
}

// configureNetwork gives the guest the addresses, routes and neighbours
// of the namespace.
func (s *Sandbox) configureNetwork(ctx context.Context) error {
	ns := s.state.Network
	if ns == nil || ns.Config.Empty() {
		return nil
	}
	ifcs, routes := guestNetwork(ns.Config)
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := c.UpdateInterfaces(ctx, ifcs); err != nil {
		return fmt.Errorf("configuring the guest's network: %w", err)
	}
	if _, err := c.UpdateRoutes(ctx, routes); err != nil {
		return fmt.Errorf("configuring the guest's network: %w", err)
	}
	return nil
}

// guestNetwork turns what Scan found into the agent's requests.
func guestNetwork(cfg *network.Config) (*api.UpdateInterfacesRequest, *api.UpdateRoutesRequest) {
	ifcs := &api.UpdateInterfacesRequest{}
	for _, i := range cfg.Interfaces {
		ifcs.Interfaces = append(ifcs.Interfaces, &api.Interface{Name: i.Name, Mac: i.MAC, Mtu: uint32(i.MTU), Addresses: i.Addresses})
	}
	routes := &api.UpdateRoutesRequest{}
	for _, r := range cfg.Routes {
		routes.Routes = append(routes.Routes, &api.Route{
			Destination: r.Destination, Gateway: r.Gateway, Device: r.Device,
			Source: r.Source, Scope: uint32(r.Scope), Family: uint32(r.Family),
		})
	}
	for _, n := range cfg.Neighbors {
		routes.Neighbors = append(routes.Neighbors, &api.Neighbor{Ip: n.IP, Mac: n.MAC, Device: n.Device})
	}
	return ifcs, routes
}

// teardownNetwork removes the taps and tc filters from the namespace.
func (s *Sandbox) teardownNetwork() error {
	ns := s.state.Network
	if ns == nil {
		return nil
	}
	return network.Teardown(ns.NSPath, ns.Config)
}
