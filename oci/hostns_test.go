package oci

import (
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestHostNamespaces(t *testing.T) {
	other := filepath.Join(t.TempDir(), "netns")
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	for name, tc := range map[string]struct {
		spec  *specs.Spec
		guest map[string]string
		want  []specs.LinuxNamespaceType
	}{
		"no linux section": {spec: &specs.Spec{}, want: []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace}},
		"new namespaces":   {spec: withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}, specs.LinuxNamespace{Type: specs.IPCNamespace})},
		"no network entry": {
			spec: withNS(specs.LinuxNamespace{Type: specs.IPCNamespace}),
			want: []specs.LinuxNamespaceType{specs.NetworkNamespace},
		},
		"no IPC entry": {
			spec: withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: other}),
			want: []specs.LinuxNamespaceType{specs.IPCNamespace},
		},
		"the runtime's own by path": {
			spec: withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/1/../self/ns/ipc"}),
			want: []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace},
		},
		"a pod's namespace that the guest has": {
			spec:  withNS(specs.LinuxNamespace{Type: specs.NetworkNamespace}, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/self/ns/ipc"}),
			guest: map[string]string{"/proc/self/ns/ipc": "/proc/1/ns/ipc"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := HostNamespaces(tc.spec, tc.guest); !slices.Equal(got, tc.want) {
				t.Errorf("HostNamespaces = %v, want %v", got, tc.want)
			}
		})
	}
}
