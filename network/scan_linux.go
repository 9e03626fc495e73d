package network

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// takenTypes are the link types whose interfaces the guest takes over:
// what Docker and the CNI plugins put into a container's namespace.
var takenTypes = map[string]bool{"veth": true, "device": true, "macvlan": true, "ipvlan": true}

// Scan reads the interfaces (all but loopback and the taps of this
// package), their addresses, the main table's routes through them and the
// permanent neighbour entries of the network namespace at nsPath.
func Scan(nsPath string) (*Config, error) {
	ns, err := openNS(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("scanning network namespace %s: %w", nsPath, err)
	}
	defer h.Close()
	cfg, err := scan(h)
	if err != nil {
		return nil, fmt.Errorf("scanning network namespace %s: %w", nsPath, err)
	}
	return cfg, nil
}

func scan(h *netlink.Handle) (*Config, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	cfg := &Config{}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || strings.HasPrefix(a.Name, TapPrefix) ||
			!takenTypes[l.Type()] || len(a.HardwareAddr) != 6 {
			continue
		}
		ifc := Interface{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.IP.To4() == nil && ad.IP.IsLinkLocalUnicast() {
				continue
			}
			ifc.Addresses = append(ifc.Addresses, ad.IPNet.String())
		}
		cfg.Interfaces = append(cfg.Interfaces, ifc)

		routes, err := h.RouteList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing routes of %s: %w", a.Name, err)
		}
		for _, r := range routes {
			// The kernel makes the connected routes again when the guest
			// gets the addresses; multipath and non-unicast routes are
			// not carried.
			if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
				continue
			}
			if r.Dst != nil && r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast() {
				continue
			}
			rt := Route{Device: a.Name, Scope: uint8(r.Scope), Family: 4}
			if r.Family == unix.AF_INET6 {
				rt.Family = 6
			}
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
					rt.Destination = r.Dst.String()
				}
			}
			if r.Gw != nil {
				rt.Gateway = r.Gw.String()
			}
			if r.Src != nil {
				rt.Source = r.Src.String()
			}
			cfg.Routes = append(cfg.Routes, rt)
		}

		neighs, err := h.NeighList(a.Index, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("listing neighbours of %s: %w", a.Name, err)
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT == 0 || len(n.HardwareAddr) != 6 {
				continue
			}
			cfg.Neighbors = append(cfg.Neighbors, Neighbor{IP: n.IP.String(), MAC: n.HardwareAddr.String(), Device: a.Name})
		}
	}
	return cfg, nil
}
