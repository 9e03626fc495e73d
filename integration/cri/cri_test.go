//go:build integration

// Package cri_test drives cocoon through containerd's CRI plugin with
// crictl, as the kubelet would: a private containerd (see containerdtest)
// with "cocoon" and "runc" runtime handlers, a pause image built here from
// a few lines of Go, host-network pods, and pods on a CNI network (Debian's
// bridge and host-local plugins from private directories: see
// containerdtest.PodNetwork). A pod is one VM, and all its containers run
// in it. VM templates are on: every pod's VM is restored from a template.
package cri_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
)

const (
	namespace      = "k8s.io"
	busybox        = containerdtest.BusyboxImage
	pause          = containerdtest.PauseImage
	commandTimeout = 3 * time.Minute
)

var (
	daemon     *containerdtest.Daemon
	crictlPath string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	if crictlPath, err = containerdtest.CrictlPath(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Two templates: host-network pods' VMs have no NIC, CNI pods' one.
	opts := containerdtest.Options{CRI: true, SandboxImage: pause, PodNetwork: podNetwork, Templates: 2}
	return containerdtest.RunTests(m, opts, namespace, func(ctx context.Context, d *containerdtest.Daemon) error {
		daemon = d
		if err := d.ImportBusybox(ctx, namespace); err != nil {
			return err
		}
		return d.ImportPause(ctx, namespace)
	})
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// crictl runs crictl against the suite's daemon.
func crictl(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd, err := daemon.CrictlCommand(ctx, crictlPath, args...)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("crictl %v: timed out after %v", args, commandTimeout)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("crictl %v: %v", args, err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func mustCrictl(t testing.TB, args ...string) string {
	t.Helper()
	r := crictl(t, args...)
	if r.code != 0 {
		t.Fatalf("crictl %v: %v", args, r)
	}
	return strings.TrimSpace(r.stdout)
}

// podConfig writes the configuration of a host-network pod, which runs on
// containerdtest.HostNSRuntime (the VM's own network: loopback only).
func podConfig(t testing.TB, dir, name string) string {
	t.Helper()
	path, err := containerdtest.PodConfig(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func containerConfig(t testing.TB, dir, name string, cmd ...string) string {
	t.Helper()
	path, err := containerdtest.ContainerConfig(dir, name, busybox, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// runPod starts a pod with the handler and returns its ID; the pod is
// stopped and removed at the end of the test if it is still there.
func runPod(t testing.TB, handler, podJSON string) string {
	t.Helper()
	id := mustCrictl(t, "runp", "--runtime", handler, podJSON)
	t.Cleanup(func() {
		crictl(t, "stopp", id)
		crictl(t, "rmp", "-f", id)
	})
	return id
}

// startContainer creates and starts a container in pod podID.
func startContainer(t testing.TB, podID, ctrJSON, podJSON string) string {
	t.Helper()
	id := mustCrictl(t, "create", podID, ctrJSON, podJSON)
	mustCrictl(t, "start", id)
	return id
}

// setLinux replaces the "linux" section of the container configuration at
// path.
func setLinux(t *testing.T, path string, linux map[string]any) {
	t.Helper()
	editConfig(t, path, func(cfg map[string]any) { cfg["linux"] = linux })
}

// editConfig changes the JSON configuration at path with edit.
func editConfig(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for container id to exit and returns its exit code and
// the reason CRI gives, as "137 OOMKilled".
func waitExit(t *testing.T, id string) string {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		st := mustCrictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}} {{.status.reason}}", id)
		if code, ok := strings.CutPrefix(st, "CONTAINER_EXITED "); ok {
			return code
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not exit: %s", id[:12], st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func qemus(t *testing.T) []string {
	t.Helper()
	return containerdtest.QEMUs(daemon.SandboxRoot(namespace))
}

func TestPod(t *testing.T) {
	dir := t.TempDir()
	podJSON := podConfig(t, dir, "cocoon-pod")
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	c1 := startContainer(t, pod, containerConfig(t, dir, "c1", "sh", "-c", "echo hello from c1; exec sleep 1001"), podJSON)
	c2 := startContainer(t, pod, containerConfig(t, dir, "c2", "sh", "-c", "trap 'exit 0' TERM; echo hello from c2; sleep 1002 & wait"), podJSON)

	if q := qemus(t); len(q) != 1 {
		t.Fatalf("%d QEMU processes for one pod of two containers, want 1: %v", len(q), q)
	}
	// A host-network pod has the host's hostname, as with runc.
	if h, _ := os.Hostname(); mustCrictl(t, "exec", "-s", c1, "hostname") != h {
		t.Errorf("hostname in a host-network pod: want the host's %q", h)
	}
	host, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	if got := mustCrictl(t, "exec", "-s", c1, "uname", "-r"); got == strings.TrimSpace(string(host)) {
		t.Errorf("uname -r in the pod %q is the host's", got)
	}

	t.Run("shared PID namespace", func(t *testing.T) {
		for _, tc := range []struct{ id, other string }{{c1, "sleep 1002"}, {c2, "sleep 1001"}} {
			ps := mustCrictl(t, "exec", "-s", tc.id, "ps")
			if !strings.Contains(ps, tc.other) || !strings.Contains(ps, "/pause") {
				t.Errorf("ps in %s: %q lacks the other container's %q or the pause process", tc.id[:12], ps, tc.other)
			}
		}
	})

	t.Run("exec -s", func(t *testing.T) {
		r := crictl(t, "exec", "-s", c1, "sh", "-c", "echo out; echo err >&2")
		// crictl prints the command's stdout, then its stderr.
		if r.code != 0 || strings.Fields(r.stdout + r.stderr)[0] != "out" || !strings.Contains(r.stdout+r.stderr, "err") {
			t.Errorf("exec -s: %v; want out and err", r)
		}
		// crictl reports a failed command's status in its error.
		r = crictl(t, "exec", "-s", c1, "sh", "-c", "echo bad >&2; exit 3")
		if r.code == 0 || !strings.Contains(r.stderr, "exited with 3: bad") {
			t.Errorf("exec -s of a failing command: %v; want its status 3 and stderr", r)
		}
	})

	t.Run("exec -it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		cmd, err := daemon.CrictlCommand(ctx, crictlPath, "exec", "-it", c1, "sh", "-c", "tty; read line; echo got:$line; exit 4")
		if err != nil {
			t.Fatal(err)
		}
		got, code, err := containerdtest.RunInTerminal(cmd, 24, 80, "typed\r", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// crictl reports the command's status in its error.
		if code == 0 || !strings.Contains(got, "exit code 4") {
			t.Errorf("exec -it exit %d, %q; want the command's exit code 4 reported", code, got)
		}
		if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "got:typed") {
			t.Errorf("exec -it output %q: want a terminal and the typed line", got)
		}
	})

	t.Run("logs", func(t *testing.T) {
		if got := mustCrictl(t, "logs", c1); !strings.Contains(got, "hello from c1") {
			t.Errorf("logs: %q", got)
		}
	})

	t.Run("stats", func(t *testing.T) {
		out := mustCrictl(t, "stats", "-o", "json", "--id", c1)
		var s struct {
			Stats []struct {
				Attributes struct{ ID string }
				Memory     struct{ WorkingSetBytes struct{ Value string } }
				CPU        struct{ UsageCoreNanoSeconds struct{ Value string } }
			}
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("stats: %v: %s", err, out)
		}
		if len(s.Stats) != 1 || s.Stats[0].Attributes.ID != c1 || s.Stats[0].Memory.WorkingSetBytes.Value == "" || s.Stats[0].CPU.UsageCoreNanoSeconds.Value == "" {
			t.Errorf("stats: %s", out)
		}
	})

	t.Run("update", func(t *testing.T) {
		mustCrictl(t, "update", "--memory", "268435456", c1)
		got := mustCrictl(t, "exec", "-s", c1, "sh", "-c",
			`p=$(sed -n 's/^0:://p' /proc/self/cgroup); cat /sys/fs/cgroup$p/memory.max`)
		if got != "268435456" {
			t.Errorf("memory limit in the container after update: %q, want 268435456", got)
		}
	})

	t.Run("stop and rm", func(t *testing.T) {
		mustCrictl(t, "stop", "-t", "10", c2)
		st := mustCrictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}}", c2)
		if st != "CONTAINER_EXITED 0" {
			t.Errorf("after stop: %q, want CONTAINER_EXITED 0 (the trap's exit)", st)
		}
		mustCrictl(t, "rm", c2)
		if q := qemus(t); len(q) != 1 {
			t.Errorf("%d QEMU processes after removing one container, want 1", len(q))
		}
	})

	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left after rmp: %v", q)
	}
	if p := containerdtest.Processes("containerd-shim-cocoon-v2 -namespace " + namespace + " -address " + daemon.Socket); len(p) != 0 {
		t.Errorf("shim left after rmp: %v", p)
	}
}

// TestHungPod stops the QEMU of a pod with a running container (SIGSTOP;
// the VM was restored from a template): crictl rmp -f returns within 10 s,
// leaving nothing (the suite's leftovers check).
func TestHungPod(t *testing.T) {
	dir := t.TempDir()
	podJSON := podConfig(t, dir, "hung-pod")
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	startContainer(t, pod, containerConfig(t, dir, "c", "sleep", "1003"), podJSON)
	q := qemus(t)
	if len(q) != 1 {
		t.Fatalf("QEMU processes %v, want one", q)
	}
	var pid int
	if _, err := fmt.Sscanf(q[0], "%d:", &pid); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Templates.Restored(pid); err != nil {
		t.Error(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped
	start := time.Now()
	r := crictl(t, "rmp", "-f", pod)
	took := time.Since(start)
	t.Logf("crictl rmp -f of a hung pod: %.2fs", took.Seconds())
	if r.code != 0 || took > 10*time.Second {
		t.Errorf("crictl rmp -f of a hung pod: %v after %.1fs, want success within 10s; containerd log:\n%s", r, took.Seconds(), daemon.LogTail())
	}
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left: %v", q)
	}
}

// TestShimStaysInItsCgroup: the pod's host cgroups (under the pod config's
// cgroup_parent: the sandbox's, and its overhead cgroup beside it, which
// holds the pod's VM and proxy, placed there before they run) never hold
// the shim: while the pod starts, runs a container and
// execs, the pod's cgroups are read every few milliseconds, and so is the
// shim's own /proc/<pid>/cgroup once it runs.
func TestShimStaysInItsCgroup(t *testing.T) {
	dir := t.TempDir()
	parent := fmt.Sprintf("/cocoon-cri-test-%d", os.Getpid())
	podJSON := podConfig(t, dir, "cgroup-pod")
	data, err := os.ReadFile(podJSON)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["linux"].(map[string]any)["cgroup_parent"] = parent
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(podJSON, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, root := range cgroupRoots() {
			_ = os.Remove(root + parent)
		}
	})

	shimCmd := "containerd-shim-cocoon-v2 -namespace " + namespace + " -address " + daemon.Socket
	stop := make(chan struct{})
	found := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(found)
				return
			case <-time.After(2 * time.Millisecond):
			}
			if bad := shimInCgroup(parent, shimCmd); bad != "" {
				found <- bad
				close(found)
				<-stop
				return
			}
		}
	}()
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	c := startContainer(t, pod, containerConfig(t, dir, "c", "sleep", "1004"), podJSON)
	mustCrictl(t, "exec", "-s", c, "true")
	close(stop)
	if bad := <-found; bad != "" {
		t.Error(bad)
	}

	q := qemus(t)
	if len(q) != 1 {
		t.Fatalf("QEMU processes %v, want one", q)
	}
	var pid int
	if _, err := fmt.Sscanf(q[0], "%d:", &pid); err != nil {
		t.Fatal(err)
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); !strings.Contains(string(cg), parent+"/") || !strings.Contains(string(cg), ".vmm\n") {
		t.Errorf("the pod's QEMU is not in the overhead cgroup beside the pod's under %s:\n%s", parent, cg)
	}
	shims := containerdtest.Processes(shimCmd)
	if len(shims) != 1 {
		t.Fatalf("shims %v, want one", shims)
	}
	var shim int
	if _, err := fmt.Sscanf(shims[0], "%d:", &shim); err != nil {
		t.Fatal(err)
	}
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", shim)); strings.Contains(string(cg), parent) {
		t.Errorf("the shim is in the pod's cgroup:\n%s", cg)
	}
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
}

// cgroupRoots are the mount points of this host's cgroup hierarchies.
func cgroupRoots() []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var roots []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+1 < len(f) && strings.HasPrefix(f[i+1], "cgroup") {
				roots = append(roots, f[4])
			}
		}
	}
	return roots
}

// shimInCgroup says which shim process (whose command line holds shimCmd)
// some hierarchy's cgroups under parent hold, if any.
func shimInCgroup(parent, shimCmd string) string {
	for _, root := range cgroupRoots() {
		var bad string
		_ = filepath.WalkDir(root+parent, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || bad != "" {
				return nil
			}
			procs, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for _, p := range strings.Fields(string(procs)) {
				cl, _ := os.ReadFile("/proc/" + p + "/cmdline")
				if strings.Contains(strings.ReplaceAll(string(cl), "\x00", " "), shimCmd) {
					bad = fmt.Sprintf("the shim (pid %s) is in the pod's cgroup %s", p, path)
				}
			}
			return nil
		})
		if bad != "" {
			return bad
		}
	}
	return ""
}

// TestOOMKilled: a container that the guest's OOM killer ends is reported
// with 137 and the reason OOMKilled, every time: containerd 1.6 takes the
// reason from the TaskOOM event, which the shim publishes before the exit;
// 2.x also reads the OOM kills in the task's metrics after the exit.
func TestOOMKilled(t *testing.T) {
	const runs = 20
	dir := t.TempDir()
	podJSON := podConfig(t, dir, "oom")
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	// dd's 64 MiB buffer, filled from /dev/zero, does not fit in 32 MiB.
	ctrJSON := containerConfig(t, dir, "oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	setLinux(t, ctrJSON, map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}})
	var bad []string
	for i := range runs {
		id := startContainer(t, pod, ctrJSON, podJSON)
		if st := waitExit(t, id); st != "137 OOMKilled" {
			bad = append(bad, fmt.Sprintf("run %d: %s", i+1, st))
		}
		mustCrictl(t, "rm", id)
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d runs not reported as 137 OOMKilled: %s", len(bad), runs, strings.Join(bad, "; "))
	}
}

// TestHostNamespaces: the cocoon handler refuses a pod on the host's
// network or IPC namespace when it is created, with one line that says a VM
// cannot share it and what to do, and nothing of it is left; the handler
// whose configuration has runtime.host_namespaces = "guest" runs such pods
// on the VM's own (TestPod and the other host-network pods).
func TestHostNamespaces(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		// CRI's NamespaceOption: 0 POD, 2 NODE.
		ns   map[string]any
		want string
	}{
		{"host-net", map[string]any{"network": 2, "pid": 0}, "asks for the host's network namespace, which a VM cannot share: run this pod with runc"},
		{"host-ipc", map[string]any{"network": 0, "pid": 0, "ipc": 2}, "asks for the host's IPC namespace, which a VM cannot share: run this pod with runc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podJSON, err := containerdtest.NetworkPodConfig(dir, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			setPodNamespaces(t, podJSON, tc.ns)
			r := crictl(t, "runp", "--runtime", "cocoon", podJSON)
			if r.code == 0 {
				id := strings.TrimSpace(r.stdout)
				crictl(t, "stopp", id)
				crictl(t, "rmp", "-f", id)
				t.Fatalf("runp of a pod on a host namespace: %v, want a refusal", r)
			}
			if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "host_namespaces = ") {
				t.Errorf("runp: %v; want %q and the setting that allows it", r, tc.want)
			}
			if q := qemus(t); len(q) != 0 {
				t.Errorf("a refused pod left QEMU: %v", q)
			}
			if pods := mustCrictl(t, "pods", "-q", "--name", tc.name); pods != "" {
				t.Errorf("a refused pod is listed: %q", pods)
			}
			if left, _ := os.ReadDir(daemon.SandboxRoot(namespace)); len(left) != 0 {
				t.Errorf("a refused pod left sandboxes: %v", left)
			}
		})
	}
}

// setPodNamespaces replaces the namespace options of the pod configuration
// at path.
func setPodNamespaces(t *testing.T, path string, ns map[string]any) {
	t.Helper()
	setLinux(t, path, map[string]any{"security_context": map[string]any{"namespace_options": ns}})
}
