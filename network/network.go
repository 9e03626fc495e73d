// Package network carries a container's network namespace into its VM, the
// way Kata Containers' "tcfilter" model does: Scan reads the interfaces,
// addresses, routes and neighbours that Docker or a CNI plugin put into the
// namespace; Setup creates one tap device per interface in that namespace
// and mirrors all traffic between the interface and the tap, both ways,
// with tc ingress qdiscs and mirred redirect filters; the VMM gets the taps'
// open descriptors and gives the guest virtio-net NICs with the interfaces'
// MAC addresses, and the agent configures the guest with what Scan found.
// Teardown removes the taps and the filters. Linux only; everything it does
// happens inside the given namespace, never in the caller's.
//
// Where the interface arrives after the VM booted (Docker's
// libnetwork-setkey prestart hook moves a veth into the namespace of the
// container PID), NewNamespace makes the namespace beforehand, CreateTap the
// tap that becomes the NIC at boot, Do starts the container PID inside it,
// and Connect mirrors the interface once the hooks have run.
//
// Taps are not persistent: they vanish with the VMM's descriptor, so a
// crashed VMM leaves only the filters on the interface, which Setup,
// Connect and Teardown remove (never an ingress qdisc holding filters that
// cocoon did not add).
package network

import (
	"errors"
	"net"
	"os"
)

// TapPrefix starts the name of every tap device this package creates, so
// that Setup can recognise and remove those that a crashed run left behind.
const TapPrefix = "cocoon_tap"

// ErrNoNamespace is returned for a namespace path that does not name a
// network namespace.
var ErrNoNamespace = errors.New("not a network namespace")

// Interface is a network interface of the namespace that the guest takes
// over: the guest's NIC gets its MAC address, MTU and addresses.
type Interface struct {
	// Name is the interface's name in the namespace (and in the guest).
	Name string `json:"name"`
	// MAC is the hardware address (aa:bb:cc:dd:ee:ff).
	MAC string `json:"mac"`
	MTU int    `json:"mtu"`
	// Addresses in CIDR notation; IPv6 link-local ones are left out (the
	// guest makes its own).
	Addresses []string `json:"addresses,omitempty"`
}

// Route is a route of the namespace through one of its Interfaces.
type Route struct {
	// Destination in CIDR notation; empty for a default route.
	Destination string `json:"destination,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	// Device is the Interface's name.
	Device string `json:"device"`
	Source string `json:"source,omitempty"`
	// Scope is netlink's RT_SCOPE_* value.
	Scope uint8 `json:"scope,omitempty"`
	// Family is 4 or 6.
	Family int `json:"family"`
}

// Neighbor is a permanent neighbour (ARP or NDP) entry of the namespace.
type Neighbor struct {
	IP     string `json:"ip"`
	MAC    string `json:"mac"`
	Device string `json:"device"`
}

// Config is what Scan found in a namespace.
type Config struct {
	Interfaces []Interface `json:"interfaces,omitempty"`
	Routes     []Route     `json:"routes,omitempty"`
	Neighbors  []Neighbor  `json:"neighbors,omitempty"`
}

// Empty tells whether there is nothing to carry into the guest (a
// namespace with only a loopback interface, as `--network none` makes).
func (c *Config) Empty() bool { return c == nil || len(c.Interfaces) == 0 }

// Link is an Interface mirrored to a tap device by Setup.
type Link struct {
	Interface Interface
	// TapName is the tap device's name in the namespace.
	TapName string
	// Tap is the open tap device: the VMM inherits it. The tap is not
	// persistent, so it vanishes once every descriptor of it is closed
	// (the VMM's too, when it exits or crashes).
	Tap *os.File
	// HardwareAddr is Interface.MAC, parsed.
	HardwareAddr net.HardwareAddr
}

// Close closes the tap descriptor of every link; the taps themselves go
// away once the VMM, too, has closed its copies.
func Close(links []Link) {
	for _, l := range links {
		if l.Tap != nil {
			l.Tap.Close()
		}
	}
}
