package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/hypervisortest"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// TestHostCgroup: Create makes the caller's host cgroup with the spec's
// limits and the overhead cgroup beside it with the VM's, and hands the
// latter to the hypervisor to place the VMM in before it runs, without ever
// joining either itself (a long-lived shim must not be charged for a pod);
// another process's manager finds them from the state and adds a process
// (a relay) to the caller's; Destroy refuses while that process lives,
// keeping the state, and removes both cgroups once it has gone.
func TestHostCgroup(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{})
	path := fmt.Sprintf("/cocoon-sandbox-test-%d", os.Getpid())
	before, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var atStart map[string]string
	var placer hypervisor.Placer
	h := f.m.Hypervisor.(*hypervisortest.Hypervisor)
	start := h.StartFunc
	h.StartFunc = func(ctx context.Context, vc hypervisor.VMConfig) (hypervisor.VM, error) {
		atStart, _ = cgroups.ParseCgroupFile("/proc/self/cgroup")
		placer = vc.Cgroup
		return start(ctx, vc)
	}
	limit := int64(32 << 20)
	sb, err := f.m.Create(context.Background(), "cg", sandbox.WithCgroup(sandbox.CgroupOf(&specs.Spec{Linux: &specs.Linux{
		CgroupsPath: path,
		Resources:   &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}},
	}}, false)))
	if err != nil {
		t.Fatal(err)
	}
	st := sb.State().Cgroup
	if st == nil || len(st.Paths) == 0 || st.VMM == nil || len(st.VMM.Paths) == 0 {
		t.Fatalf("no host cgroups in the state: %+v", st)
	}
	t.Cleanup(func() {
		for _, dir := range st.VMM.Paths {
			_ = os.Remove(dir)
		}
		for _, dir := range st.Paths {
			_ = os.Remove(dir)
		}
	})
	if placer == nil {
		t.Error("the VM was started without its host cgroup to be placed in")
	}
	for ctrl, dir := range st.Paths {
		if atStart[ctrl] != before[ctrl] {
			t.Errorf("%s: this process was in %q while starting the VM, want %q (its own)", ctrl, atStart[ctrl], before[ctrl])
		}
		if !strings.HasSuffix(dir, path) {
			t.Errorf("%s: cgroup directory %s", ctrl, dir)
		}
	}
	after, _ := cgroups.ParseCgroupFile("/proc/self/cgroup")
	for ctrl, p := range before {
		if after[ctrl] != p {
			t.Errorf("%s: after Create this process is in %q, was in %q", ctrl, after[ctrl], p)
		}
	}
	if dir, ok := st.Paths["memory"]; ok {
		got, _ := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes"))
		if v, _ := strconv.ParseInt(strings.TrimSpace(string(got)), 10, 64); v != limit {
			t.Errorf("memory.limit_in_bytes %s: want the spec's %d", got, limit)
		}
		got, _ = os.ReadFile(filepath.Join(st.VMM.Paths["memory"], "memory.limit_in_bytes"))
		if v, _ := strconv.ParseInt(strings.TrimSpace(string(got)), 10, 64); v <= limit {
			t.Errorf("overhead cgroup's memory.limit_in_bytes %s: want the limit plus the VM's overhead", got)
		}
	}

	other, err := f.m.Load(context.Background(), "cg")
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if err := other.AddProcess(child.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for ctrl, dir := range st.Paths {
		if ctrl == "pids" {
			// A relay's threads are counted with the VM's (v1).
			dir = st.VMM.Paths[ctrl]
		}
		procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if strings.TrimSpace(string(procs)) != strconv.Itoa(child.Process.Pid) {
			t.Errorf("%s: cgroup.procs %q, want the added %d", ctrl, procs, child.Process.Pid)
		}
	}
	if err := other.Destroy(context.Background()); err == nil || !strings.Contains(err.Error(), strconv.Itoa(child.Process.Pid)) {
		t.Errorf("Destroy with a process in the cgroup: %v, want an error naming it", err)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	again, err := f.m.Load(context.Background(), "cg")
	if err != nil {
		t.Fatalf("the state went with a cgroup left: %v", err)
	}
	if err := again.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, paths := range []map[string]string{st.Paths, st.VMM.Paths} {
		for ctrl, dir := range paths {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s: %s left (%v)", ctrl, dir, err)
			}
		}
	}
	if _, err := f.m.Load(context.Background(), "cg"); err == nil {
		t.Error("the sandbox is still there after Destroy")
	}
}
