package container

import (
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Annotations by which CRI-O and containerd's CRI plugin say that a
// container belongs to a pod.
const (
	CRIOContainerType = "io.kubernetes.cri-o.ContainerType"
	CRIOSandboxID     = "io.kubernetes.cri-o.SandboxID"
	CRIContainerType  = "io.kubernetes.cri.container-type"
	CRISandboxID      = "io.kubernetes.cri.sandbox-id"
	// ContainerTypeSandbox is the type of a pod's sandbox (infra, pause)
	// container, ContainerTypeContainer that of its other containers.
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// podAnnotations are the (type, sandbox ID) annotation pairs of the
// engines, CRI-O's first.
var podAnnotations = []struct{ typ, sandbox string }{
	{CRIOContainerType, CRIOSandboxID},
	{CRIContainerType, CRISandboxID},
}

// Pod is where a container runs: which sandbox (VM), and whether it is the
// container that boots it.
type Pod struct {
	// SandboxID is the sandbox's ID (SandboxIDFor the pod's ID).
	SandboxID string
	// ID is the pod's ID: its sandbox container's; the container's own
	// outside a pod.
	ID string
	// Owns is set for the container that creates the sandbox: a pod's
	// sandbox container, or a container outside a pod.
	Owns bool
	// Member is set when the engine's annotations put the container in a
	// pod (its sandbox container included).
	Member bool
	// MayBoot is set for a pod container that may boot the pod's sandbox
	// when no container created it: CRI-O (drop_infra_ctr, its default)
	// creates no infra container for a pod without a pod-level PID
	// namespace unless the runtime handler is of type "vm", so such a
	// pod's containers name a sandbox that no container created.
	// containerd's CRI always creates the sandbox container first.
	MayBoot bool
}

// PodOf decides, from CRI-O's or containerd's CRI annotations, which
// sandbox container id runs in: by default one of its own; a pod's sandbox
// container creates the pod's VM, and the pod's other containers join it.
func PodOf(id string, annotations map[string]string) (Pod, error) {
	for _, k := range podAnnotations {
		typ, ok := annotations[k.typ]
		if !ok {
			continue
		}
		switch typ {
		case ContainerTypeSandbox:
			return Pod{SandboxID: SandboxIDFor(id), ID: id, Owns: true, Member: true}, nil
		case ContainerTypeContainer:
			pod := annotations[k.sandbox]
			if pod == "" {
				return Pod{}, fmt.Errorf("annotation %s=%s without %s: %w", k.typ, typ, k.sandbox, ErrInvalidArgument)
			}
			return Pod{
				SandboxID: SandboxIDFor(pod), ID: pod, Owns: pod == id, Member: true,
				MayBoot: k.typ == CRIOContainerType,
			}, nil
		default:
			return Pod{}, fmt.Errorf("annotation %s: unknown container type %q: %w", k.typ, typ, ErrInvalidArgument)
		}
	}
	return Pod{SandboxID: SandboxIDFor(id), ID: id, Owns: true}, nil
}

// GroupOf is the ID of the pod a container belongs to (its sandbox
// container's), or its own: containerd's shims are shared by a group.
func GroupOf(id string, annotations map[string]string) string {
	for _, k := range podAnnotations {
		if pod := annotations[k.sandbox]; pod != "" {
			return pod
		}
	}
	return id
}

// PodNamespaces applies cocoon's one namespace policy to a pod member's
// bundle. The engines have a pod's containers join the pod's namespaces by
// host paths: containerd's CRI by /proc/<sandbox container's PID>/ns/<type>,
// CRI-O by pinns' bind mounts for IPC, UTS and network and by
// /proc/<infra PID>/ns/pid for a shared PID namespace. Paths that known maps
// (the sandbox container's host-visible namespaces, to its namespaces in
// the guest) are joined in the guest. Any other path of a pod member means
// nothing in the guest: the VM is the pod's, so the guest's own namespace
// is the pod's, and the entry is dropped with what belongs to it: the IPC
// sysctls, which are returned to be applied to the guest. A container
// without a UTS namespace of its own has the guest's hostname and domain
// name (set when the sandbox attaches), not the spec's. The
// network namespace is left to oci.ForGuest (the sandbox mirrors it), and
// paths of a container outside a pod are left for oci.ForGuest to refuse.
func PodNamespaces(b *oci.Bundle, pod Pod, known map[string]string) (guestSysctls map[string]string) {
	spec := b.Spec
	if !PrivateNamespace(spec, specs.UTSNamespace) {
		// The container cannot name a UTS namespace that is not its
		// own: its hostname is the guest's (GuestHostname).
		spec.Hostname, spec.Domainname = "", ""
	}
	if spec.Linux == nil {
		return nil
	}
	kept := spec.Linux.Namespaces[:0:0]
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path == "" || ns.Type == specs.NetworkNamespace {
			kept = append(kept, ns)
			continue
		}
		if g := known[ns.Path]; g != "" {
			if b.GuestNamespaces == nil {
				b.GuestNamespaces = map[string]string{}
			}
			b.GuestNamespaces[ns.Path] = g
			kept = append(kept, ns)
			continue
		}
		if !pod.Member {
			kept = append(kept, ns)
			continue
		}
		switch ns.Type {
		case specs.IPCNamespace:
			for k, v := range spec.Linux.Sysctl {
				if ipcSysctl(k) {
					if guestSysctls == nil {
						guestSysctls = map[string]string{}
					}
					guestSysctls[k] = v
					delete(spec.Linux.Sysctl, k)
				}
			}
		case specs.UTSNamespace, specs.PIDNamespace:
		default:
			kept = append(kept, ns)
		}
	}
	spec.Linux.Namespaces = kept
	return guestSysctls
}

// GuestNamespacePaths maps the host paths by which a pod's containers name
// the namespaces of its sandbox container (/proc/<hostPID>/ns/<type>, with
// the PID the engine was given for it) to their paths in the guest, where
// that container's init has guestPID.
func GuestNamespacePaths(hostPID, guestPID int) map[string]string {
	if hostPID <= 0 || guestPID <= 0 {
		return nil
	}
	paths := map[string]string{}
	for _, name := range []string{"ipc", "uts", "pid", "cgroup", "mnt", "user", "time"} {
		paths[fmt.Sprintf("/proc/%d/ns/%s", hostPID, name)] = fmt.Sprintf("/proc/%d/ns/%s", guestPID, name)
	}
	return paths
}

// ipcSysctl tells whether sysctl k belongs to the IPC namespace (runc's
// list).
func ipcSysctl(k string) bool {
	switch k {
	case "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
		"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced":
		return true
	}
	return strings.HasPrefix(k, "fs.mqueue.")
}

// PrivateNamespace tells whether the spec gives the container a namespace
// of type t of its own.
func PrivateNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t && ns.Path == "" {
			return true
		}
	}
	return false
}

// GuestHostname is the hostname of the VM that a sandbox's first container
// creates: the spec's; else, for a container in the host's UTS namespace
// (a host-network pod, which the kubelet gives no hostname), the host's, as
// with runc; else a short form of the sandbox ID.
func GuestHostname(spec *specs.Spec, sandboxID string) string {
	if spec.Hostname != "" {
		return spec.Hostname
	}
	if !PrivateNamespace(spec, specs.UTSNamespace) {
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	if len(sandboxID) > 12 {
		return sandboxID[:12]
	}
	return sandboxID
}

// WantsNewNetNS tells whether the spec asks for a new network namespace
// (rather than the host's, or one the caller made).
func WantsNewNetNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// podNetwork is the network a pod's VM carries. cocoon-runtime runs the
// OCI hooks, which fill a new namespace (Docker's libnetwork-setkey), so a
// new namespace is mirrored too; the containerd shim runs none, so a new
// namespace without a path stays empty there, as it would with runc and no
// hooks, and the VM gets loopback only.
func podNetwork(spec *specs.Spec, runsHooks bool) sandbox.Network {
	n := sandbox.NetworkOf(spec)
	if n.New && !runsHooks {
		return sandbox.Network{}
	}
	return n
}
