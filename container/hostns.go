package container

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// HostNamespaceError refuses a container that asks for the host's network
// or IPC namespace, which its VM cannot share (runtime.host_namespaces =
// "refuse"). It is an ErrInvalidArgument.
type HostNamespaceError struct {
	ID    string
	Types []specs.LinuxNamespaceType
}

func (e *HostNamespaceError) Error() string {
	names := make([]string, len(e.Types))
	for i, t := range e.Types {
		names[i] = nsName(t)
	}
	what := fmt.Sprintf("the host's %s namespace", names[0])
	if len(names) > 1 {
		what = fmt.Sprintf("the host's %s namespaces", strings.Join(names, " and "))
	}
	return fmt.Sprintf("container %s asks for %s, which a VM cannot share: run this pod with runc, "+
		"or set host_namespaces = %q under [runtime] in cocoon's configuration to give it the VM's own instead",
		e.ID, what, config.HostGuest)
}

// Is makes the error an ErrInvalidArgument.
func (e *HostNamespaceError) Is(target error) bool { return target == ErrInvalidArgument }

// nsName is how the error names a namespace type.
func nsName(t specs.LinuxNamespaceType) string {
	if t == specs.IPCNamespace {
		return "IPC"
	}
	return string(t)
}

// checkHostNamespaces applies runtime.host_namespaces to the bundle of
// container id, which boots its pod's VM and would share the host
// namespaces of the types host (oci.HostNamespaces): it is refused, or its
// spec loses those entries, so that it gets the VM's own namespaces (never
// the host's interfaces mirrored into the VM, as a path to the host's
// network namespace would otherwise have), and the log says so.
func checkHostNamespaces(m *sandbox.Manager, id string, b *oci.Bundle, host []specs.LinuxNamespaceType) error {
	if len(host) == 0 {
		return nil
	}
	if m.Config.Runtime.HostNamespaces != config.HostGuest {
		return &HostNamespaceError{ID: id, Types: host}
	}
	if l := b.Spec.Linux; l != nil {
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool { return slices.Contains(host, ns.Type) })
	}
	for _, t := range host {
		m.Log.WithField("container", id).Warnf("the container asks for the host's %s namespace, which a VM cannot share: it gets the VM's own (runtime.host_namespaces = %q)", nsName(t), config.HostGuest)
	}
	return nil
}
