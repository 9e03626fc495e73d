package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"path/filepath"

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
	// only loopback (the container layer refuses such a container unless
	// runtime.host_namespaces is "guest").
	Host bool
	// New is set when the spec asks for a new network namespace without a
	// path, which Docker's libnetwork-setkey prestart hook fills (moving a
	// veth into the namespace of the container PID) after the VM booted.
	// Create makes the namespace (a file in the sandbox directory, see
	// NetNS) with a tap that is the guest's NIC; the caller starts the
	// container PID (the relay) in it, runs the hooks, then calls
	// ConnectNetwork.
	New bool
}

// NetworkOf tells where the network of a container with spec comes from.
// A new namespace that no prestart or createRuntime hook can fill (`ctr
// run`, a bare `cocoon-runtime run`) stays empty, as it would with runc:
// the guest gets loopback only, and no NIC is paid for.
func NetworkOf(spec *specs.Spec) Network {
	if spec == nil || spec.Linux == nil {
		return Network{Host: true}
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace {
			continue
		}
		if ns.Path == "" && !hasNetworkHooks(spec.Hooks) {
			return Network{}
		}
		return Network{NSPath: ns.Path, New: ns.Path == ""}
	}
	return Network{Host: true}
}

// hasNetworkHooks says whether hooks that run before the container's
// program (where Docker's libnetwork-setkey sits) exist.
func hasNetworkHooks(h *specs.Hooks) bool {
	//nolint:staticcheck // Prestart is deprecated in the spec, and still what Docker uses.
	return h != nil && (len(h.Prestart) > 0 || len(h.CreateRuntime) > 0)
}

// CreateOption configures Create.
type CreateOption func(*Options)

// Options are what Create's options set: what a sandbox is made for. A
// Factory reads them to give a ready sandbox that fits.
type Options struct {
	// Network is the guest's network (WithNetwork).
	Network Network
	// Cgroup is the host cgroup of its processes (WithCgroup).
	Cgroup Cgroup
	// Size is the guest's size (WithSize).
	Size Size
	// image is where the guest is to be saved (AsImage).
	image *hypervisor.Template
}

// Size is a sandbox's guest: vCPUs and memory. Zero fields take the
// configuration's hypervisor.vcpus and memory_mib.
type Size struct {
	VCPUs     int `json:"vcpus,omitempty"`
	MemoryMiB int `json:"memoryMiB,omitempty"`
}

// WithSize gives the sandbox's guest size z instead of the configured
// default.
func WithSize(z Size) CreateOption {
	return func(o *Options) { o.Size = z }
}

// WithNetwork gives the sandbox the network n (see Network); without it the
// guest has only loopback.
func WithNetwork(n Network) CreateOption {
	return func(o *Options) { o.Network = n }
}

// NetworkState is what is persisted about a sandbox's network so that
// Attach configures the guest and Destroy finds the taps and filters.
type NetworkState struct {
	NSPath string `json:"nsPath"`
	// Config is what the guest got; nil until ConnectNetwork for a
	// namespace made by Create.
	Config *network.Config `json:"config,omitempty"`
	// Owned is set for a namespace that Create made (Network.New): Destroy
	// removes it.
	Owned bool `json:"owned,omitempty"`
	// BootMAC is the MAC address the NIC of an owned namespace booted
	// with; ConnectNetwork gives it the interface's.
	BootMAC string `json:"bootMac,omitempty"`
	// BootMACs are the MAC addresses that the NICs of a sandbox restored
	// from a template started with (the template's), in interface order;
	// attach gives them the interfaces' own.
	BootMACs []string `json:"bootMacs,omitempty"`
}

// netnsFile is the sandbox directory's file on which an owned network
// namespace is mounted.
const netnsFile = "netns"

// setupNetwork scans the sandbox's namespace and mirrors its interfaces to
// taps, returned as NICs for the VM (nil for none). The caller closes the
// links once the VMM has them.
func (s *Sandbox) setupNetwork(n Network) ([]network.Link, []hypervisor.NIC, error) {
	if n.New {
		return s.newNetwork()
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

// newNetwork makes an empty namespace in the sandbox directory with a tap
// that becomes the guest's NIC (its interface arrives later: see
// ConnectNetwork).
func (s *Sandbox) newNetwork() ([]network.Link, []hypervisor.NIC, error) {
	path := filepath.Join(s.dir, netnsFile)
	mac, err := randomMAC()
	if err != nil {
		return nil, nil, err
	}
	s.state.Network = &NetworkState{NSPath: path, Owned: true, BootMAC: mac.String()}
	if err := s.save(); err != nil {
		return nil, nil, err
	}
	if err := network.NewNamespace(path); err != nil {
		return nil, nil, err
	}
	tap, err := network.CreateTap(path)
	if err != nil {
		return nil, nil, err
	}
	return []network.Link{{TapName: network.TapPrefix + "0", Tap: tap, HardwareAddr: mac}},
		[]hypervisor.NIC{{MAC: mac, Tap: tap}}, nil
}

// NetNS returns the network namespace that Create made for the sandbox
// (Network.New), in which the caller starts the container PID; "" when
// there is none.
func (s *Sandbox) NetNS() string {
	if n := s.state.Network; n != nil && n.Owned {
		return n.NSPath
	}
	return ""
}

// ConnectNetwork carries the interface that the prestart hooks put into
// the namespace of NetNS into the guest: it mirrors it to the NIC's tap
// and configures the guest (the NIC takes the interface's MAC). A
// namespace still holding only loopback (`docker run --network none`)
// leaves the NIC down. Without a namespace of its own, it does nothing.
func (s *Sandbox) ConnectNetwork(ctx context.Context) error {
	ns := s.state.Network
	if ns == nil || !ns.Owned || ns.Config != nil {
		return nil
	}
	cfg, err := network.Scan(ns.NSPath)
	if err != nil {
		return fmt.Errorf("connecting the network of sandbox %s: %w", s.state.ID, err)
	}
	if cfg.Empty() {
		return nil
	}
	ns.Config = cfg
	if err := s.save(); err != nil {
		return err
	}
	if err := network.Connect(ns.NSPath, cfg); err != nil {
		return fmt.Errorf("connecting the network of sandbox %s: %w", s.state.ID, err)
	}
	if err := s.configureNetwork(ctx); err != nil {
		return fmt.Errorf("connecting the network of sandbox %s: %w", s.state.ID, err)
	}
	return nil
}

// randomMAC returns a locally administered unicast MAC address.
func randomMAC() (net.HardwareAddr, error) {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("choosing a mac address: %w", err)
	}
	mac[0] = mac[0]&^1 | 2
	return mac, nil
}

// configureNetwork gives the guest the addresses, routes and neighbours
// of the namespace.
func (s *Sandbox) configureNetwork(ctx context.Context) error {
	ns := s.state.Network
	if ns == nil || ns.Config.Empty() {
		return nil
	}
	ifcs, routes := guestNetwork(ns.Config)
	switch {
	case ns.Owned && len(ifcs.Interfaces) == 1:
		// The NIC booted with its own MAC; it takes the interface's.
		ifcs.Interfaces[0].HardwareAddr = ifcs.Interfaces[0].Mac
		ifcs.Interfaces[0].Mac = ns.BootMAC
	case len(ns.BootMACs) == len(ifcs.Interfaces):
		// Restored from a template: the NICs have the template's MACs.
		for i, ifc := range ifcs.Interfaces {
			ifc.HardwareAddr = ifc.Mac
			ifc.Mac = ns.BootMACs[i]
		}
	}
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

// teardownNetwork removes the taps, tc filters and the port forwarding
// redirect from the namespace.
func (s *Sandbox) teardownNetwork() error {
	ns := s.state.Network
	if ns == nil {
		return nil
	}
	cfg := ns.Config
	if cfg == nil {
		cfg = &network.Config{}
	}
	err := network.Teardown(ns.NSPath, cfg)
	// The forwarder removes its redirect as it exits; not when killed.
	err = errors.Join(err, network.RemoveRedirect(ns.NSPath))
	if ns.Owned {
		err = errors.Join(err, network.RemoveNamespace(ns.NSPath))
	}
	return err
}
