//go:build integration

package conmon_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/integration/conmontest"
)

// podNamespaces stands in for pinns: a process in an IPC and a UTS
// namespace of its own, which the pod's containers name by host paths as
// CRI-O's pinned namespaces (/proc/<pid>/ns/<type>, meaning nothing in the
// guest either). It is killed at the end of the test.
func podNamespaces(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("unshare", "--ipc", "--uts", "sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	dir := fmt.Sprintf("/proc/%d/ns/", cmd.Process.Pid)
	// unshare makes the namespaces, then becomes sleep.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		own, _ := os.Readlink("/proc/self/ns/ipc")
		if theirs, err := os.Readlink(dir + "ipc"); err == nil && theirs != own {
			return dir
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare made no IPC namespace")
		}
	}
}

// crioPodSpec gives s what CRI-O gives a pod's container: its annotations
// and, as with pinns, the pod's IPC and UTS namespaces by host paths under
// nsDir (podNamespaces), the pod's hostname, an IPC sysctl; with sharePID,
// the infra container's PID namespace by path too (shareProcessNamespace;
// here the test's own, which means nothing in the guest either).
func crioPodSpec(s *specs.Spec, podID, typ, nsDir string, sharePID bool) {
	s.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": typ,
		"io.kubernetes.cri-o.SandboxID":     podID,
	}
	s.Hostname = "crio-pod-host"
	if s.Linux.Sysctl == nil {
		s.Linux.Sysctl = map[string]string{}
	}
	s.Linux.Sysctl["kernel.shm_rmid_forced"] = "1"
	for i, ns := range s.Linux.Namespaces {
		switch {
		case ns.Type == specs.IPCNamespace, ns.Type == specs.UTSNamespace:
			s.Linux.Namespaces[i].Path = nsDir + map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[ns.Type]
		case ns.Type == specs.PIDNamespace && sharePID:
			s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/pid", os.Getpid())
		}
	}
}

// TestPod creates a pod as CRI-O does: the infra container (CRI-O's
// annotations say "sandbox") boots the VM, an app container naming the pod
// joins it, both through conmon; one QEMU for the two. They share the
// pod's IPC and UTS namespaces and, as the pod asks, its PID namespace. The
// app is stopped by name (KILL), then the pod is torn down.
func TestPod(t *testing.T) {
	const podID = "crio-pod"
	nsDir := podNamespaces(t)
	infraSpec := baseSpec(t, "sleep", "600")
	crioPodSpec(infraSpec, podID, "sandbox", nsDir, false)
	appSpec := baseSpec(t, "sh", "-c", "echo app > /dev/shm/app; echo app up; exec sleep 700")
	crioPodSpec(appSpec, podID, "container", nsDir, true)
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
	restored(t)
	in := func(c *conmontest.Container, p *specs.Process, cmd string) string {
		res, err := e.rt.ExecSync(ctx(t), c, p, []string{"sh", "-c", cmd}, 0)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec-sync %q in %s: %+v, %v", cmd, c.ID, res, err)
		}
		return strings.TrimSpace(string(res.Stdout))
	}
	for _, cmd := range []string{
		"cat /proc/sys/kernel/random/boot_id", // one VM
		"readlink /proc/self/ns/ipc",          // the pod's IPC namespace
		"readlink /proc/self/ns/uts",          // the pod's UTS namespace
		"hostname",
		"cat /proc/sys/kernel/shm_rmid_forced", // the pod's IPC sysctl
	} {
		if a, b := in(infra, infraSpec.Process, cmd), in(app, appSpec.Process, cmd); a == "" || a != b {
			t.Errorf("%s: %q in the infra container, %q in the app", cmd, a, b)
		}
	}
	if h := in(app, appSpec.Process, "hostname"); h != "crio-pod-host" {
		t.Errorf("hostname %q, want the pod's", h)
	}
	if v := in(app, appSpec.Process, "cat /proc/sys/kernel/shm_rmid_forced"); v != "1" {
		t.Errorf("kernel.shm_rmid_forced %q, want the pod's 1", v)
	}
	// The pod shares its PID namespace: the app sees the infra's process.
	if ps := in(app, appSpec.Process, "ps -o args"); !strings.Contains(ps, "sleep 600") || !strings.Contains(ps, "sleep 700") {
		t.Errorf("processes the app sees in a pod sharing its PID namespace:\n%s", ps)
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
	nsDir := podNamespaces(t)
	spec := func(msg string) *specs.Spec {
		s := baseSpec(t, "sh", "-c", "echo "+msg+"; exec sleep 600")
		crioPodSpec(s, podID, "container", nsDir, false)
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
	var ipc []string
	for _, c := range []*conmontest.Container{first, second} {
		res, err := e.rt.ExecSync(ctx(t), c, spec("x").Process, []string{"readlink", "/proc/self/ns/ipc"}, 0)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec-sync in %s: %+v, %v", c.ID, res, err)
		}
		ipc = append(ipc, strings.TrimSpace(string(res.Stdout)))
	}
	if ipc[0] == "" || ipc[0] != ipc[1] {
		t.Errorf("IPC namespaces %q: the pod's containers do not share one", ipc)
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
