package main

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations by which CRI-O and containerd's CRI plugin say that a
// container belongs to a pod.
const (
	crioContainerType  = "io.kubernetes.cri-o.ContainerType"
	crioSandboxID      = "io.kubernetes.cri-o.SandboxID"
	criContainerType   = "io.kubernetes.cri.container-type"
	criSandboxID       = "io.kubernetes.cri.sandbox-id"
	containerTypeInfra = "sandbox"
	containerTypeApp   = "container"
)

// sandboxFor decides which sandbox (VM) container id runs in: by default
// one of its own; a pod's sandbox (infra) container creates the pod's VM,
// and the pod's other containers join it. owns is set when the container
// creates the sandbox.
func sandboxFor(id string, annotations map[string]string) (sandboxID string, owns bool, err error) {
	for _, k := range []struct{ typ, sandbox string }{
		{crioContainerType, crioSandboxID},
		{criContainerType, criSandboxID},
	} {
		typ, ok := annotations[k.typ]
		if !ok {
			continue
		}
		switch typ {
		case containerTypeInfra:
			return sandboxIDFor(id), true, nil
		case containerTypeApp:
			pod := annotations[k.sandbox]
			if pod == "" {
				return "", false, fmt.Errorf("annotation %s=%s without %s", k.typ, typ, k.sandbox)
			}
			if pod == id {
				return sandboxIDFor(id), true, nil
			}
			return sandboxIDFor(pod), false, nil
		default:
			return "", false, fmt.Errorf("annotation %s: unknown container type %q", k.typ, typ)
		}
	}
	return sandboxIDFor(id), true, nil
}

// infraMayBeDropped tells whether a container that names a pod whose
// sandbox does not exist may boot it: CRI-O (drop_infra_ctr, its default)
// creates no infra container for a pod without a pod-level PID namespace
// unless the runtime handler is of type "vm", so such a pod's containers
// name a sandbox that no container created. containerd's CRI always
// creates the sandbox container first.
func infraMayBeDropped(annotations map[string]string) bool {
	return annotations[crioContainerType] == containerTypeApp && annotations[crioSandboxID] != ""
}

// podMember tells whether CRI-O's or containerd's CRI annotations make the
// container part of a pod (its sandbox container included).
func podMember(annotations map[string]string) bool {
	_, crio := annotations[crioContainerType]
	_, cri := annotations[criContainerType]
	return crio || cri
}

// podNamespaces adapts a pod member's spec to the pod's VM. CRI-O and
// containerd's CRI have a pod's containers join the pod's IPC and UTS
// namespaces, and its PID namespace when the pod shares one, by host
// paths (pinns' bind mounts, /proc/<infra pid>/ns/...) that mean nothing in
// the guest. The VM is the pod's, so the guest's own namespaces are the
// pod's: those entries are dropped, and the container stays in the
// guest's. What belongs to a dropped namespace goes with it: the hostname
// and domain name (the guest's, set when the sandbox attaches) and the
// IPC sysctls, which are returned to be applied to the guest.
func podNamespaces(spec *specs.Spec) (guestSysctls map[string]string) {
	if spec.Linux == nil {
		return nil
	}
	kept := spec.Linux.Namespaces[:0:0]
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			kept = append(kept, ns)
			continue
		}
		switch ns.Type {
		case specs.UTSNamespace:
			spec.Hostname, spec.Domainname = "", ""
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
		case specs.PIDNamespace:
		default:
			kept = append(kept, ns)
			continue
		}
	}
	spec.Linux.Namespaces = kept
	return guestSysctls
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
