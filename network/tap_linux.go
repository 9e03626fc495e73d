package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressHandle is the handle of an ingress qdisc (ffff:).
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// Setup mirrors every interface of cfg to a new tap device in the network
// namespace at nsPath and returns the taps, open. Taps and filters that a
// crashed run left behind are removed first. On failure nothing is left.
// The caller hands the taps to the VMM, then closes them (Close).
func Setup(nsPath string, cfg *Config) (_ []Link, retErr error) {
	ns, err := openNS(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var links []Link
	err = inNS(ns, func() error {
		if err := removeStale(cfg.Interfaces); err != nil {
			return err
		}
		for i, ifc := range cfg.Interfaces {
			l, err := mirror(i, ifc)
			if l.Tap != nil {
				links = append(links, l)
			}
			if err != nil {
				return fmt.Errorf("mirroring %s: %w", ifc.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		Close(links)
		_ = inNS(ns, func() error { return removeStale(cfg.Interfaces) })
		return nil, fmt.Errorf("setting up the network of %s: %w", nsPath, err)
	}
	return links, nil
}

// Teardown removes the tc filters from the interfaces of cfg and the taps
// that Setup created in the namespace at nsPath. A namespace that no
// longer exists has nothing left to remove.
func Teardown(nsPath string, cfg *Config) error {
	ns, err := openNS(nsPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tearing down the network of %s: %w", nsPath, err)
	}
	defer ns.Close()
	if err := inNS(ns, func() error { return removeStale(cfg.Interfaces) }); err != nil {
		return fmt.Errorf("tearing down the network of %s: %w", nsPath, err)
	}
	return nil
}

// mirror creates the i-th tap for ifc (in the current thread's namespace)
// and redirects each one's ingress to the other's egress.
func mirror(i int, ifc Interface) (Link, error) {
	l := Link{Interface: ifc, TapName: TapPrefix + strconv.Itoa(i)}
	var err error
	if l.HardwareAddr, err = net.ParseMAC(ifc.MAC); err != nil {
		return l, err
	}
	if l.Tap, err = createTap(l.TapName); err != nil {
		return l, err
	}
	return l, connect(ifc, l.TapName)
}

// createTap creates and opens a tap device in the current thread's
// namespace: one queue, vnet headers (QEMU negotiates checksum and
// segmentation offloads with them), not persistent: the tap lives as long
// as a descriptor of it is open, so a crashed VMM takes it along.
func createTap(name string) (*os.File, error) {
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		Queues:     1,
		NonPersist: true,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("creating tap %s: %w", name, err)
	}
	return tap.Fds[0], nil
}

// connect gives the tap ifc's MTU, brings both up and redirects each one's
// ingress to the other's egress.
func connect(ifc Interface, tapName string) error {
	veth, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", ifc.Name, err)
	}
	tap, err := netlink.LinkByName(tapName)
	if err != nil {
		return fmt.Errorf("finding %s: %w", tapName, err)
	}
	if ifc.MTU > 0 {
		if err := netlink.LinkSetMTU(tap, ifc.MTU); err != nil {
			return fmt.Errorf("setting the mtu of %s: %w", tapName, err)
		}
	}
	for _, l := range []netlink.Link{tap, veth} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bringing %s up: %w", l.Attrs().Name, err)
		}
	}
	if err := redirect(veth.Attrs().Index, tap.Attrs().Index); err != nil {
		return fmt.Errorf("redirecting %s to %s: %w", ifc.Name, tapName, err)
	}
	if err := redirect(tap.Attrs().Index, veth.Attrs().Index); err != nil {
		return fmt.Errorf("redirecting %s to %s: %w", tapName, ifc.Name, err)
	}
	return nil
}

// CreateTap creates the tap device TapPrefix+"0" in the namespace at
// nsPath, for an interface that does not exist yet (Connect mirrors it
// later), and returns it open. Taps that a crashed run left are removed
// first.
func CreateTap(nsPath string) (*os.File, error) {
	ns, err := openNS(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var f *os.File
	err = inNS(ns, func() error {
		if err := removeStale(nil); err != nil {
			return err
		}
		f, err = createTap(TapPrefix + "0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating a tap in %s: %w", nsPath, err)
	}
	return f, nil
}

// Connect mirrors the first interface of cfg to the tap that CreateTap
// made. Only one interface can be carried this way: the VM has one NIC.
func Connect(nsPath string, cfg *Config) error {
	if len(cfg.Interfaces) != 1 {
		return fmt.Errorf("connecting the network of %s: %d interfaces, the VM has one NIC", nsPath, len(cfg.Interfaces))
	}
	ns, err := openNS(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	err = inNS(ns, func() error {
		if err := removeIngressOf(cfg.Interfaces); err != nil {
			return err
		}
		return connect(cfg.Interfaces[0], TapPrefix+"0")
	})
	if err != nil {
		return fmt.Errorf("connecting the network of %s: %w", nsPath, err)
	}
	return nil
}

// redirect adds an ingress qdisc to link from and a filter that matches
// every packet arriving there and sends it out of link to: `tc qdisc add
// dev FROM ingress; tc filter add dev FROM parent ffff: protocol all u32
// match u8 0 0 action mirred egress redirect dev TO`.
func redirect(from, to int) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from, Handle: ingressHandle, Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscAdd(q); err != nil {
		return fmt.Errorf("adding ingress qdisc: %w", err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from, Parent: ingressHandle, Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR,
			Ifindex:      to,
		}},
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("adding mirred filter: %w", err)
	}
	return nil
}

// removeStale deletes (in the current thread's namespace) every tap named
// with TapPrefix and the ingress qdisc, with its mirred filters, of each
// interface. An ingress qdisc holding filters of another kind belongs to
// someone else: it is an error, not removed.
func removeStale(ifcs []Interface) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, TapPrefix) {
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting %s: %w", l.Attrs().Name, err))
			}
		}
	}
	if err := removeIngressOf(ifcs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeIngressOf removes the ingress qdiscs of ifcs (see removeIngress).
func removeIngressOf(ifcs []Interface) error {
	var errs []error
	for _, ifc := range ifcs {
		l, err := netlink.LinkByName(ifc.Name)
		if err != nil {
			continue // gone with its qdisc
		}
		if err := removeIngress(l); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ifc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// removeIngress deletes link's ingress qdisc if it holds only mirred
// redirect filters (ours) or none.
func removeIngress(l netlink.Link) error {
	qdiscs, err := netlink.QdiscList(l)
	if err != nil {
		return fmt.Errorf("listing qdiscs: %w", err)
	}
	for _, q := range qdiscs {
		if q.Type() != "ingress" {
			continue
		}
		filters, err := netlink.FilterList(l, ingressHandle)
		if err != nil {
			return fmt.Errorf("listing ingress filters: %w", err)
		}
		for _, f := range filters {
			if !isMirred(f) {
				return fmt.Errorf("the ingress qdisc has a filter that cocoon did not add (%s): not removing it", f.Type())
			}
		}
		if err := netlink.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("deleting ingress qdisc: %w", err)
		}
	}
	return nil
}

func isMirred(f netlink.Filter) bool {
	u, ok := f.(*netlink.U32)
	if !ok || len(u.Actions) == 0 {
		return false
	}
	for _, a := range u.Actions {
		if _, ok := a.(*netlink.MirredAction); !ok {
			return false
		}
	}
	return true
}
