//go:build integration

package kubelet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Timeouts scale with TCG: a cocoon pod boots a VM under software
// emulation, on a host shared with other suites.
const (
	commandTimeout = 3 * time.Minute
	podTimeout     = 4 * time.Minute
)

// sleeper is a container command that runs until TERM, which it obeys at
// once (a container's PID 1 ignores signals it does not handle).
const sleeper = "trap 'exit 0' TERM; sleep 3600 & wait"

// kubectlResult runs kubectl with stdin (none if empty).
func kubectlResult(t testing.TB, stdin string, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunClient(t, commandTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		return cluster.KubectlCommand(ctx, args...)
	})
}

// kubectl runs kubectl, fails the test unless it succeeds and returns its
// trimmed stdout.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	r := kubectlResult(t, "", args...)
	if r.Code != 0 {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.Stdout)
}

// sh is a busybox container running sh -c script.
func sh(name, script string) map[string]any {
	return map[string]any{
		"name": name, "image": busybox, "imagePullPolicy": "Never",
		"command": []string{"sh", "-c", script},
	}
}

// pod is a pod on the suite's node (there is no scheduler) with the
// containers, on runtimeClass ("" for the default, runc).
func pod(name, runtimeClass string, containers ...map[string]any) map[string]any {
	spec := map[string]any{
		"nodeName":                      kubetest.NodeName,
		"automountServiceAccountToken":  false,
		"terminationGracePeriodSeconds": 30,
		"containers":                    containers,
	}
	if runtimeClass != "" {
		spec["runtimeClassName"] = runtimeClass
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     spec,
	}
}

// shareVolumes gives pod p the volumes, each mounted at /<its name> in
// every container.
func shareVolumes(p map[string]any, volumes ...map[string]any) {
	spec := p["spec"].(map[string]any)
	spec["volumes"] = volumes
	var mounts []map[string]any
	for _, v := range volumes {
		mounts = append(mounts, map[string]any{"name": v["name"], "mountPath": "/" + v["name"].(string)})
	}
	for _, c := range spec["containers"].([]map[string]any) {
		c["volumeMounts"] = mounts
	}
}

// createPod creates the pod, deletes it at the end of the test if it is
// still there, and waits for it to run.
func createPod(t *testing.T, p map[string]any) {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	name := p["metadata"].(map[string]any)["name"].(string)
	if r := kubectlResult(t, string(data), "create", "-f", "-"); r.Code != 0 {
		t.Fatalf("kubectl create pod %s: %v", name, r)
	}
	t.Cleanup(func() {
		kubectlResult(t, "", "delete", "pod", name, "--ignore-not-found", "--wait", "--timeout", "3m")
	})
	waitPod(t, name, "Running")
}

// podField returns a pod's field by JSONPath.
func podField(t testing.TB, name, jsonpath string) string {
	t.Helper()
	return kubectl(t, "get", "pod", name, "-o", "jsonpath={"+jsonpath+"}")
}

// waitFor polls check (every second) until it returns "" or podTimeout
// passes; then it fails with check's last word.
func waitFor(t testing.TB, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(podTimeout)
	for {
		last := check()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, podTimeout, last)
		}
		time.Sleep(time.Second)
	}
}

// waitPod waits for the pod's phase.
func waitPod(t testing.TB, name, phase string) {
	t.Helper()
	waitFor(t, "pod "+name+" "+phase, func() string {
		got := podField(t, name, ".status.phase")
		if got == phase {
			return ""
		}
		if got == "Failed" || got == "Succeeded" {
			t.Fatalf("pod %s: phase %s, want %s; status %s", name, got, phase, podField(t, name, ".status"))
		}
		return fmt.Sprintf("phase %q; status %s", got, podField(t, name, ".status"))
	})
}

// crictl runs crictl against the node's runtime and returns its trimmed
// stdout.
func crictl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := cluster.Crictl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sandboxID returns the CRI sandbox of the pod's running incarnation.
func sandboxID(t testing.TB, name string) string {
	t.Helper()
	uid := podField(t, name, ".metadata.uid")
	ids := crictl(t, "pods", "-q", "--state", "ready", "--label", "io.kubernetes.pod.uid="+uid)
	if f := strings.Fields(ids); len(f) != 1 {
		t.Fatalf("ready sandboxes of pod %s: %q, want one", name, ids)
	}
	return ids
}

// sandboxQEMUs returns the QEMU processes of a CRI sandbox, named after
// it ("PID: command line").
func sandboxQEMUs(id string) []string {
	var found []string
	for _, p := range testutil.ProcessesOf("-name " + container.SandboxIDFor(id) + " ") {
		if strings.Contains(p, "qemu-system") {
			found = append(found, p)
		}
	}
	return found
}

// podQEMU returns the PID and command line of the one QEMU of the pod's
// sandbox, failing the test unless there is exactly one.
func podQEMU(t testing.TB, name string) (int, string) {
	t.Helper()
	q := sandboxQEMUs(sandboxID(t, name))
	if len(q) != 1 {
		t.Fatalf("QEMU processes of pod %s: %v, want one", name, q)
	}
	pid, cl, _ := strings.Cut(q[0], ": ")
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatal(err)
	}
	return n, cl
}

// sandboxGone checks that nothing of a sandbox is left: no QEMU, no state
// under cocoon's sandbox root, and in the runtime neither the sandbox nor
// a container of it (the kubelet's garbage collector removes them, within
// a minute, after it stopped them).
func sandboxGone(t testing.TB, id string) string {
	t.Helper()
	if q := sandboxQEMUs(id); len(q) > 0 {
		return fmt.Sprintf("QEMU left: %v", q)
	}
	if dir := node.sandboxDir(id); fileExists(dir) {
		return dir + " left"
	}
	if ids := crictl(t, "ps", "-a", "-q", "--pod", id); ids != "" {
		return "containers left in " + node.name + ": " + ids
	}
	if ids := crictl(t, "pods", "-q", "--id", id); ids != "" {
		return "sandbox left in " + node.name + ": " + ids
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// guestRelease is the guest kernel's release (make kernel).
func guestRelease(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(os.Getenv("COCOON_TEST_OUT"), "kernel.release"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}
