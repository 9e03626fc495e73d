package container

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/oci"
)

// TestPodOf checks the pod rules of both engines: CRI-O's and containerd's
// CRI annotations.
func TestPodOf(t *testing.T) {
	long := strings.Repeat("a", 100)
	crio := func(typ, pod string) map[string]string {
		return map[string]string{CRIOContainerType: typ, CRIOSandboxID: pod}
	}
	cri := func(typ, pod string) map[string]string {
		return map[string]string{CRIContainerType: typ, CRISandboxID: pod}
	}
	for name, tc := range map[string]struct {
		id    string
		ann   map[string]string
		want  Pod
		group string
		err   error
	}{
		"docker":            {id: "c1", want: Pod{SandboxID: "c1", ID: "c1", Owns: true}, group: "c1"},
		"crio infra":        {id: "pod1", ann: crio("sandbox", "pod1"), want: Pod{SandboxID: "pod1", ID: "pod1", Owns: true, Member: true}, group: "pod1"},
		"crio app":          {id: "c2", ann: crio("container", "pod1"), want: Pod{SandboxID: "pod1", ID: "pod1", Member: true, MayBoot: true}, group: "pod1"},
		"cri sandbox":       {id: "pod2", ann: cri("sandbox", "pod2"), want: Pod{SandboxID: "pod2", ID: "pod2", Owns: true, Member: true}, group: "pod2"},
		"cri app":           {id: "c3", ann: cri("container", "pod2"), want: Pod{SandboxID: "pod2", ID: "pod2", Member: true}, group: "pod2"},
		"cri app is pod":    {id: "pod3", ann: cri("container", "pod3"), want: Pod{SandboxID: "pod3", ID: "pod3", Owns: true, Member: true}, group: "pod3"},
		"app without pod":   {id: "c4", ann: map[string]string{CRIContainerType: "container"}, err: ErrInvalidArgument, group: "c4"},
		"crio without pod":  {id: "c5", ann: map[string]string{CRIOContainerType: "container"}, err: ErrInvalidArgument, group: "c5"},
		"unknown type":      {id: "c6", ann: map[string]string{CRIContainerType: "vm"}, err: ErrInvalidArgument, group: "c6"},
		"long id is hashed": {id: long, want: Pod{SandboxID: SandboxIDFor(long), ID: long, Owns: true}, group: long},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := PodOf(tc.id, tc.ann)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("PodOf = %+v, %v; want %+v", got, err, tc.want)
			}
			if g := GroupOf(tc.id, tc.ann); g != tc.group {
				t.Errorf("GroupOf = %q, want %q", g, tc.group)
			}
		})
	}
	if h := SandboxIDFor(long); len(h) != MaxSandboxIDLen || h == long {
		t.Fatalf("hash %q", h)
	}
	// The longest socket path stays under the kernel's 108 bytes.
	p := RuntimeSandboxRoot("/run/docker/runtime-runc/moby") + "/" + strings.Repeat("f", 64) + "/proxy.sock"
	if len(p) >= 108 {
		t.Fatalf("%s is %d bytes", p, len(p))
	}
	if RuntimeSandboxRoot("/a") == ContainerdSandboxRoot("/a") {
		t.Error("cocoon-runtime and containerd share a sandbox root")
	}
}

func namespaceTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var types []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		types = append(types, ns.Type)
	}
	return types
}

// TestPodNamespacesCRIO: CRI-O names the pod's IPC and UTS namespaces by
// pinns paths, which mean nothing in the guest: they are the guest's, the
// IPC sysctls go to the guest, the hostname is the guest's.
func TestPodNamespacesCRIO(t *testing.T) {
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
	b := &oci.Bundle{Spec: spec}
	got := PodNamespaces(b, Pod{Member: true}, nil)
	if len(got) != 2 || got["kernel.shm_rmid_forced"] != "1" || got["fs.mqueue.msg_max"] != "20" {
		t.Errorf("guest sysctls %v", got)
	}
	if len(spec.Linux.Sysctl) != 1 || spec.Linux.Sysctl["net.ipv4.ip_forward"] != "1" {
		t.Errorf("container sysctls %v", spec.Linux.Sysctl)
	}
	// The network namespace's path is the network's business (oci.ForGuest).
	want := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.MountNamespace, specs.CgroupNamespace}
	if types := namespaceTypes(spec); !slices.Equal(types, want) || spec.Hostname != "" || len(b.GuestNamespaces) != 0 {
		t.Errorf("namespaces %v, hostname %q, guest paths %v; want %v, none, none", types, spec.Hostname, b.GuestNamespaces, want)
	}

	own := &specs.Spec{Hostname: "h", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}}}}
	if PodNamespaces(&oci.Bundle{Spec: own}, Pod{Member: true}, nil) != nil || len(own.Linux.Namespaces) != 2 || own.Hostname != "h" {
		t.Errorf("new namespaces were changed: %+v", own)
	}
}

// TestPodNamespacesContainerd: containerd's CRI names the sandbox
// container's namespaces by /proc/<its PID>/ns/<type>: they map to the
// sandbox container's namespaces in the guest, for CRI-O's shared PID
// namespace (/proc/<infra PID>/ns/pid) alike.
func TestPodNamespacesContainerd(t *testing.T) {
	known := GuestNamespacePaths(4242, 7)
	for host, guest := range map[string]string{
		"/proc/4242/ns/pid": "/proc/7/ns/pid",
		"/proc/4242/ns/ipc": "/proc/7/ns/ipc",
		"/proc/4242/ns/uts": "/proc/7/ns/uts",
	} {
		if known[host] != guest {
			t.Errorf("%s maps to %q, want %q", host, known[host], guest)
		}
	}
	if GuestNamespacePaths(0, 7) != nil || GuestNamespacePaths(4242, 0) != nil {
		t.Error("paths for an unknown PID")
	}
	spec := &specs.Spec{Hostname: "c", Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace, Path: "/proc/4242/ns/pid"},
			{Type: specs.IPCNamespace, Path: "/proc/4242/ns/ipc"},
			{Type: specs.UTSNamespace, Path: "/proc/4242/ns/uts"},
			{Type: specs.MountNamespace},
		},
		Sysctl: map[string]string{"kernel.shm_rmid_forced": "1"},
	}}
	b := &oci.Bundle{Spec: spec}
	if got := PodNamespaces(b, Pod{Member: true}, known); got != nil {
		t.Errorf("guest sysctls %v for joined namespaces", got)
	}
	if len(spec.Linux.Namespaces) != 4 || spec.Hostname != "" || spec.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
		t.Errorf("spec %+v, hostname %q", spec.Linux, spec.Hostname)
	}
	if b.GuestNamespaces["/proc/4242/ns/ipc"] != "/proc/7/ns/ipc" || len(b.GuestNamespaces) != 3 {
		t.Errorf("guest namespaces %v", b.GuestNamespaces)
	}
}

// TestNamespacesOutsideAPod: a container outside a pod keeps the paths it
// names, for oci.ForGuest to refuse; without a UTS namespace of its own,
// its hostname is the guest's.
func TestNamespacesOutsideAPod(t *testing.T) {
	spec := &specs.Spec{Hostname: "h", Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.IPCNamespace, Path: "/proc/1/ns/ipc"},
	}}}
	PodNamespaces(&oci.Bundle{Spec: spec}, Pod{}, nil)
	if len(spec.Linux.Namespaces) != 1 || spec.Hostname != "" {
		t.Errorf("%+v, hostname %q", spec.Linux.Namespaces, spec.Hostname)
	}
	if !PrivateNamespace(&specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}}}}, specs.UTSNamespace) {
		t.Error("uts: want private")
	}
	if PrivateNamespace(spec, specs.IPCNamespace) || PrivateNamespace(spec, specs.PIDNamespace) {
		t.Error("joined or absent: want shared")
	}
}

func TestGuestHostname(t *testing.T) {
	uts := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}}}
	if h := GuestHostname(&specs.Spec{Hostname: "x", Linux: uts}, "sb"); h != "x" {
		t.Errorf("spec's hostname: %q", h)
	}
	if h := GuestHostname(&specs.Spec{Linux: uts}, strings.Repeat("f", 64)); h != strings.Repeat("f", 12) {
		t.Errorf("short sandbox id: %q", h)
	}
	if h := GuestHostname(&specs.Spec{Linux: &specs.Linux{}}, "sb"); h == "sb" || h == "" {
		t.Errorf("host's UTS namespace: %q, want the host's hostname", h)
	}
}
