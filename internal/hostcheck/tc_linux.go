package hostcheck

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// tcCheck does in a new, unnamed network namespace what cocoon does in a
// container's: create a tap device, add an ingress qdisc to it, and
// redirect its ingress to another device with a u32 filter and a mirred
// action. The namespace, and every device in it, goes away when its last
// reference (this thread's) does; the caller's namespace is untouched.
func tcCheck() error {
	errc := make(chan error, 1)
	// A thread of its own that never returns to the Go scheduler's pool:
	// it exits, together with the namespace, when the goroutine ends.
	go func() {
		runtime.LockOSThread()
		errc <- tcInNewNetns()
	}()
	return <-errc
}

func tcInNewNetns() error {
	ns, err := netns.New() // unshares this thread's network namespace
	if err != nil {
		return fmt.Errorf("creating a network namespace: %w", err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	taps := make([]netlink.Link, 2)
	for i := range taps {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("cocoon-check%d", i)}, Mode: netlink.TUNTAP_MODE_TAP}
		if err := h.LinkAdd(tap); err != nil {
			return fmt.Errorf("creating a tap device: %w", err)
		}
		for _, f := range tap.Fds {
			f.Close()
		}
		l, err := h.LinkByName(tap.Name)
		if err != nil {
			return fmt.Errorf("finding the tap device: %w", err)
		}
		taps[i] = l
	}
	from, to := taps[0].Attrs().Index, taps[1].Attrs().Index
	qdisc := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
	}}
	if err := h.QdiscAdd(qdisc); err != nil {
		return fmt.Errorf("adding an ingress qdisc (sch_ingress): %w", err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(to)},
	}
	if err := h.FilterAdd(filter); err != nil {
		return fmt.Errorf("adding a u32 filter with a mirred redirect (cls_u32, act_mirred): %w", err)
	}
	filters, err := h.FilterList(taps[0], netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return fmt.Errorf("listing filters: %w", err)
	}
	if len(filters) == 0 {
		return fmt.Errorf("the mirred filter was accepted but is not listed")
	}
	return nil
}
