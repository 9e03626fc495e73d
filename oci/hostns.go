package oci

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostShared are the namespaces whose sharing with the host a VM cannot
// give, with their names under /proc/<pid>/ns.
var hostShared = []struct {
	typ  specs.LinuxNamespaceType
	proc string
}{
	{specs.NetworkNamespace, "net"},
	{specs.IPCNamespace, "ipc"},
}

// HostNamespaces lists the namespaces, of the network and IPC ones, that a
// container with spec would share with the runtime, which runs in the
// host's: those the spec has no entry for (as runc has it: no entry, no new
// namespace), and those whose entry's path is the runtime's own namespace.
// guest maps paths that name a pod's namespaces in the guest
// (Bundle.GuestNamespaces): those are not the host's.
func HostNamespaces(spec *specs.Spec, guest map[string]string) []specs.LinuxNamespaceType {
	var host []specs.LinuxNamespaceType
	for _, ns := range hostShared {
		if sharesHost(spec, ns.typ, "/proc/self/ns/"+ns.proc, guest) {
			host = append(host, ns.typ)
		}
	}
	return host
}

// sharesHost tells whether spec leaves the container in namespace typ of
// the runtime, whose file is own.
func sharesHost(spec *specs.Spec, typ specs.LinuxNamespaceType, own string, guest map[string]string) bool {
	if spec.Linux == nil {
		return true
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type != typ {
			continue
		}
		if ns.Path == "" || guest[ns.Path] != "" {
			return false
		}
		fi, err := os.Stat(ns.Path)
		if err != nil {
			// Not a namespace of the host's that the runtime can see;
			// joining it is refused later, with its own error.
			return false
		}
		ownFi, err := os.Stat(own)
		return err == nil && os.SameFile(fi, ownFi)
	}
	return true
}
