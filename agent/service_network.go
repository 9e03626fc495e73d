package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/api"
)

// UpdateInterfaces configures the guest's NICs, found by MAC address:
// name, MAC (when HardwareAddr is set), MTU, addresses (those it had are
// replaced), up. lo comes up too.
func (s *Service) UpdateInterfaces(ctx context.Context, req *api.UpdateInterfacesRequest) (*api.Empty, error) {
	if err := updateInterfaces(s.netlink(), req.Interfaces); err != nil {
		return nil, rpcError(fmt.Errorf("updating interfaces: %w", err))
	}
	for _, ifc := range req.Interfaces {
		s.cfg.Log.WithFields(logrus.Fields{"name": ifc.Name, "mac": ifc.Mac, "mtu": ifc.Mtu, "addresses": ifc.Addresses}).Info("interface configured")
	}
	return &api.Empty{}, nil
}

// UpdateRoutes adds (or replaces) routes and permanent neighbour entries.
func (s *Service) UpdateRoutes(ctx context.Context, req *api.UpdateRoutesRequest) (*api.Empty, error) {
	if err := updateRoutes(s.netlink(), req); err != nil {
		return nil, rpcError(fmt.Errorf("updating routes: %w", err))
	}
	s.cfg.Log.WithFields(logrus.Fields{"routes": len(req.Routes), "neighbors": len(req.Neighbors)}).Info("routes configured")
	return &api.Empty{}, nil
}

func (s *Service) netlink() *netlink.Handle {
	if s.cfg.Netlink != nil {
		return s.cfg.Netlink
	}
	// The zero Handle talks to the namespace of the calling thread: the
	// guest's only one.
	return &netlink.Handle{}
}

func updateInterfaces(h *netlink.Handle, ifcs []*api.Interface) error {
	type planned struct {
		link   netlink.Link
		ifc    *api.Interface
		addrs  []*netlink.Addr
		hwaddr net.HardwareAddr
	}
	// Validate everything before changing anything.
	var plan []planned
	for _, ifc := range ifcs {
		mac, err := net.ParseMAC(ifc.Mac)
		if err != nil {
			return fmt.Errorf("%w: interface %q: mac %q: %w", errInvalid, ifc.Name, ifc.Mac, err)
		}
		if ifc.Name == "" || len(ifc.Name) >= unix.IFNAMSIZ {
			return fmt.Errorf("%w: interface name %q", errInvalid, ifc.Name)
		}
		p := planned{ifc: ifc}
		if ifc.HardwareAddr != "" {
			if p.hwaddr, err = net.ParseMAC(ifc.HardwareAddr); err != nil || len(p.hwaddr) != 6 {
				return fmt.Errorf("%w: interface %q: hardware address %q", errInvalid, ifc.Name, ifc.HardwareAddr)
			}
		}
		for _, a := range ifc.Addresses {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("%w: interface %s: address %q: %w", errInvalid, ifc.Name, a, err)
			}
			if addr.IP.To4() == nil {
				// No duplicate address detection: the address is the
				// container's own, known unique on its network, and DAD
				// would hold it back for a second or more.
				addr.Flags |= unix.IFA_F_NODAD
			}
			p.addrs = append(p.addrs, addr)
		}
		if p.link, err = linkByMAC(h, mac); err != nil {
			return fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		plan = append(plan, p)
	}
	if err := loopbackUp(h); err != nil {
		return err
	}
	for _, p := range plan {
		l, name := p.link, p.ifc.Name
		rename := l.Attrs().Name != name
		readdress := p.hwaddr != nil && p.hwaddr.String() != l.Attrs().HardwareAddr.String()
		if rename || readdress {
			if err := h.LinkSetDown(l); err != nil {
				return fmt.Errorf("interface %s: %w", name, err)
			}
		}
		if rename {
			if err := h.LinkSetName(l, name); err != nil {
				return fmt.Errorf("renaming %s to %s: %w", l.Attrs().Name, name, err)
			}
		}
		if readdress {
			if err := h.LinkSetHardwareAddr(l, p.hwaddr); err != nil {
				return fmt.Errorf("setting the mac of %s to %s: %w", name, p.hwaddr, err)
			}
		}
		if p.ifc.Mtu > 0 && int(p.ifc.Mtu) != l.Attrs().MTU {
			if err := h.LinkSetMTU(l, int(p.ifc.Mtu)); err != nil {
				return fmt.Errorf("setting the mtu of %s to %d: %w", name, p.ifc.Mtu, err)
			}
		}
		old, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("listing the addresses of %s: %w", name, err)
		}
		for _, a := range old {
			if a.IP.To4() == nil && a.IP.IsLinkLocalUnicast() {
				continue
			}
			if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("removing %s from %s: %w", a.IPNet, name, err)
			}
		}
		for _, a := range p.addrs {
			if err := h.AddrReplace(l, a); err != nil {
				return fmt.Errorf("adding %s to %s: %w", a.IPNet, name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bringing %s up: %w", name, err)
		}
	}
	return nil
}

func linkByMAC(h *netlink.Handle, mac net.HardwareAddr) (netlink.Link, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%w: no interface has mac %s", container.ErrNotFound, mac)
}

func updateRoutes(h *netlink.Handle, req *api.UpdateRoutesRequest) error {
	var routes []*netlink.Route
	for _, r := range req.Routes {
		l, err := h.LinkByName(r.Device)
		if err != nil {
			return fmt.Errorf("%w: route device %q: %w", errInvalid, r.Device, err)
		}
		rt := &netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.Scope(r.Scope)}
		switch r.Family {
		case 0, 4:
			rt.Family = unix.AF_INET
		case 6:
			rt.Family = unix.AF_INET6
		default:
			return fmt.Errorf("%w: route family %d", errInvalid, r.Family)
		}
		if r.Destination != "" {
			_, dst, err := net.ParseCIDR(r.Destination)
			if err != nil {
				return fmt.Errorf("%w: route destination %q: %w", errInvalid, r.Destination, err)
			}
			rt.Dst = dst
		}
		for _, f := range []struct {
			s  string
			ip *net.IP
		}{{r.Gateway, &rt.Gw}, {r.Source, &rt.Src}} {
			if f.s == "" {
				continue
			}
			if *f.ip = net.ParseIP(f.s); *f.ip == nil {
				return fmt.Errorf("%w: route address %q", errInvalid, f.s)
			}
		}
		routes = append(routes, rt)
	}
	for _, rt := range routes {
		if err := h.RouteReplace(rt); err != nil {
			return fmt.Errorf("adding route %s: %w", rt, err)
		}
	}
	for _, n := range req.Neighbors {
		l, err := h.LinkByName(n.Device)
		if err != nil {
			return fmt.Errorf("%w: neighbour device %q: %w", errInvalid, n.Device, err)
		}
		mac, err := net.ParseMAC(n.Mac)
		ip := net.ParseIP(n.Ip)
		if err != nil || ip == nil {
			return fmt.Errorf("%w: neighbour %q at %q", errInvalid, n.Ip, n.Mac)
		}
		family := unix.AF_INET6
		if ip.To4() != nil {
			family = unix.AF_INET
		}
		if err := h.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: family, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: mac}); err != nil {
			return fmt.Errorf("adding neighbour %s: %w", ip, err)
		}
	}
	return nil
}

// loopbackUp brings lo up: the kernel gives it its addresses.
func loopbackUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// applyNetworkSysctls moves the net.* sysctls of a container that uses the
// guest's network namespace (the host passes none: the guest's namespace
// carries the container's network) out of the spec and into the guest:
// libcontainer refuses them without a namespace of the container's own,
// yet they are the container's, as Docker sets them for its bridge
// networks (net.ipv4.ip_unprivileged_port_start, ping_group_range).
func (s *Service) applyNetworkSysctls(spec *specs.Spec) error {
	if spec.Linux == nil || len(spec.Linux.Sysctl) == 0 {
		return nil
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return nil
		}
	}
	names := make([]string, 0, len(spec.Linux.Sysctl))
	for name := range spec.Linux.Sysctl {
		if strings.HasPrefix(name, "net.") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeSysctl(s.cfg.ProcSysDir, name, spec.Linux.Sysctl[name]); err != nil {
			return fmt.Errorf("container sysctl: %w", err)
		}
		delete(spec.Linux.Sysctl, name)
	}
	return nil
}
