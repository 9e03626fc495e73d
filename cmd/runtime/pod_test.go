package main

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSandboxFor(t *testing.T) {
	long := strings.Repeat("a", 100)
	for _, tc := range []struct {
		name    string
		id      string
		ann     map[string]string
		sandbox string
		owns    bool
		err     bool
	}{
		{"docker", "c1", nil, "c1", true, false},
		{"crio infra", "pod1", map[string]string{crioContainerType: "sandbox", crioSandboxID: "pod1"}, "pod1", true, false},
		{"crio app", "c2", map[string]string{crioContainerType: "container", crioSandboxID: "pod1"}, "pod1", false, false},
		{"cri infra", "pod2", map[string]string{criContainerType: "sandbox", criSandboxID: "pod2"}, "pod2", true, false},
		{"cri app", "c3", map[string]string{criContainerType: "container", criSandboxID: "pod2"}, "pod2", false, false},
		{"app without pod", "c4", map[string]string{criContainerType: "container"}, "", false, true},
		{"unknown type", "c5", map[string]string{criContainerType: "weird"}, "", false, true},
		{"long id hashed", long, nil, sandboxIDFor(long), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, owns, err := sandboxFor(tc.id, tc.ann)
			if (err != nil) != tc.err || sb != tc.sandbox || owns != tc.owns {
				t.Fatalf("got %q %v %v", sb, owns, err)
			}
		})
	}
	if h := sandboxIDFor(long); len(h) != maxSandboxIDLen || h == long {
		t.Fatalf("hash %q", h)
	}
	// The longest socket path stays under the kernel's 108 bytes.
	p := sandboxRoot("/run/docker/runtime-runc/moby") + "/" + strings.Repeat("f", 64) + "/proxy.sock"
	if len(p) >= 108 {
		t.Fatalf("%s is %d bytes", p, len(p))
	}
}

func TestInfraMayBeDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want bool
	}{
		{"crio app", map[string]string{crioContainerType: "container", crioSandboxID: "pod1"}, true},
		{"crio infra", map[string]string{crioContainerType: "sandbox", crioSandboxID: "pod1"}, false},
		{"crio app without pod", map[string]string{crioContainerType: "container"}, false},
		{"cri app", map[string]string{criContainerType: "container", criSandboxID: "pod2"}, false},
		{"docker", nil, false},
	} {
		if got := infraMayBeDropped(tc.ann); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPodNamespaces(t *testing.T) {
	spec := &specs.Spec{
		Hostname: "pod-host",
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"},
				{Type: specs.IPCNamespace, Path: "/var/run/ipcns/x"},
				{Type: specs.UTSNamespace, Path: "/var/run/utsns/x"},
				{Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace},
			},
			Sysctl: map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20", "net.ipv4.ip_forward": "1"},
		},
	}
	got := podNamespaces(spec)
	if len(got) != 2 || got["kernel.shm_rmid_forced"] != "1" || got["fs.mqueue.msg_max"] != "20" {
		t.Errorf("guest sysctls %v", got)
	}
	if len(spec.Linux.Sysctl) != 1 || spec.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("container sysctls %v", spec.Linux.Sysctl)
	}
	var types []specs.LinuxNamespaceType
	for _, ns := range spec.Linux.Namespaces {
		types = append(types, ns.Type)
	}
	// The network namespace's path is the network's business (oci.ForGuest).
	want := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.MountNamespace, specs.CgroupNamespace}
	if !slices.Equal(types, want) || spec.Hostname != "" {
		t.Errorf("namespaces %v, hostname %q; want %v and none", types, spec.Hostname, want)
	}

	own := &specs.Spec{Hostname: "h", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}}}}
	if podNamespaces(own) != nil || len(own.Linux.Namespaces) != 2 || own.Hostname != "h" {
		t.Errorf("new namespaces were changed: %+v", own)
	}
}
