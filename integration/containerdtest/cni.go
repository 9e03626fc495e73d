package containerdtest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// cniPluginDir is where Debian's containernetworking-plugins installs the
// CNI plugins.
const cniPluginDir = "/usr/lib/cni"

// PodNetwork is the CNI network of the daemon's CRI pods: Debian's
// `bridge` plugin on a bridge of the test's own, with `host-local` IPAM
// keeping its state under the daemon's directory (not in
// /var/lib/cni/networks). The bridge holds the subnet's first address and
// is the pods' default gateway; no masquerade nor port mapping (they need
// iptables rules on the host).
type PodNetwork struct {
	// Name is the CNI network's name.
	Name string
	// Bridge is the host bridge's name (at most 15 bytes); Stop removes it.
	Bridge string
	// Subnet is the pods' IPv4 subnet, e.g. 198.51.100.0/24 (TEST-NET-2).
	Subnet string
	// Subnet6, if set, is an IPv6 subnet (e.g. in 2001:db8::/32) that
	// makes the network dual-stack.
	Subnet6 string
}

// Gateway is the bridge's address: the subnet's first.
func (n *PodNetwork) Gateway() (net.IP, error) {
	_, ipnet, err := net.ParseCIDR(n.Subnet)
	if err != nil || ipnet.IP.To4() == nil {
		return nil, fmt.Errorf("pod network %s: subnet %q is not an IPv4 CIDR", n.Name, n.Subnet)
	}
	gw := append(net.IP(nil), ipnet.IP.To4()...)
	gw[3]++
	return gw, nil
}

// CNIDirs are the directories of a private CNI setup: the plugins (Bin),
// the network's configuration (Conf) and host-local's address leases
// (State: one file per leased address in a directory named after the
// network).
type CNIDirs struct{ Bin, Conf, State string }

// CNIDirsIn are the CNI directories under dir: cni-bin, cni-conf and
// cni-state.
func CNIDirsIn(dir string) CNIDirs {
	return CNIDirs{filepath.Join(dir, "cni-bin"), filepath.Join(dir, "cni-conf"), filepath.Join(dir, "cni-state")}
}

// cniBinDir, cniConfDir and CNIStateDir are the daemon's CNI directories
// (config names the first two to the CRI plugin).
func (d *Daemon) cniBinDir() string  { return CNIDirsIn(d.Dir).Bin }
func (d *Daemon) cniConfDir() string { return CNIDirsIn(d.Dir).Conf }

// CNIStateDir is where host-local keeps the pods' address leases.
func (d *Daemon) CNIStateDir() string { return CNIDirsIn(d.Dir).State }

// Setup links the plugins that the network needs into dirs.Bin (loopback
// too: CRI runtimes set up every pod's lo with it) and writes the
// network's conflist into dirs.Conf.
func (n *PodNetwork) Setup(dirs CNIDirs) error {
	gw, err := n.Gateway()
	if err != nil {
		return err
	}
	if len(n.Bridge) > 15 || n.Bridge == "" {
		return fmt.Errorf("pod network %s: bridge name %q must have 1 to 15 bytes", n.Name, n.Bridge)
	}
	for _, dir := range []string{dirs.Bin, dirs.Conf, dirs.State} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		src := filepath.Join(cniPluginDir, p)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("CNI plugin %s (packaging/deps.sh installs containernetworking-plugins): %w", p, err)
		}
		if err := os.Symlink(src, filepath.Join(dirs.Bin, p)); err != nil {
			return err
		}
	}
	ranges := [][]map[string]any{{{"subnet": n.Subnet, "gateway": gw.String()}}}
	routes := []map[string]any{{"dst": "0.0.0.0/0"}}
	if n.Subnet6 != "" {
		ranges = append(ranges, []map[string]any{{"subnet": n.Subnet6}})
		routes = append(routes, map[string]any{"dst": "::/0"})
	}
	conf, err := json.MarshalIndent(map[string]any{
		"cniVersion": "0.4.0",
		"name":       n.Name,
		"plugins": []map[string]any{{
			"type":      "bridge",
			"bridge":    n.Bridge,
			"isGateway": true,
			"ipMasq":    false,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": dirs.State,
				"ranges":  ranges,
				"routes":  routes,
			},
		}},
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dirs.Conf, "10-"+n.Name+".conflist"), conf, 0o644)
}

// setupCNI sets the network up in the daemon's CNI directories.
func (d *Daemon) setupCNI(n *PodNetwork) error { return n.Setup(CNIDirsIn(d.Dir)) }

// libcniCacheDir is where libcni caches each attachment's result; the
// CRI plugin of containerd 1.6 and CRI-O (ocicni) have no setting to move
// it, so it is the one CNI state outside the daemon's directory (CNI DEL
// removes the files).
const libcniCacheDir = "/var/lib/cni/results"

// Leftovers reports the address leases in stateDir that CNI DEL did not
// release, the network's cached results and the interfaces still enslaved
// to the bridge.
func (n *PodNetwork) Leftovers(stateDir string) []string {
	var problems []string
	cached, _ := filepath.Glob(filepath.Join(libcniCacheDir, n.Name+"-*"))
	for _, c := range cached {
		problems = append(problems, "CNI result left: "+c)
	}
	entries, _ := os.ReadDir(filepath.Join(stateDir, n.Name))
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			problems = append(problems, "CNI lease left: "+e.Name())
		}
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return problems
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			problems = append(problems, fmt.Sprintf("interface %s left on bridge %s", l.Attrs().Name, n.Bridge))
		}
	}
	return problems
}

func (d *Daemon) cniLeftovers(n *PodNetwork) []string { return n.Leftovers(d.CNIStateDir()) }

// PodNetworkLeftovers reports the address leases and the interfaces on
// the bridge of the daemon's pod network, while the daemon runs.
func (d *Daemon) PodNetworkLeftovers() []string {
	if d.podNet == nil {
		return nil
	}
	return d.cniLeftovers(d.podNet)
}

// RemoveBridge deletes the network's bridge, which the bridge plugin
// creates on the first pod and never removes.
func (n *PodNetwork) RemoveBridge() error {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		if _, ok := err.(netlink.LinkNotFoundError); ok {
			return nil
		}
		return fmt.Errorf("finding bridge %s: %w", n.Bridge, err)
	}
	if err := netlink.LinkDel(br); err != nil {
		return fmt.Errorf("removing bridge %s: %w", n.Bridge, err)
	}
	return nil
}

// NetNSDevices reports what cocoon put into the network namespace mounted
// at path: its interfaces whose names start with tapPrefix, and the number
// of tc filters on the ingress of every interface (the mirred filters
// between a CNI interface and its tap).
func NetNSDevices(path, tapPrefix string) (taps []string, filters int, err error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, 0, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, 0, fmt.Errorf("listing the links of %s: %w", path, err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, tapPrefix) {
			taps = append(taps, l.Attrs().Name)
		}
		fs, err := h.FilterList(l, netlink.MakeHandle(0xffff, 0))
		if err != nil {
			continue // no ingress qdisc
		}
		filters += len(fs)
	}
	return taps, filters, nil
}
