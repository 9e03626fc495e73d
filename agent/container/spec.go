package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

// checkSpec rejects what the guest cannot honour and adapts what only makes
// sense on the host, in place (spec is the manager's own copy):
//
//   - a network namespace with a path names a namespace of the host, which
//     the guest does not have: the guest's own network is the container's
//     (the host mirrors its interfaces into the VM), so the container
//     shares it; a new network namespace without a path is honoured;
//   - linux.cgroupsPath names a host cgroup; the container gets
//     cgroupParent/<id> in the guest instead.
//
// Everything else the guest cannot do is an ErrInvalidArgument error naming
// the field.
func checkSpec(spec *specs.Spec, log *logrus.Entry) error {
	if spec.Root == nil || spec.Root.Path == "" {
		return invalidf("root.path is required")
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return invalidf("root.path %q must be an absolute guest path", spec.Root.Path)
	}
	if fi, err := os.Stat(spec.Root.Path); err != nil || !fi.IsDir() {
		return invalidf("root.path %q is not a directory in the guest", spec.Root.Path)
	}
	if spec.Process == nil {
		return invalidf("process is required")
	}
	if err := checkProcess(spec.Process); err != nil {
		return err
	}
	for name, set := range map[string]bool{
		"solaris": spec.Solaris != nil, "windows": spec.Windows != nil, "vm": spec.VM != nil,
		"zos": spec.ZOS != nil, "freebsd": spec.FreeBSD != nil,
	} {
		if set {
			return invalidf("%s is not supported: the guest runs Linux containers", name)
		}
	}
	if err := checkHooks(spec.Hooks); err != nil {
		return err
	}
	for i, m := range spec.Mounts {
		if err := checkMount(m); err != nil {
			return fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
		}
	}
	if spec.Linux == nil {
		return invalidf("linux is required")
	}
	return checkLinux(spec.Linux, log)
}

// checkProcess rejects process fields of other platforms and of host
// security modules the guest kernel does not have.
func checkProcess(p *specs.Process) error {
	switch {
	case len(p.Args) == 0:
		return invalidf("process.args must not be empty")
	case p.CommandLine != "":
		return invalidf("process.commandLine is for Windows")
	case p.Cwd == "" || !filepath.IsAbs(p.Cwd):
		return invalidf("process.cwd %q must be an absolute path", p.Cwd)
	case p.User.Username != "":
		return invalidf("process.user.username is for Windows")
	case p.ApparmorProfile != "":
		return invalidf("process.apparmorProfile is not supported: the guest kernel has no AppArmor (the VM is the isolation boundary)")
	case p.SelinuxLabel != "":
		return invalidf("process.selinuxLabel is not supported: the guest kernel has no SELinux")
	}
	for _, rl := range p.Rlimits {
		if _, ok := rlimitTypes[rl.Type]; !ok {
			return invalidf("process.rlimits: unknown type %q", rl.Type)
		}
	}
	return nil
}

// checkHooks accepts the hooks that run in the container (createContainer,
// startContainer: their paths are inside the rootfs) and refuses those that
// run in the runtime's namespaces: in the guest, host binaries do not exist,
// so the host runtime must run them itself.
func checkHooks(h *specs.Hooks) error {
	if h == nil {
		return nil
	}
	for name, hooks := range map[string][]specs.Hook{
		"prestart":      h.Prestart, //nolint:staticcheck // refused, like the others
		"createRuntime": h.CreateRuntime,
		"poststart":     h.Poststart,
		"poststop":      h.Poststop,
	} {
		if len(hooks) > 0 {
			return invalidf("hooks.%s run in the runtime's namespace; the host runtime must run them, not the guest agent", name)
		}
	}
	return nil
}

// isBind reports whether a mount is a bind mount.
func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

func checkMount(m specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		return invalidf("destination %q must be absolute", m.Destination)
	}
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		return invalidf("id-mapped mounts are not supported on the guest's shared file system")
	}
	if isBind(m) {
		if !filepath.IsAbs(m.Source) {
			return invalidf("bind source %q must be an absolute guest path", m.Source)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return invalidf("bind source %q does not exist in the guest", m.Source)
		}
	}
	return nil
}

func checkLinux(l *specs.Linux, log *logrus.Entry) error {
	switch {
	case l.IntelRdt != nil:
		return invalidf("linux.intelRdt is not supported in the guest")
	case l.MountLabel != "":
		return invalidf("linux.mountLabel is not supported: the guest kernel has no SELinux")
	case len(l.NetDevices) > 0:
		return invalidf("linux.netDevices is not supported: the host's network devices are not in the guest")
	case l.Seccomp != nil && !seccomp.Enabled:
		return invalidf("linux.seccomp is not supported: this agent was built without seccomp")
	}
	if err := checkResources(l.Resources); err != nil {
		return fmt.Errorf("linux.resources: %w", err)
	}
	kept := l.Namespaces[:0]
	for _, ns := range l.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			log.WithField("path", ns.Path).Info("ignoring the network namespace path: it names a namespace of the host; the container shares the guest's network, which mirrors it")
			continue
		}
		if ns.Path != "" {
			if _, err := os.Stat(ns.Path); err != nil {
				return invalidf("linux.namespaces: %s namespace path %q does not exist in the guest", ns.Type, ns.Path)
			}
		}
		kept = append(kept, ns)
	}
	l.Namespaces = kept
	return nil
}

// checkResources refuses the limits the guest kernel has no controller for,
// and those that name host devices. Hugepage limits of 0 are dropped: the
// guest kernel has no huge pages (no hugetlbfs), so no container can use
// any, which is all such a limit asks; the kubelet sets one for each page
// size of the host on every container, and CRI-O passes them on.
func checkResources(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	for _, l := range r.HugepageLimits {
		if l.Limit != 0 {
			return invalidf("hugepageLimits: %s pages limited to %d bytes: the guest kernel has no huge pages", l.Pagesize, l.Limit)
		}
	}
	r.HugepageLimits = nil
	switch {
	case r.Network != nil:
		return invalidf("network: the guest kernel has no net_cls or net_prio controller")
	case len(r.Rdma) > 0:
		return invalidf("rdma: the guest kernel has no rdma controller")
	}
	if b := r.BlockIO; b != nil {
		if len(b.WeightDevice) > 0 || len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
			len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0 {
			return invalidf("blockIO: per-device limits name host devices, which the guest does not have")
		}
	}
	return nil
}

// errSpecconv marks a conversion error of libcontainer's specconv as
// invalid input: specconv only fails on what the spec says.
func errSpecconv(err error) error {
	if errors.Is(err, ErrInvalidArgument) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
}

// cleanID reports whether id is usable as a container ID: what libcontainer
// accepts (letters, digits, '_', '+', '-', '.'), not "." or "..".
func cleanID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 1024 {
		return invalidf("bad container id %q", id)
	}
	if strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-.", r))
	}) >= 0 {
		return invalidf("bad container id %q: only letters, digits, '_', '+', '-' and '.' are allowed", id)
	}
	return nil
}
