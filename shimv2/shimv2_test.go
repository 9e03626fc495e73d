package shimv2

import (
	"encoding/json"
	"errors"
	"testing"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/oci"
)

func TestPodOf(t *testing.T) {
	long := "0123456789012345678901234567890123456789012345678901234567890123456789"
	tests := map[string]struct {
		id          string
		annotations map[string]string
		sandbox     string
		owns        bool
		group       string
		err         error
	}{
		"plain container": {id: "c1", sandbox: "c1", owns: true, group: "c1"},
		"pod sandbox": {
			id:          "pod1",
			annotations: map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "pod1"},
			sandbox:     "pod1", owns: true, group: "pod1",
		},
		"pod container": {
			id:          "c2",
			annotations: map[string]string{annotationContainerType: "container", annotationSandboxID: "pod1"},
			sandbox:     "pod1", group: "pod1",
		},
		"long id is hashed": {id: long, sandbox: sandboxIDFor(long), owns: true, group: long},
		"container without its pod": {
			id:          "c3",
			annotations: map[string]string{annotationContainerType: "container"},
			err:         errdefs.ErrInvalidArgument, group: "c3",
		},
		"unknown type": {
			id:          "c4",
			annotations: map[string]string{annotationContainerType: "vm"},
			err:         errdefs.ErrInvalidArgument, group: "c4",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sb, owns, err := podOf(tc.id, tc.annotations)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
			} else if err != nil || sb != tc.sandbox || owns != tc.owns {
				t.Fatalf("podOf = %q, %v, %v; want %q, %v", sb, owns, err, tc.sandbox, tc.owns)
			}
			if g := groupOf(tc.id, tc.annotations); g != tc.group {
				t.Errorf("groupOf = %q, want %q", g, tc.group)
			}
		})
	}
	if len(sandboxIDFor(long)) != 64 {
		t.Errorf("hashed sandbox id %q is not 64 characters", sandboxIDFor(long))
	}
}

func TestPrivateNamespace(t *testing.T) {
	b := &oci.Bundle{Spec: &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.UTSNamespace},
		{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"},
	}}}}
	if !privateNamespace(b, specs.UTSNamespace) {
		t.Error("uts: want private")
	}
	if privateNamespace(b, specs.PIDNamespace) {
		t.Error("pid joined by path: want shared")
	}
	if privateNamespace(b, specs.IPCNamespace) {
		t.Error("ipc absent: want shared")
	}
}

func TestPodNamespaces(t *testing.T) {
	s := &Service{containers: map[string]*container{
		"pod1": {id: "pod1", guestPid: 7, init: &process{pid: 4242}},
	}}
	got := s.podNamespaces("pod1")
	for host, guest := range map[string]string{
		"/proc/4242/ns/pid": "/proc/7/ns/pid",
		"/proc/4242/ns/ipc": "/proc/7/ns/ipc",
		"/proc/4242/ns/uts": "/proc/7/ns/uts",
	} {
		if got[host] != guest {
			t.Errorf("%s maps to %q, want %q", host, got[host], guest)
		}
	}
	if s.podNamespaces("other") != nil {
		t.Error("a pod this shim does not serve has namespaces")
	}
}

func TestMetrics(t *testing.T) {
	stats := func(raw map[string]uint64) []byte {
		st := types.Stats{
			CPU:    types.Cpu{Usage: types.CpuUsage{Total: 5_000_000, User: 3_000_000, Kernel: 2_000_000}},
			Memory: types.Memory{Usage: types.MemoryEntry{Usage: 1 << 20, Limit: 256 << 20}, Raw: raw},
			Pids:   types.Pids{Current: 3, Limit: 100},
		}
		data, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	t.Run("v2", func(t *testing.T) {
		a, err := metricsFromJSON(stats(map[string]uint64{"anon": 4096, "inactive_file": 8192}))
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := v.(*v2.Metrics)
		if !ok {
			t.Fatalf("%T, want v2 metrics", v)
		}
		if m.CPU.UsageUsec != 5000 || m.Memory.Usage != 1<<20 || m.Memory.UsageLimit != 256<<20 || m.Memory.InactiveFile != 8192 || m.Pids.Current != 3 {
			t.Errorf("metrics %+v", m)
		}
	})
	t.Run("v1", func(t *testing.T) {
		a, err := metricsFromJSON(stats(map[string]uint64{"total_inactive_file": 8192, "rss": 4096}))
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(a)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := v.(*v1.Metrics)
		if !ok {
			t.Fatalf("%T, want v1 metrics", v)
		}
		if m.CPU.Usage.Total != 5_000_000 || m.Memory.Usage.Usage != 1<<20 || m.Memory.TotalInactiveFile != 8192 || m.Memory.RSS != 4096 {
			t.Errorf("metrics %+v", m)
		}
	})
	if _, err := metricsFromJSON([]byte("{")); err == nil {
		t.Error("bad JSON: no error")
	}
}
