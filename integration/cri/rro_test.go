//go:build integration

package cri_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
)

// TestRuntimeHandlerFeatures: containerd 2.x learns what each runtime
// handler supports from its shim's -info (runtime introspection) and
// reports it in the CRI status (`crictl info`): cocoon's handlers support
// recursive read-only mounts. containerd 1.6 reports no handlers.
func TestRuntimeHandlerFeatures(t *testing.T) {
	var info struct {
		RuntimeHandlers []struct {
			Name     string `json:"name"`
			Features struct {
				RecursiveReadOnlyMounts bool `json:"recursive_read_only_mounts"`
			} `json:"features"`
		} `json:"runtimeHandlers"`
	}
	out := mustCrictl(t, "info", "-o", "json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info: %v: %s", err, out)
	}
	rro := map[string]bool{}
	for _, h := range info.RuntimeHandlers {
		rro[h.Name] = h.Features.RecursiveReadOnlyMounts
	}
	if daemon.Major < 2 {
		// 1.6 has no runtime introspection: it lists no handlers.
		if len(info.RuntimeHandlers) != 0 {
			t.Errorf("containerd %d.x listed runtime handlers %v, want none", daemon.Major, rro)
		}
		return
	}
	for _, h := range []string{"cocoon", containerdtest.HostNSRuntime} {
		if v, ok := rro[h]; !ok || !v {
			t.Errorf("handler %s: listed %v, recursive read-only mounts %v; handlers %v", h, ok, v, rro)
		}
	}
}

// TestRecursiveReadOnlyVolume: a volume that CRI asks to be recursively
// read-only (the kubelet's recursiveReadOnly: Enabled: readonly,
// recursive_read_only, private propagation) is read-only in the container
// with the mount beneath it, which stays writable on the host. containerd
// 2.x accepts it only of a runtime whose features say it can (see
// TestRuntimeHandlerFeatures) and hands the runtime the "rro" mount
// option; containerd 1.6 does not know the field: a plain read-only
// volume, whose submount stays writable (as under runc).
func TestRecursiveReadOnlyVolume(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	sub := filepath.Join(vol, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(sub, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "from-host"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	podJSON := podConfig(t, dir, "rro-pod")
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	ctrJSON := containerConfig(t, dir, "rro", "sleep", "1000")
	editConfig(t, ctrJSON, func(cfg map[string]any) {
		cfg["mounts"] = []map[string]any{{
			"container_path": "/data", "host_path": vol,
			"readonly": true, "recursive_read_only": true, "propagation": 0, // PROPAGATION_PRIVATE
		}}
	})
	id := startContainer(t, pod, ctrJSON, podJSON)

	if daemon.Major >= 2 {
		var spec struct {
			Info struct {
				RuntimeSpec struct {
					Mounts []struct {
						Destination string   `json:"destination"`
						Options     []string `json:"options"`
					} `json:"mounts"`
				} `json:"runtimeSpec"`
			} `json:"info"`
		}
		out := mustCrictl(t, "inspect", id)
		if err := json.Unmarshal([]byte(out), &spec); err != nil {
			t.Fatalf("crictl inspect: %v", err)
		}
		var opts []string
		for _, m := range spec.Info.RuntimeSpec.Mounts {
			if m.Destination == "/data" {
				opts = m.Options
			}
		}
		if !slices.Contains(opts, "rro") {
			t.Errorf("the volume's mount options %v: no rro", opts)
		}
	}
	if got := mustCrictl(t, "exec", id, "cat", "/data/sub/from-host"); got != "host" {
		t.Errorf("the submount's file reads %q in the container, want host", got)
	}
	if r := crictl(t, "exec", id, "touch", "/data/x"); r.code == 0 || !strings.Contains(r.stderr+r.stdout, "Read-only file system") {
		t.Errorf("touch /data/x: %v, want a read-only file system", r)
	}
	r := crictl(t, "exec", id, "touch", "/data/sub/x")
	switch {
	case daemon.Major >= 2 && (r.code == 0 || !strings.Contains(r.stderr+r.stdout, "Read-only file system")):
		t.Errorf("touch /data/sub/x: %v, want a read-only file system", r)
	case daemon.Major < 2 && r.code != 0:
		// A plain read-only bind mount, as runc makes it: not its submounts.
		t.Errorf("touch /data/sub/x: %v; containerd 1.6 makes the volume read-only, not its submount", r)
	}
	if err := os.WriteFile(filepath.Join(sub, "later"), nil, 0o644); err != nil {
		t.Errorf("the submount on the host: %v, want it writable", err)
	}
}
