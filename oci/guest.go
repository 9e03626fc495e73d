package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrUnsupported is wrapped by errors about specs that ask for what a
// container in a VM cannot have.
var ErrUnsupported = errors.New("not supported in a vm")

// Bind is a bind mount the host makes into the share before the agent
// creates the container.
type Bind struct {
	// Source is the host path to mount, absolute.
	Source string
	// Target is the mount point inside the share's host directory.
	Target string
	// Guest is where the guest sees Target.
	Guest string
	// ReadOnly makes the host mount read-only too (defence in depth: the
	// guest kernel is not trusted to honour "ro"): the top of the tree
	// only, its submounts keeping their own flags, as "ro" does with runc;
	// with Recursive ("rro") every mount of the tree.
	ReadOnly, Recursive bool
	// SealReadOnly asks for the host mount to be made read-only once the
	// container is created: set for a read-only root file system, in
	// which the guest's runtime may still need to create mount points
	// (runc makes the root read-only only at the end of its setup).
	SealReadOnly bool
	// File is set when Source is not a directory: Target is then a file.
	File bool
	// FromHost makes every mount of the host's side a slave of the
	// source's, so that what the host mounts under the source later
	// reaches the guest (where the source is a shared mount; a private
	// one propagates nothing, as with runc). Without it the host's side
	// is private. See HostPropagation.
	FromHost bool
}

// GuestSpec is a container's spec translated for the guest.
type GuestSpec struct {
	// Spec is what the agent gets: a copy of the bundle's spec with guest
	// paths.
	Spec *specs.Spec
	// Binds are the host bind mounts to make, the root file system first.
	Binds []Bind
	// Hooks are the bundle's hooks that run in the runtime's namespaces
	// (prestart, createRuntime, createContainer, poststart, poststop),
	// stripped from Spec: their paths are host paths, and the host runtime
	// runs them. startContainer hooks, whose paths resolve in the
	// container, stay in Spec for the guest.
	Hooks *specs.Hooks
	// NetNSPath is the host network namespace the caller made for the
	// container (Docker's or CNI's), dropped from Spec: the guest's network
	// is the container's, and the runtime mirrors this namespace's
	// interfaces into the guest. Empty when the spec named none.
	NetNSPath string
	// HostCgroupsPath is the spec's cgroups path, which names a host
	// cgroup; the guest's container gets GuestCgroupsPath(id) instead.
	HostCgroupsPath string
}

// maxGuestSpecSize bounds the translated spec, which travels in one ttrpc
// message of at most 4 MiB along with the request's other fields.
const maxGuestSpecSize = 4<<20 - 4<<10

// GuestCgroupsPath is the cgroup of container id inside the guest.
func GuestCgroupsPath(id string) string { return "/cocoon/" + id }

// isBind reports whether m is a bind mount, by type or by option.
func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// ForGuest translates b's spec for container id in a sandbox whose shared
// directory is share:
//
//   - root.path becomes the guest path of the rootfs in the share;
//   - bind mount sources become guest paths of mounts in the share (a
//     relative source is relative to the bundle, as runc has it), and each
//     becomes a Bind; other mounts are unchanged;
//   - the network namespace is dropped (a path goes to NetNSPath): the
//     container uses the guest's, which carries the network of its host
//     namespace (the sandbox package mirrors it into the VM; a new
//     namespace that Docker fills later is mirrored in the same way).
//     Joining any other namespace by path is ErrUnsupported unless
//     Bundle.GuestNamespaces maps the path to the guest's: host paths mean
//     nothing in the guest;
//   - host hooks are moved to Hooks; host security labels (AppArmor, SELinux),
//     Intel RDT and network devices are dropped; the cgroups path becomes
//     GuestCgroupsPath(id).
//
// b.Spec is not modified.
func ForGuest(b *Bundle, id string, share Share) (*GuestSpec, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("translating spec: %w", err)
	}
	spec, err := clone(b.Spec)
	if err != nil {
		return nil, fmt.Errorf("translating spec: %w", err)
	}
	g := &GuestSpec{Spec: spec}
	g.Hooks, spec.Hooks = splitHooks(spec.Hooks)

	hostRoot, guestRoot := share.Rootfs(id)
	// A read-only root becomes read-only on the host too, once the guest
	// has made the container's mount points in it: the guest kernel and the
	// VMM serving the share are not trusted to honour "ro".
	g.Binds = append(g.Binds, Bind{Source: b.Rootfs, Target: hostRoot, Guest: guestRoot, SealReadOnly: b.Spec.Root.Readonly})
	spec.Root.Path = guestRoot

	var rootfsPropagation string
	if b.Spec.Linux != nil {
		rootfsPropagation = b.Spec.Linux.RootfsPropagation
	}
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		if !isBind(*m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(b.Dir, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("translating spec: %w", invalid("mounts[%d] (%s): source %s does not exist", i, m.Destination, src))
			}
			return nil, fmt.Errorf("translating spec: mounts[%d] (%s): %w", i, m.Destination, err)
		}
		host, guest := share.Mount(id, i)
		rro := slices.Contains(m.Options, "rro")
		ro := rro || slices.Contains(m.Options, "ro")
		if ro && !rro && fi.IsDir() {
			// The guest sees the tree as one mount of the shared file
			// system, where "ro" would make the submounts read-only too:
			// the host's side alone is made read-only, at the top.
			sub, err := hasSubmounts(src)
			if err != nil {
				return nil, fmt.Errorf("translating spec: mounts[%d] (%s): %w", i, m.Destination, err)
			}
			if sub {
				m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
			}
		}
		g.Binds = append(g.Binds, Bind{
			Source:    filepath.Clean(src),
			Target:    host,
			Guest:     guest,
			ReadOnly:  ro,
			Recursive: rro,
			File:      !fi.IsDir(),
			FromHost:  HostPropagation(rootfsPropagation, m.Options),
		})
		m.Source = guest
	}

	if spec.Process != nil {
		stripProcess(spec.Process)
	}
	if l := spec.Linux; l != nil {
		var kept []specs.LinuxNamespace
		for _, ns := range l.Namespaces {
			switch {
			case ns.Type == specs.NetworkNamespace:
				g.NetNSPath = ns.Path
			case ns.Path == "":
				kept = append(kept, ns)
			case b.GuestNamespaces[ns.Path] != "":
				ns.Path = b.GuestNamespaces[ns.Path]
				kept = append(kept, ns)
			default:
				return nil, fmt.Errorf("translating spec: joining the %s namespace at %s: %w", ns.Type, ns.Path, ErrUnsupported)
			}
		}
		l.Namespaces = kept
		g.HostCgroupsPath = l.CgroupsPath
		l.CgroupsPath = GuestCgroupsPath(id)
		l.MountLabel = ""
		l.IntelRdt = nil
		l.NetDevices = nil
		if l.Resources != nil {
			l.Resources.BlockIO = GuestBlockIO(l.Resources.BlockIO)
		}
	}
	if data, err := json.Marshal(spec); err != nil {
		return nil, fmt.Errorf("translating spec: %w", err)
	} else if len(data) > maxGuestSpecSize {
		return nil, fmt.Errorf("translating spec: %w", invalid("the translated spec is too large: %d bytes, the guest agent accepts at most %d", len(data), maxGuestSpecSize))
	}
	return g, nil
}

// HostPropagation tells whether a bind mount with options receives the
// mounts made on the host under its source after the container started,
// as it does with runc: runc applies rootfsPropagation (rslave when
// unset) to its copy of the host's mounts, binds the source from that
// copy, then applies the mount's propagation options in order. So the
// bind receives unless rootfsPropagation is recursively private or
// unbindable (a non-recursive one changes only "/", not the source's own
// mount), or the mount's last propagation option is private or
// unbindable. Shared is received as slave: the guest's mounts cannot
// reach the host across the VM.
func HostPropagation(rootfsPropagation string, options []string) bool {
	if rootfsPropagation == "rprivate" || rootfsPropagation == "runbindable" {
		return false
	}
	for _, o := range slices.Backward(options) {
		switch o {
		case "private", "rprivate", "unbindable", "runbindable":
			return false
		case "shared", "rshared", "slave", "rslave":
			return true
		}
	}
	return true
}

// GuestBlockIO is what the guest gets of the block I/O limits: nothing.
// The VM has no block device (its file systems are the share and tmpfs),
// and its kernel no block I/O controller to weigh or throttle them with;
// the limits are accepted and have no effect, as with runc on a host
// whose containers do no block I/O.
func GuestBlockIO(*specs.LinuxBlockIO) *specs.LinuxBlockIO { return nil }

// splitHooks separates the hooks that run on the host from those that run
// in the container; either is nil when empty.
func splitHooks(h *specs.Hooks) (host, guest *specs.Hooks) {
	if h == nil {
		return nil, nil
	}
	if len(h.StartContainer) > 0 {
		guest = &specs.Hooks{StartContainer: h.StartContainer}
	}
	host = &specs.Hooks{
		Prestart:        h.Prestart, //nolint:staticcheck // still sent by Docker
		CreateRuntime:   h.CreateRuntime,
		CreateContainer: h.CreateContainer,
		Poststart:       h.Poststart,
		Poststop:        h.Poststop,
	}
	if len(host.Prestart)+len(host.CreateRuntime)+len(host.CreateContainer)+len(host.Poststart)+len(host.Poststop) == 0 {
		host = nil
	}
	return host, guest
}

// GuestProcess returns a copy of p (an exec'd process) without what only
// the host has: AppArmor profile and SELinux label.
func GuestProcess(p *specs.Process) (*specs.Process, error) {
	c, err := clone(p)
	if err != nil {
		return nil, fmt.Errorf("translating process: %w", err)
	}
	stripProcess(c)
	return c, nil
}

func stripProcess(p *specs.Process) {
	p.ApparmorProfile = ""
	p.SelinuxLabel = ""
}

// clone deep-copies v through JSON, the form the agent receives anyway.
func clone[T any](v *T) (*T, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var c T
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
