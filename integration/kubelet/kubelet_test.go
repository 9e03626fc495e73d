//go:build integration

package kubelet_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// TestRuncAndCocoonPods runs a runc pod and a cocoon pod on the node: the
// cocoon pod's two containers share two emptyDirs, a directory and a tmpfs
// the kubelet mounts (one writes, the other reads; the kubelet's tmpfs on
// the host has what was written in the VM), run on the guest's kernel (not the host's, which the runc pod
// shows) and are one QEMU process.
func TestRuncAndCocoonPods(t *testing.T) {
	createPod(t, pod("runc-pod", "", sh("c", sleeper)))
	// Two emptyDirs: a directory of the kubelet's, and a tmpfs it mounts
	// (medium Memory).
	p := pod("shared-pod", "cocoon",
		sh("writer", "echo written-by-writer > /data/msg; echo in-memory > /mem/msg; "+sleeper),
		sh("reader", "while [ ! -f /data/msg ] || [ ! -f /mem/msg ]; do sleep 0.2; done; cat /data/msg /mem/msg; "+sleeper))
	shareVolumes(p,
		map[string]any{"name": "data", "emptyDir": map[string]any{}},
		map[string]any{"name": "mem", "emptyDir": map[string]any{"medium": "Memory", "sizeLimit": "16Mi"}})
	createPod(t, p)

	want := "written-by-writer\nin-memory"
	waitFor(t, "the reader's log", func() string {
		if out := kubectl(t, "logs", "shared-pod", "-c", "reader"); out != want {
			return fmt.Sprintf("reader's log %q, want %q", out, want)
		}
		return ""
	})
	uid := podField(t, "shared-pod", ".metadata.uid")
	tmpfs := filepath.Join(cluster.KubeletRoot(), "pods", uid, "volumes", "kubernetes.io~empty-dir", "mem")
	if got, _ := os.ReadFile(filepath.Join(tmpfs, "msg")); string(got) != "in-memory\n" {
		t.Errorf("the memory emptyDir on the host (%s) has msg %q, want the writer's", tmpfs, got)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	host := unix.ByteSliceToString(uts.Release[:])
	guest := guestRelease(t)
	if guest == host {
		t.Fatalf("the guest kernel's release %q is the host's", guest)
	}
	for _, c := range []string{"writer", "reader"} {
		if got := kubectl(t, "exec", "shared-pod", "-c", c, "--", "uname", "-r"); got != guest {
			t.Errorf("uname -r in the cocoon pod's %s: %q, want the guest's %q (host %q)", c, got, guest, host)
		}
	}
	if got := kubectl(t, "exec", "runc-pod", "--", "uname", "-r"); got != host {
		t.Errorf("uname -r in the runc pod: %q, want the host's %q", got, host)
	}
	podQEMU(t, "shared-pod")
	if q := sandboxQEMUs(sandboxID(t, "runc-pod")); len(q) != 0 {
		t.Errorf("QEMU processes of the runc pod: %v, want none", q)
	}
}

// TestVMHandler: on CRI-O, the RuntimeClass cocoon-vm runs a pod through
// CRI-O's handler "cocoon-vm" (the shim v2, runtime_type "vm"): its two
// containers share an emptyDir in one VM on the guest's kernel, logs and
// exec work, and delete leaves nothing of the VM, the shim's state
// included.
func TestVMHandler(t *testing.T) {
	if node.vmSandboxDir == nil {
		t.Skip(`containerd has one cocoon handler, "cocoon": the shim v2 that every other test runs; "cocoon-vm" is CRI-O's`)
	}
	p := pod("vm-pod", "cocoon-vm",
		sh("writer", "echo from-writer > /data/msg; "+sleeper),
		sh("reader", "while [ ! -f /data/msg ]; do sleep 0.2; done; cat /data/msg; "+sleeper))
	shareVolumes(p, map[string]any{"name": "data", "emptyDir": map[string]any{}})
	createPod(t, p)
	waitFor(t, "the reader's log", func() string {
		if out := kubectl(t, "logs", "vm-pod", "-c", "reader"); out != "from-writer" {
			return fmt.Sprintf("reader's log %q, want the writer's line", out)
		}
		return ""
	})
	if got, guest := kubectl(t, "exec", "vm-pod", "-c", "writer", "--", "uname", "-r"), guestRelease(t); got != guest {
		t.Errorf("uname -r in the cocoon-vm pod: %q, want the guest's %q", got, guest)
	}
	id := sandboxID(t, "vm-pod")
	podQEMU(t, "vm-pod")
	if dir := node.vmSandboxDir(id); !fileExists(dir) {
		t.Errorf("no VM state of the shim at %s: not the cocoon-vm handler's pod?", dir)
	}
	kubectl(t, "delete", "pod", "vm-pod", "--grace-period=30", "--timeout=3m")
	waitFor(t, "the deleted pod's VM gone", func() string {
		if left := sandboxGone(t, id); left != "" {
			return left
		}
		if dir := node.vmSandboxDir(id); fileExists(dir) {
			return dir + " left"
		}
		return ""
	})
}

// TestProbes: a readiness probe keeps the pod unready until its file
// exists; a liveness probe that starts failing makes the kubelet restart
// the container, in the same VM (the same QEMU process).
func TestProbes(t *testing.T) {
	c := sh("app", "touch /tmp/alive; "+sleeper)
	probe := func(file string) map[string]any {
		return map[string]any{
			"exec":          map[string]any{"command": []string{"cat", file}},
			"periodSeconds": 2, "failureThreshold": 1, "timeoutSeconds": 30,
		}
	}
	c["livenessProbe"] = probe("/tmp/alive")
	c["readinessProbe"] = probe("/tmp/ready")
	createPod(t, pod("probe-pod", "cocoon", c))
	qemu, _ := podQEMU(t, "probe-pod")
	ready := func() string { return podField(t, "probe-pod", `.status.conditions[?(@.type=="Ready")].status`) }

	// The readiness probe runs in the VM and fails, several times.
	waitFor(t, "a failed readiness probe", func() string { return probeFailed(t, "probe-pod", "Readiness") })
	time.Sleep(6 * time.Second)
	if got := ready(); got != "False" {
		t.Fatalf("Ready before /tmp/ready exists: %q, want False", got)
	}
	kubectl(t, "exec", "probe-pod", "--", "touch", "/tmp/ready")
	waitFor(t, "probe-pod Ready", func() string {
		if got := ready(); got != "True" {
			return "Ready " + got
		}
		return ""
	})

	kubectl(t, "exec", "probe-pod", "--", "rm", "/tmp/alive")
	waitFor(t, "a failed liveness probe", func() string { return probeFailed(t, "probe-pod", "Liveness") })
	waitFor(t, "probe-pod's container restarted", func() string {
		n, _ := strconv.Atoi(podField(t, "probe-pod", ".status.containerStatuses[0].restartCount"))
		running := podField(t, "probe-pod", ".status.containerStatuses[0].state.running.startedAt")
		if n < 1 || running == "" {
			return fmt.Sprintf("restartCount %d, running since %q", n, running)
		}
		return ""
	})
	if again, _ := podQEMU(t, "probe-pod"); again != qemu {
		t.Errorf("the pod's QEMU after the restart: pid %d, want %d (the same VM)", again, qemu)
	}
	if got := kubectl(t, "exec", "probe-pod", "--", "cat", "/tmp/alive"); got != "" {
		t.Errorf("/tmp/alive in the restarted container: %q", got)
	}
}

// TestLogsExecPortForward: kubectl logs, exec with stdin, and
// port-forward to busybox httpd in a cocoon pod.
func TestLogsExecPortForward(t *testing.T) {
	createPod(t, pod("io-pod", "cocoon", sh("app",
		"echo log-line-1; echo log-line-2 >&2; mkdir -p /www; echo served-by-httpd > /www/index.html; "+
			"httpd -f -p 8080 -h /www & "+sleeper)))

	// stdout's and stderr's lines, in either order: the two streams are
	// read apart (as from runc's pipes), so the log may have either first.
	waitFor(t, "io-pod's log", func() string {
		out := kubectl(t, "logs", "io-pod")
		lines := strings.Split(out, "\n")
		slices.Sort(lines)
		if !slices.Equal(lines, []string{"log-line-1", "log-line-2"}) {
			return fmt.Sprintf("log %q", out)
		}
		return ""
	})
	r := kubectlResult(t, "line one\nline two\n", "exec", "-i", "io-pod", "--", "sh", "-c", "tr a-z A-Z; echo done")
	if r.Code != 0 || r.Stdout != "LINE ONE\nLINE TWO\ndone\n" {
		t.Errorf("kubectl exec -i: %v", r)
	}
	if r := kubectlResult(t, "", "exec", "io-pod", "--", "sh", "-c", "exit 7"); r.Code != 7 {
		t.Errorf("kubectl exec of exit 7: %v", r)
	}

	addr := portForward(t, "io-pod", 8080)
	if got := testutil.HTTPGet(t, "http://"+addr+"/", commandTimeout); got != "served-by-httpd" {
		t.Errorf("GET through kubectl port-forward: %q, want %q", got, "served-by-httpd")
	}
}

// TestResources: the pod's CPU and memory limits size its VM (-smp: the
// CPU limit rounded up, -m: the memory limit plus the guest's base, as the
// guest sees in nproc and /proc/meminfo), and the kubelet's pod cgroup on the host, which holds
// the VM, limits the memory to the limits plus the RuntimeClass's overhead
// (210Mi).
func TestResources(t *testing.T) {
	c := sh("app", sleeper)
	// 1.5 CPUs: two vCPUs (the node has two CPUs, and the overhead's
	// 100m counts too); 1 GiB: above the configured default guest
	// (hypervisor.memory_mib, 1024 MiB), which a smaller limit keeps.
	c["resources"] = map[string]any{"limits": map[string]any{"cpu": "1500m", "memory": "1Gi"}}
	createPod(t, pod("sized-pod", "cocoon", c))
	if got := podField(t, "sized-pod", ".spec.overhead.memory"); got != "210Mi" {
		t.Errorf("the pod's overhead: %q, want the RuntimeClass's 210Mi", got)
	}
	qemu, cl := podQEMU(t, "sized-pod")
	const guestMiB = 1024 + container.GuestBaseMiB
	for _, want := range []string{" -smp 2 ", fmt.Sprintf(" -m %d ", guestMiB)} {
		if !strings.Contains(cl, want) {
			t.Errorf("the pod's QEMU command line lacks %q: %s", want, cl)
		}
	}
	if got := kubectl(t, "exec", "sized-pod", "--", "nproc"); got != "2" {
		t.Errorf("nproc in the pod: %q, want 2", got)
	}
	meminfo := kubectl(t, "exec", "sized-pod", "--", "head", "-n1", "/proc/meminfo")
	var kib int
	if _, err := fmt.Sscanf(meminfo, "MemTotal: %d kB", &kib); err != nil {
		t.Fatalf("guest /proc/meminfo: %q: %v", meminfo, err)
	}
	if mib := kib / 1024; mib > guestMiB || mib < guestMiB-128 {
		t.Errorf("guest MemTotal %d MiB, want a little under %d", mib, guestMiB)
	}

	uid := podField(t, "sized-pod", ".metadata.uid")
	cgroups, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/memory", cluster.CgroupRoot, "kubepods", "pod"+uid))
	if len(cgroups) != 1 {
		t.Fatalf("the pod's memory cgroup (a Guaranteed pod's, under kubepods): %v", cgroups)
	}
	data, err := os.ReadFile(filepath.Join(cgroups[0], "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(data)), strconv.Itoa((1024+210)<<20); got != want {
		t.Errorf("the pod cgroup's memory limit: %s, want %s (1Gi + 210Mi overhead)", got, want)
	}
	// The VM is in that cgroup: the limit binds it.
	own, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", qemu))
	if err != nil {
		t.Fatal(err)
	}
	podCgroup := strings.TrimPrefix(cgroups[0], "/sys/fs/cgroup/memory")
	if !regexp.MustCompile(`(?m)^\d+:memory:` + regexp.QuoteMeta(podCgroup) + `/`).Match(own) {
		t.Errorf("the pod's QEMU is not under its pod cgroup %s:\n%s", podCgroup, own)
	}
}

// TestDelete: kubectl delete with a grace period stops the containers
// (they exit on TERM, long before the grace period) and leaves nothing of
// the VM; a pod whose QEMU is stopped (SIGSTOP) is deleted within its
// grace period and a margin for TCG, leaving nothing either.
func TestDelete(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		createPod(t, pod("delete-pod", "cocoon", sh("a", sleeper), sh("b", sleeper)))
		id := sandboxID(t, "delete-pod")
		start := time.Now()
		kubectl(t, "delete", "pod", "delete-pod", "--grace-period=60", "--timeout=3m")
		took := time.Since(start)
		t.Logf("kubectl delete of a cocoon pod: %.1fs", took.Seconds())
		if took > 50*time.Second {
			t.Errorf("kubectl delete --grace-period=60 took %v: the containers did not stop on TERM", took)
		}
		waitFor(t, "the deleted pod's VM gone", func() string { return sandboxGone(t, id) })
	})
	t.Run("hung", func(t *testing.T) {
		createPod(t, pod("hung-pod", "cocoon", sh("a", sleeper)))
		id := sandboxID(t, "hung-pod")
		pid, _ := podQEMU(t, "hung-pod")
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped
		const grace, margin = 10, 60
		start := time.Now()
		kubectl(t, "delete", "pod", "hung-pod", fmt.Sprintf("--grace-period=%d", grace), "--timeout=3m")
		took := time.Since(start)
		t.Logf("kubectl delete --grace-period=%d of a pod whose QEMU is stopped: %.1fs", grace, took.Seconds())
		if took > (grace+margin)*time.Second {
			t.Errorf("kubectl delete of a hung pod took %v, want under %ds", took, grace+margin)
		}
		waitFor(t, "the hung pod's VM gone", func() string { return sandboxGone(t, id) })
	})
}

// TestRestartKubeletAndRuntime: a cocoon pod keeps running, in the same
// VM, through a restart of the kubelet and then of the node's runtime
// (containerd or CRI-O), and stays manageable: exec works, and delete
// leaves nothing.
func TestRestartKubeletAndRuntime(t *testing.T) {
	createPod(t, pod("restart-pod", "cocoon", sh("app", "echo started; "+sleeper)))
	id := sandboxID(t, "restart-pod")
	qemu, _ := podQEMU(t, "restart-pod")
	check := func(after string) {
		t.Helper()
		// A restarted kubelet serves exec once it has the pod from the
		// API server again.
		waitFor(t, "exec after "+after, func() string {
			r := kubectlResult(t, "", "exec", "restart-pod", "--", "echo", "exec-after-restart")
			if r.Code != 0 || r.Stdout != "exec-after-restart\n" {
				return r.String()
			}
			return ""
		})
		if got := podField(t, "restart-pod", ".status.phase"); got != "Running" {
			t.Errorf("after %s: phase %q", after, got)
		}
		if got := podField(t, "restart-pod", ".status.containerStatuses[0].restartCount"); got != "0" {
			t.Errorf("after %s: restartCount %s", after, got)
		}
		if again, _ := podQEMU(t, "restart-pod"); again != qemu {
			t.Errorf("after %s: QEMU pid %d, want %d", after, again, qemu)
		}
	}

	if err := cluster.RestartKubelet(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("the kubelet's restart")

	if err := node.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := node.name + "'s restart"
	waitFor(t, "the node Ready after "+restarted, func() string {
		if got := kubectl(t, "get", "node", "-o", `jsonpath={.items[0].status.conditions[?(@.type=="Ready")].status}`); got != "True" {
			return "Ready " + got
		}
		return ""
	})
	check(restarted)

	kubectl(t, "delete", "pod", "restart-pod", "--timeout=3m")
	waitFor(t, "the pod's VM gone", func() string { return sandboxGone(t, id) })
}

// probeFailed checks that the kubelet reported a failure of the pod's
// probe of the kind (Readiness, Liveness): an Unhealthy event.
func probeFailed(t testing.TB, pod, kind string) string {
	t.Helper()
	events := kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+pod+",reason=Unhealthy", "-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, kind+" probe failed") {
		return fmt.Sprintf("no %q in the pod's Unhealthy events: %q", kind+" probe failed", events)
	}
	return ""
}

var forwarding = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)

// portForward runs `kubectl port-forward` from a free local port to the
// pod's remote port until the test ends, and returns the local address.
func portForward(t *testing.T, pod string, remote int) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := cluster.KubectlCommand(ctx, "port-forward", "pod/"+pod, fmt.Sprintf(":%d", remote))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	testutil.StartUntilCleanup(t, cmd, cancel)
	ports := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
				ports <- m[1]
			}
		}
		close(ports)
	}()
	select {
	case port, ok := <-ports:
		if ok {
			return "127.0.0.1:" + port
		}
	case <-time.After(time.Minute):
	}
	t.Fatalf("kubectl port-forward %s :%d did not start (stderr %q)", pod, remote, stderr.String())
	return ""
}
