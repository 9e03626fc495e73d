//go:build integration

package runtime_test

import (
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// qemuCount counts the QEMU processes of the suite's sandboxes.
func qemuCount() int { return testutil.QEMUCount(sandboxRoot()) }

// TestPod creates a pod as CRI-O does through conmon: the sandbox
// container boots the VM, a container with the pod's annotations joins it,
// and the VM lives until the pod's last container is deleted, whichever
// goes first.
func TestPod(t *testing.T) {
	infra := baseSpec(t, "sleep", "600")
	infra.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "sandbox",
		"io.kubernetes.cri-o.SandboxID":     "pod",
	}
	app := baseSpec(t, "sh", "-c", "echo app > /dev/shm/app; sleep 600")
	app.Annotations = map[string]string{
		"io.kubernetes.cri-o.ContainerType": "container",
		"io.kubernetes.cri-o.SandboxID":     "pod",
	}
	mustRT(t, "create", "--bundle", writeBundle(t, infra), "pod")
	defer forceDelete(t, "pod")
	mustRT(t, "start", "pod")
	mustRT(t, "create", "--bundle", writeBundle(t, app), "app")
	defer forceDelete(t, "app")
	mustRT(t, "start", "app")
	if n := qemuCount(); n != 1 {
		t.Fatalf("%d QEMU processes for a pod of two containers, want 1", n)
	}
	// Both run in the same guest kernel.
	a := strings.TrimSpace(mustRT(t, "exec", "pod", "cat", "/proc/sys/kernel/random/boot_id").stdout)
	b := strings.TrimSpace(mustRT(t, "exec", "app", "cat", "/proc/sys/kernel/random/boot_id").stdout)
	if a == "" || a != b {
		t.Errorf("boot ids %q and %q: not the same VM", a, b)
	}
	// The sandbox container goes first; the VM stays for the other.
	mustRT(t, "delete", "--force", "pod")
	if n := qemuCount(); n != 1 {
		t.Fatalf("%d QEMU processes after deleting the sandbox container, want 1", n)
	}
	if r := mustRT(t, "exec", "app", "cat", "/dev/shm/app"); r.stdout != "app\n" {
		t.Errorf("app after its pod's sandbox container left: %v", r)
	}
	mustRT(t, "delete", "--force", "app")
	if n := qemuCount(); n != 0 {
		t.Errorf("%d QEMU processes after the pod's last container, want 0", n)
	}

	t.Run("JoinMissingPod", func(t *testing.T) {
		// containerd's CRI creates the sandbox container first, always
		// (CRI-O may not: see the conmon tests' TestPodWithoutInfra).
		app := baseSpec(t, "true")
		app.Annotations = map[string]string{
			"io.kubernetes.cri.container-type": "container",
			"io.kubernetes.cri.sandbox-id":     "pod",
		}
		r := rt(t, "create", "--bundle", writeBundle(t, app), "orphan")
		if r.code != 1 || !strings.Contains(r.stderr, "sandbox") {
			t.Errorf("joining a missing pod: %v", r)
		}
	})
}
