package network

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openNS opens the network namespace at path (a /proc/<pid>/ns/net file or
// a bind mount of one, as CNI and `ip netns` make).
func openNS(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return 0, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(ns), &st); err != nil {
		ns.Close()
		return 0, fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		ns.Close()
		return 0, fmt.Errorf("opening network namespace %s: %w", path, ErrNoNamespace)
	}
	return ns, nil
}

// inNS runs fn on an OS thread that has entered ns, then returns the thread
// to its own namespace. Devices that must be opened in a namespace (tap
// devices are created in the namespace of the thread that opens
// /dev/net/tun) are opened in fn. If the thread cannot return, it stays
// locked and Go discards it when the goroutine ends.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("leaving network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
