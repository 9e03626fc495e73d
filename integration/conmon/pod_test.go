//go:build integration

package conmon_test

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/conmon"
)

// TestPod creates a pod as CRI-O does: the infra container (CRI-O's
// annotations say "sandbox") boots the VM, an app container naming the pod
// joins it, both through conmon; one QEMU for the two. The app is stopped
// by name (KILL), then the pod is torn down.
func TestPod(t *testing.T) {
	const podID = "crio-pod"
	infraSpec := baseSpec(t, "sleep", "600")
	infraSpec.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "sandbox",
		"io.kubernetes.cri-o.SandboxID":     podID,
	}
	appSpec := baseSpec(t, "sh", "-c", "echo app > /dev/shm/app; echo app up; exec sleep 600")
	appSpec.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "container",
		"io.kubernetes.cri-o.SandboxID":     podID,
	}
	infra := newContainer(t, podID, infraSpec)
	create(t, infra)
	mustRun(t, "start", infra.ID)
	app := newContainer(t, "crio-app", appSpec)
	create(t, app)
	mustRun(t, "start", app.ID)
	waitLog(t, app, "app up\n")
	if n := qemuCount(); n != 1 {
		t.Fatalf("%d QEMU processes for a pod of two containers, want 1", n)
	}
	bootID := func(c *conmon.Container, p *specs.Process) string {
		res, err := e.rt.ExecSync(ctx(t), c, p, []string{"cat", "/proc/sys/kernel/random/boot_id"}, 0)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec-sync in %s: %+v, %v", c.ID, res, err)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	a, b := bootID(infra, infraSpec.Process), bootID(app, appSpec.Process)
	if a == "" || a != b {
		t.Errorf("boot ids %q and %q: not the same VM", a, b)
	}

	mustRun(t, "kill", app.ID, "KILL")
	if code := exitCode(t, app.ID); code != 137 {
		t.Errorf("app's exit file after kill KILL: %d, want 137", code)
	}
	_, err := e.rt.Run(ctx(t), nil, "kill", app.ID, "KILL")
	notRunning(t, "second kill KILL", err)
	remove(t, app)
	if n := qemuCount(); n != 1 {
		t.Errorf("%d QEMU processes after removing the app, want 1 (the pod's)", n)
	}
	mustRun(t, "kill", infra.ID, "KILL")
	if code := exitCode(t, infra.ID); code != 137 {
		t.Errorf("infra's exit file after kill KILL: %d, want 137", code)
	}
	remove(t, infra)
	if n := qemuCount(); n != 0 {
		t.Errorf("%d QEMU processes after the pod's last container, want 0", n)
	}
}

// TestPodWithoutInfra is a pod as CRI-O runs it by default when the pod has
// no pod-level PID namespace (drop_infra_ctr): no infra container, only
// app containers naming the pod. The first boots the pod's VM, the second
// joins it; the VM lives until the last one is deleted.
func TestPodWithoutInfra(t *testing.T) {
	const podID = "crio-noinfra"
	spec := func(msg string) *specs.Spec {
		s := baseSpec(t, "sh", "-c", "echo "+msg+"; exec sleep 600")
		s.Annotations = map[string]string{
			"io.kubernetes.cri-o.ContainerType": "container",
			"io.kubernetes.cri-o.SandboxID":     podID,
		}
		return s
	}
	first, second := newContainer(t, "noinfra-1", spec("one")), newContainer(t, "noinfra-2", spec("two"))
	create(t, first)
	mustRun(t, "start", first.ID)
	create(t, second)
	mustRun(t, "start", second.ID)
	waitLog(t, first, "one\n")
	waitLog(t, second, "two\n")
	if n := qemuCount(); n != 1 {
		t.Fatalf("%d QEMU processes for a pod of two containers without infra, want 1", n)
	}
	remove(t, first)
	if n := qemuCount(); n != 1 {
		t.Errorf("%d QEMU processes after deleting the container that booted the VM, want 1", n)
	}
	if st := status(t, second.ID); st.Status != "running" {
		t.Errorf("the second container after the first left: %+v", st)
	}
	remove(t, second)
	if n := qemuCount(); n != 0 {
		t.Errorf("%d QEMU processes after the pod's last container, want 0", n)
	}
}
