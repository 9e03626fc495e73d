package network

import (
	"errors"
	"fmt"
	"os"
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

// Namespace is an open network namespace.
type Namespace struct{ h netns.NsHandle }

// OpenNamespace opens the network namespace at path (a /proc/<pid>/ns/net
// file or a bind mount of one), resolved in the caller's mount namespace.
func OpenNamespace(path string) (*Namespace, error) {
	h, err := openNS(path)
	if err != nil {
		return nil, err
	}
	return &Namespace{h: h}, nil
}

// Enter moves the calling OS thread into n for good: the caller is on a
// thread of its own (proc.OnOwnThread), which then starts a process there.
func (n *Namespace) Enter() error {
	if err := netns.Set(n.h); err != nil {
		return fmt.Errorf("entering network namespace: %w", err)
	}
	return nil
}

// Close closes n.
func (n *Namespace) Close() error { return n.h.Close() }

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

// Do runs fn on an OS thread that has entered the network namespace at
// path. Processes that fn starts (exec.Cmd.Start forks from the calling
// thread) begin in that namespace.
func Do(path string, fn func() error) error {
	ns, err := openNS(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return inNS(ns, fn)
}

// NewNamespace creates an empty network namespace (loopback only, down)
// and bind-mounts it on path, a file it creates, as `ip netns add` does.
// RemoveNamespace undoes it.
func NewNamespace(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("creating network namespace %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(self, path, "", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(merr, fmt.Errorf("leaving the new namespace: %w", err))
			return // the thread stays locked and dies
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return fmt.Errorf("creating network namespace %s: %w", path, err)
	}
	return nil
}

// RemoveNamespace unmounts and removes a namespace file that NewNamespace
// made; the namespace ends once no process is in it. A missing file is
// not an error.
func RemoveNamespace(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace %s: %w", path, err)
	}
	return nil
}
