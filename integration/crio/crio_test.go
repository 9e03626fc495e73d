//go:build integration

package crio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// writeJSON writes v as JSON to dir/name and returns the path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// CRI's namespace modes (NamespaceMode).
const (
	modePod       = 0 // shared by the pod's containers
	modeContainer = 1 // each container's own
	modeNode      = 2 // the host's
)

// podConfig writes the configuration of a pod on the suite's CNI network
// whose containers have the PID namespace mode pid (the kubelet's default
// is modeContainer, modePod with shareProcessNamespace), under the suite's
// cgroup parent, and returns its path.
func podConfig(t *testing.T, dir, name string, pid int) string {
	t.Helper()
	return writeJSON(t, dir, name+"-pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(dir, "logs"),
		"linux": map[string]any{
			"cgroup_parent":    cgParent + "/" + name,
			"security_context": map[string]any{"namespace_options": map[string]any{"network": modePod, "pid": pid}},
		},
	})
}

// containerConfig writes the configuration of a busybox container running
// cmd with the PID namespace mode pid (its pod's); stdin gives it a stdin
// that closes when its first attach ends.
func containerConfig(t *testing.T, dir, name string, pid int, stdin bool, cmd ...string) string {
	t.Helper()
	return writeJSON(t, dir, name+".json", map[string]any{
		"metadata":   map[string]any{"name": name},
		"image":      map[string]any{"image": busybox},
		"command":    cmd,
		"log_path":   name + ".log",
		"stdin":      stdin,
		"stdin_once": stdin,
		"linux":      map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": pid}}},
	})
}

// runPod starts a pod with the handler and returns its ID; the pod is
// stopped and removed at the end of the test if it is still there.
func runPod(t *testing.T, handler, podJSON string) string {
	t.Helper()
	id := mustCrictl(t, "runp", "--runtime", handler, podJSON)
	t.Cleanup(func() {
		crictl(t, "stopp", id)
		crictl(t, "rmp", "-f", id)
	})
	return id
}

// startContainer creates and starts a container in pod podID.
func startContainer(t *testing.T, podID, ctrJSON, podJSON string) string {
	t.Helper()
	id := mustCrictl(t, "create", podID, ctrJSON, podJSON)
	mustCrictl(t, "start", id)
	return id
}

// oneRestoredVM checks that the pod runs in one VM (one QEMU, named after
// the pod), restored from one of the suite's templates.
func oneRestoredVM(t *testing.T, podID string) {
	t.Helper()
	q := qemus(podID)
	if len(q) != 1 {
		t.Fatalf("%d QEMU processes for a pod of two containers, want 1: %v", len(q), q)
	}
	pid, _, _ := strings.Cut(q[0], ":")
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatalf("QEMU process %q: %v", q[0], err)
	}
	if err := templates.Restored(n); err != nil {
		t.Error(err)
	}
}

// qemus lists the QEMU processes of the pod's VM (named after the pod).
func qemus(podID string) []string {
	var found []string
	for _, p := range testutil.ProcessesOf("-name " + container.SandboxIDFor(podID) + " ") {
		if strings.Contains(p, "qemu-system") {
			found = append(found, p)
		}
	}
	return found
}

// waitFor polls cond until it holds or the deadline.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, commandTimeout, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// state returns a container's state and exit code, as "CONTAINER_EXITED 0".
func state(t *testing.T, id string) string {
	t.Helper()
	return mustCrictl(t, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}}", id)
}

// podStatus is what crictl inspectp tells of a pod.
type podStatus struct {
	IP    string // from CNI
	NetNS string // the pinned network namespace
}

func inspectPod(t *testing.T, id string) podStatus {
	t.Helper()
	var p struct {
		Status struct{ Network struct{ IP string } }
		Info   struct {
			RuntimeSpec struct {
				Linux struct{ Namespaces []struct{ Type, Path string } }
			}
		}
	}
	out := mustCrictl(t, "inspectp", "-o", "json", id)
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("inspectp %s: %v", id, err)
	}
	st := podStatus{IP: p.Status.Network.IP}
	for _, ns := range p.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			st.NetNS = ns.Path
		}
	}
	_, subnet, _ := net.ParseCIDR(podNetwork.Subnet)
	if ip := net.ParseIP(st.IP); ip == nil || !subnet.Contains(ip) || !strings.HasPrefix(st.NetNS, nsDir()+"/") {
		t.Fatalf("pod %s: IP %q, network namespace %q; want an address of %s and a namespace pinned under %s", id, st.IP, st.NetNS, podNetwork.Subnet, nsDir())
	}
	return st
}

// httpGet fetches url from the host until it answers or the deadline.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var body string
	waitFor(t, "GET "+url+" from the host", func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("status %s, %v", resp.Status, err)
		}
		body = strings.TrimSpace(string(data))
		return true, ""
	})
	return body
}

// stats is what crictl stats tells of a container.
type stats struct {
	CPU    uint64 // usageCoreNanoSeconds
	Memory uint64 // workingSetBytes
}

func containerStats(t *testing.T, id string) stats {
	t.Helper()
	var s struct {
		Stats []struct {
			CPU struct {
				UsageCoreNanoSeconds struct{ Value string }
			}
			Memory struct {
				WorkingSetBytes struct{ Value string }
			}
		}
	}
	out := mustCrictl(t, "stats", "-o", "json", "--id", id)
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Stats) != 1 {
		t.Fatalf("crictl stats %s: %v: %s", id, err, out)
	}
	var st stats
	fmt.Sscan(s.Stats[0].CPU.UsageCoreNanoSeconds.Value, &st.CPU)
	fmt.Sscan(s.Stats[0].Memory.WorkingSetBytes.Value, &st.Memory)
	return st
}

// shimSocket is the socket of the cocoon-vm handler's shim for a pod:
// CRI-O starts shims in containerd's "default" namespace without an
// address, and the shim of a pod's containers is the pod's.
func shimSocket(t *testing.T, podID string) string {
	t.Helper()
	addr, err := shim.SocketAddress(namespaces.WithNamespace(context.Background(), "default"), "", podID, false)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(addr, "unix://")
}

// TestPod runs, with each handler, a pod of two containers in one VM: the
// guest's kernel, exec (sync and streaming), logs, stats, attach, the CNI
// network (from the host and between the containers), stop and remove;
// then nothing of the pod is left.
func TestPod(t *testing.T) {
	for _, handler := range []string{ociHandler, vmHandler} {
		t.Run(handler, func(t *testing.T) { testPod(t, handler) })
	}
}

func testPod(t *testing.T, handler string) {
	dir := t.TempDir()
	name := "pod-" + handler
	podJSON := podConfig(t, dir, name, modeContainer)
	start := time.Now()
	pod := runPod(t, handler, podJSON)
	web := startContainer(t, pod, containerConfig(t, dir, "web", modeContainer, false, "sh", "-c",
		"echo kernel $(uname -r); mkdir -p /www && echo hello-"+handler+" > /www/index.html && exec httpd -f -p 8080 -h /www"), podJSON)
	t.Logf("%s: runp + create + start: %v", handler, time.Since(start).Round(time.Millisecond))
	sleeper := startContainer(t, pod, containerConfig(t, dir, "sleeper", modeContainer, false, "sh", "-c", "echo sleeper up; exec sleep 1000"), podJSON)
	st := inspectPod(t, pod)

	oneRestoredVM(t, pod)
	if guestRel == hostRel {
		t.Fatalf("guest kernel release %q is the host's", guestRel)
	}

	t.Run("logs", func(t *testing.T) {
		waitFor(t, "the web container's log", func() (bool, string) {
			r := crictl(t, "logs", web)
			return strings.Contains(r.Stdout, "kernel "+guestRel), r.String()
		})
		waitFor(t, "the sleeper's log", func() (bool, string) {
			r := crictl(t, "logs", sleeper)
			return strings.Contains(r.Stdout, "sleeper up"), r.String()
		})
	})

	t.Run("exec", func(t *testing.T) {
		// exec -s: ExecSync (conmon --exec for the cocoon handler).
		if got := mustCrictl(t, "exec", "-s", sleeper, "uname", "-r"); got != guestRel {
			t.Errorf("exec -s uname -r: %q, want the guest's %q (host %q)", got, guestRel, hostRel)
		}
		r := crictl(t, "exec", "-s", sleeper, "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.Code == 0 || !strings.Contains(r.Stderr, "exited with 3: err") {
			t.Errorf("exec -s with exit 3: %v", r)
		}
		// Streaming exec through CRI-O's stream server.
		r = crictlIn(t, "from stdin\n", "exec", "-i", web, "sh", "-c", "read l; echo got: $l; uname -r")
		if r.Code != 0 || r.Stdout != "got: from stdin\n"+guestRel+"\n" {
			t.Errorf("streaming exec: %v", r)
		}
		r = crictl(t, "exec", web, "sh", "-c", "exit 5")
		if r.Code == 0 || !strings.Contains(r.Stderr, "command terminated with exit code 5") {
			t.Errorf("streaming exec with exit 5: %v", r)
		}
	})

	t.Run("network", func(t *testing.T) {
		if body := httpGet(t, "http://"+net.JoinHostPort(st.IP, "8080")+"/"); body != "hello-"+handler {
			t.Errorf("GET from the host: %q, want hello-%s", body, handler)
		}
		// The pod's containers share the VM's network: the sleeper reaches
		// the web container on the loopback.
		if got := mustCrictl(t, "exec", "-s", sleeper, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"); got != "hello-"+handler {
			t.Errorf("wget in the pod: %q", got)
		}
		if got := mustCrictl(t, "exec", "-s", sleeper, "ip", "-4", "-o", "addr", "show", "scope", "global"); !strings.Contains(got, " "+st.IP+"/") {
			t.Errorf("the guest's addresses lack the pod's %s: %s", st.IP, got)
		}
	})

	if handler == ociHandler {
		// CRI-O's "vm" runtime type does not forward ports (its
		// PortForwardContainer does nothing).
		t.Run("port-forward", func(t *testing.T) { testPortForward(t, pod, handler) })
	}

	t.Run("stats", func(t *testing.T) {
		s := containerStats(t, web)
		t.Logf("%s: stats of the web container: CPU %v, memory working set %d KiB", handler, time.Duration(s.CPU), s.Memory>>10)
		if s.CPU == 0 || s.Memory == 0 {
			t.Errorf("stats of %s: %+v, want CPU time and memory in use", web[:12], s)
		}
	})

	t.Run("attach", func(t *testing.T) {
		ctr := startContainer(t, pod, containerConfig(t, dir, "reader", modeContainer, true, "sh", "-c", "read l; echo got-$l"), podJSON)
		r := crictlIn(t, "hello\n", "attach", "-i", ctr)
		if !strings.Contains(r.Stdout, "got-hello") {
			t.Errorf("attach: %v", r)
		}
		waitFor(t, "the attached container's exit", func() (bool, string) {
			s := state(t, ctr)
			return s == "CONTAINER_EXITED 0", s
		})
		if r := crictl(t, "logs", ctr); !strings.Contains(r.Stdout, "got-hello") {
			t.Errorf("log of the attached container: %v", r)
		}
		mustCrictl(t, "rm", ctr)
	})

	// Stop and remove, then check that nothing of the pod is left.
	mustCrictl(t, "stop", web, sleeper)
	for _, id := range []string{web, sleeper} {
		if s := state(t, id); !strings.HasPrefix(s, "CONTAINER_EXITED ") {
			t.Errorf("%s after stop: %s", id[:12], s)
		}
	}
	if q := qemus(pod); len(q) != 1 {
		t.Errorf("the VM went with the pod's containers before the pod: %v", q)
	}
	mustCrictl(t, "rm", web, sleeper)
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	if out := mustCrictl(t, "ps", "-a", "-q", "--pod", pod); out != "" {
		t.Errorf("containers left in the pod: %s", out)
	}
	waitFor(t, "the pod's processes to go", func() (bool, string) {
		left := append(qemus(pod), testutil.ProcessesOf(pod)...)
		return len(left) == 0, strings.Join(left, "; ")
	})
	var left []string
	if _, err := os.Stat(st.NetNS); err == nil {
		left = append(left, "network namespace "+st.NetNS)
	}
	left = append(left, podNetwork.Leftovers(cniDirs().State)...)
	switch handler {
	case ociHandler:
		if entries, _ := os.ReadDir(ociRoot()); len(entries) > 0 {
			left = append(left, fmt.Sprintf("%d entries in %s", len(entries), ociRoot()))
		}
		if _, err := os.Stat(crio.SandboxDir(pod)); err == nil {
			left = append(left, "the VM's state")
		}
	case vmHandler:
		// The shim keeps the VM beside the pod's bundles.
		vm := crio.VMSandboxDir(pod)
		if _, err := os.Stat(vm); err == nil {
			left = append(left, "the VM's state "+vm)
		}
		if _, err := os.Stat(shimSocket(t, pod)); err == nil {
			left = append(left, "the shim's socket "+shimSocket(t, pod))
		}
		// CRI-O keeps the directory, and a directory of FIFOs in it
		// per container and exec while they last.
		entries, _ := os.ReadDir(filepath.Join(vmRoot(), "crio", "fifo", "io"))
		for _, e := range entries {
			left = append(left, "FIFOs "+e.Name())
		}
	}
	if len(left) > 0 {
		t.Errorf("left of the pod: %s", strings.Join(left, "; "))
	}
}

// testPortForward forwards a local port to the pod's port 8080 with
// crictl port-forward (CRI-O dials localhost:8080 in the pod's network
// namespace, where cocoon's forwarder carries it into the guest) and
// fetches the web container's page through it.
func testPortForward(t *testing.T, pod, handler string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := crictlCommand(ctx, "port-forward", pod, fmt.Sprintf("%d:8080", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); body != "hello-"+handler {
		t.Errorf("GET through port-forward: %q, want hello-%s", body, handler)
	}
}

// TestHandlerFeatures: CRI-O asks both handlers' binaries for their OCI
// features (`features`, as it asks runc) and tells the kubelet what they
// support: recursive read-only mounts, no user namespaces.
func TestHandlerFeatures(t *testing.T) {
	var info struct {
		RuntimeHandlers []struct {
			Name     string
			Features map[string]bool
		} `json:"runtimeHandlers"`
	}
	out := mustCrictl(t, "info", "-o", "json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl info: %v: %s", err, out)
	}
	found := map[string]bool{}
	for _, h := range info.RuntimeHandlers {
		if h.Name != ociHandler && h.Name != vmHandler {
			continue
		}
		found[h.Name] = true
		if !h.Features["recursive_read_only_mounts"] || h.Features["user_namespaces"] {
			t.Errorf("handler %s: features %+v, want recursive read-only mounts and no user namespaces", h.Name, h.Features)
		}
	}
	if !found[ociHandler] || !found[vmHandler] {
		t.Errorf("crictl info lacks a handler: %s", out)
	}
}

// TestHostNetwork: both handlers refuse a pod on the host's network (a VM
// cannot share it) with cocoon's message, when CRI-O first runs a container
// of the pod (the cocoon-vm handler's infra container; the cocoon handler's
// first container, since CRI-O drops the infra container of a pod without
// a shared PID namespace), and nothing of it is left.
func TestHostNetwork(t *testing.T) {
	const want = "asks for the host's network namespace, which a VM cannot share"
	for _, handler := range []string{ociHandler, vmHandler} {
		t.Run(handler, func(t *testing.T) {
			dir := t.TempDir()
			name := "hostnet-" + handler
			podJSON := writeJSON(t, dir, name+"-pod.json", map[string]any{
				"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 0},
				"log_directory": filepath.Join(dir, "logs"),
				"linux": map[string]any{
					"cgroup_parent":    cgParent + "/" + name,
					"security_context": map[string]any{"namespace_options": map[string]any{"network": modeNode, "pid": modeContainer}},
				},
			})
			r := crictl(t, "runp", "--runtime", handler, podJSON)
			pod := strings.TrimSpace(r.Stdout)
			if r.Code == 0 {
				t.Cleanup(func() {
					crictl(t, "stopp", pod)
					crictl(t, "rmp", "-f", pod)
				})
				r = crictl(t, "create", pod, containerConfig(t, dir, "c", modeContainer, false, "true"), podJSON)
			}
			if r.Code == 0 || !strings.Contains(r.Stderr, want) {
				t.Fatalf("a host-network pod: %v, want a refusal: %q", r, want)
			}
			if pod != "" {
				if q := qemus(pod); len(q) != 0 {
					t.Errorf("a refused pod left QEMU: %v", q)
				}
			}
		})
	}
}

// TestSharedPIDNamespace: with each handler, a pod whose containers share
// one PID namespace (CRI-O keeps its infra container, which boots the
// VM): two containers in one VM, each seeing the other's processes.
func TestSharedPIDNamespace(t *testing.T) {
	for _, handler := range []string{ociHandler, vmHandler} {
		t.Run(handler, func(t *testing.T) {
			dir := t.TempDir()
			name := "sharedpid-" + handler
			podJSON := podConfig(t, dir, name, modePod)
			pod := runPod(t, handler, podJSON)
			c1 := startContainer(t, pod, containerConfig(t, dir, "c1", modePod, false, "sleep", "1001"), podJSON)
			c2 := startContainer(t, pod, containerConfig(t, dir, "c2", modePod, false, "sleep", "1002"), podJSON)
			oneRestoredVM(t, pod)
			for _, tc := range []struct{ in, sees string }{{c1, "sleep 1002"}, {c2, "sleep 1001"}} {
				if ps := mustCrictl(t, "exec", "-s", tc.in, "ps", "-o", "args"); !strings.Contains(ps, tc.sees) {
					t.Errorf("ps in %s lacks %q: %s", tc.in[:12], tc.sees, ps)
				}
			}
			mustCrictl(t, "stopp", pod)
			mustCrictl(t, "rmp", pod)
			waitFor(t, "the pod's processes to go", func() (bool, string) {
				left := append(qemus(pod), testutil.ProcessesOf(pod)...)
				return len(left) == 0, strings.Join(left, "; ")
			})
		})
	}
}

// TestOOMKilled: a container that the guest's OOM killer ends (a 64 MiB
// buffer under a 32 MiB limit) is reported exited 137, OOMKilled, by
// CRI-O: under conmon (the cocoon handler) through the relay's mirror of
// the kill in the host cgroup that conmon watches, under the shim through
// the oom file it writes into the bundle (CRI-O's "vm" runtime type reads
// no OOM event).
func TestOOMKilled(t *testing.T) {
	for _, handler := range []string{ociHandler, vmHandler} {
		t.Run(handler, func(t *testing.T) {
			dir := t.TempDir()
			name := "oom-" + handler
			podJSON := podConfig(t, dir, name, modeContainer)
			pod := runPod(t, handler, podJSON)
			for i := range 3 {
				ctrJSON := writeJSON(t, dir, fmt.Sprintf("dd%d.json", i), map[string]any{
					"metadata": map[string]any{"name": fmt.Sprintf("dd%d", i)},
					"image":    map[string]any{"image": busybox},
					"command":  []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"},
					"log_path": fmt.Sprintf("dd%d.log", i),
					"linux": map[string]any{
						"resources":        map[string]any{"memory_limit_in_bytes": 32 << 20},
						"security_context": map[string]any{"namespace_options": map[string]any{"pid": modeContainer}},
					},
				})
				ctr := startContainer(t, pod, ctrJSON, podJSON)
				waitFor(t, "the container to exit", func() (bool, string) {
					s := state(t, ctr)
					return strings.HasPrefix(s, "CONTAINER_EXITED"), s
				})
				got := mustCrictl(t, "inspect", "-o", "go-template", "--template", "{{.status.exitCode}} {{.status.reason}}", ctr)
				if got != "137 OOMKilled" {
					t.Fatalf("run %d: %q, want 137 OOMKilled", i, got)
				}
			}
		})
	}
}

// TestPodSize: the pod's resources (what the kubelet sums from its
// containers' limits into the sandbox's linux.resources) size its VM
// through CRI-O's pod-resources annotation on the infra container, as
// containerd's sandbox annotations do: 2 CPUs of quota make 2 vCPUs, a
// 1 GiB limit makes the guest 1 GiB plus its own base. Under conmon the
// pod shares its PID namespace: CRI-O drops the infra container of other
// pods (drop_infra_ctr), whose first container then sizes the VM with its
// own limits (README).
func TestPodSize(t *testing.T) {
	for handler, pid := range map[string]int{ociHandler: modePod, vmHandler: modeContainer} {
		t.Run(handler, func(t *testing.T) {
			dir := t.TempDir()
			name := "size-" + handler
			podJSON := podConfig(t, dir, name, pid)
			var pod map[string]any
			data, err := os.ReadFile(podJSON)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &pod); err != nil {
				t.Fatal(err)
			}
			pod["linux"].(map[string]any)["resources"] = map[string]any{
				"cpu_period": 100000, "cpu_quota": 200000, "memory_limit_in_bytes": 1 << 30,
			}
			podJSON = writeJSON(t, dir, name+"-pod.json", pod)
			id := runPod(t, handler, podJSON)
			ctr := startContainer(t, id, containerConfig(t, dir, "c", pid, false, "sleep", "1000"), podJSON)
			q := qemus(id)
			if len(q) != 1 {
				t.Fatalf("%d QEMU processes for the pod, want 1: %v", len(q), q)
			}
			wantMiB := 1024 + container.GuestBaseMiB
			if !strings.Contains(q[0], " -smp 2 ") || !strings.Contains(q[0], fmt.Sprintf(" -m %d ", wantMiB)) {
				t.Errorf("QEMU is not sized -smp 2 -m %d: %s", wantMiB, q[0])
			}
			if n := strings.TrimSpace(mustCrictl(t, "exec", "-s", ctr, "nproc")); n != "2" {
				t.Errorf("nproc in the guest: %q, want 2", n)
			}
			// sleep, its PID namespace's init under the shim, ignores
			// TERM: the pod's stop would wait out its timeout.
			mustCrictl(t, "stop", "-t", "0", ctr)
		})
	}
}
