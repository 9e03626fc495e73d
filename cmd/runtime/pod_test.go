package main

import (
	"strings"
	"testing"
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
