package main

import (
	"fmt"
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
