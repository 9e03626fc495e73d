package container

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/sandbox"
	"github.com/cocoon-containers/cocoon/sandbox/sandboxtest"
)

// The tests of this file drive the Runtime (cocoon-runtime's container
// layer) as its commands do, on fake sandboxes (sandboxtest) whose agent
// lives in this process, with this test binary as the relay (fakeRelay).

// fakeRuntime returns a runtime over root whose sandboxes are fakes'.
// Several may share a root and fakes, as several commands share a host.
func fakeRuntime(t *testing.T, root string, fakes *sandboxtest.Fakes) *Runtime {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m := fakes.Manager
	rt := NewRuntime(root, m.Config, RelayOptions{Path: exe}, m.Log)
	rt.managers[rt.SandboxRoot()] = m
	rt.managers[m.Root] = m
	return rt
}

// criAnnotations put a container in containerd CRI's pod.
func criAnnotations(typ, pod string) map[string]string {
	return map[string]string{CRIContainerType: typ, CRISandboxID: pod}
}

// create creates container id from spec through rt, as cocoon-runtime
// create does, and closes it.
func create(t *testing.T, rt *Runtime, id string, spec *specs.Spec) error {
	t.Helper()
	b := bundle(t, spec)
	h, err := rt.Create(context.Background(), CreateOptions{ID: id, Bundle: b.Dir, Detach: true})
	if err != nil {
		return err
	}
	h.Close()
	return nil
}

// open opens container id through rt, failing the test if it cannot.
func open(t *testing.T, rt *Runtime, id string) *Handle {
	t.Helper()
	h, err := rt.Open(context.Background(), id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	return h
}

// TestRuntimeLifecycle: create, start, pause, resume, exec, signal, stats,
// processes and delete through the Runtime, with the status rules of runc
// in between; the delete leaves no record, relay or sandbox.
func TestRuntimeLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	var mu sync.Mutex
	var calls []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, s)
	}
	a := &clienttest.Agent{
		CreateContainerFunc: func(_ context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			record("create " + r.ContainerId)
			return &api.CreateContainerResponse{Pid: 7}, nil
		},
		StartContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("start " + r.ContainerId)
			return &api.Empty{}, nil
		},
		PauseContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("pause " + r.ContainerId)
			return &api.Empty{}, nil
		},
		ResumeContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("resume " + r.ContainerId)
			return &api.Empty{}, nil
		},
		ExecProcessFunc: func(_ context.Context, r *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
			record("exec " + r.ContainerId)
			return &api.ExecProcessResponse{}, nil
		},
		SignalProcessFunc: func(_ context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
			record(fmt.Sprintf("signal %s %d", r.ContainerId, r.Signal))
			return &api.Empty{}, nil
		},
		ListProcessesFunc: func(context.Context, *api.ContainerRequest) (*api.ListProcessesResponse, error) {
			return &api.ListProcessesResponse{Processes: []*api.ProcessInfo{{Pid: 1, Cmdline: "sleep 60"}}}, nil
		},
		StatsContainerFunc: func(context.Context, *api.ContainerRequest) (*api.StatsContainerResponse, error) {
			return &api.StatsContainerResponse{StatsJson: []byte(`{"pids":{"current":1}}`)}, nil
		},
	}
	fakes := sandboxtest.New(t, a)
	rt := fakeRuntime(t, t.TempDir(), fakes)
	ctx := context.Background()

	pidFile := filepath.Join(t.TempDir(), "pid")
	b := bundle(t, &specs.Spec{Process: &specs.Process{Args: []string{"sleep", "60"}, Cwd: "/"}})
	h, err := rt.Create(ctx, CreateOptions{ID: "c1", Bundle: b.Dir, PidFile: pidFile, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	relayPID := h.Record().Pid
	h.Close()
	if pid, _ := os.ReadFile(pidFile); string(pid) != fmt.Sprint(relayPID) || relayPID <= 0 {
		t.Errorf("pid file %q, want the relay's %d", pid, relayPID)
	}
	rec, err := rt.Load("c1")
	if err != nil || rec.CurrentStatus() != Created || !rec.OwnsSandbox || rec.GuestPID != 7 {
		t.Fatalf("after create: %+v, %v", rec, err)
	}
	if err := create(t, rt, "c1", &specs.Spec{}); !errors.Is(err, ErrExists) {
		t.Errorf("a second create of c1: %v, want ErrExists", err)
	}

	steps := []struct {
		name string
		do   func(*Handle) error
		want string // error text, empty for success
		then Status
	}{
		{"resume created", func(h *Handle) error { return h.Resume(ctx) }, "container not paused", Created},
		{"delete created", nil, "", Created}, // checked below: allowed, not done
		{"start", func(h *Handle) error { return h.Start(ctx) }, "", Running},
		{"start again", func(h *Handle) error { return h.Start(ctx) }, "cannot start an already running container", Running},
		{"delete running", func(h *Handle) error { return h.Delete(ctx, false) }, "cannot delete container c1 that is not stopped: running", Running},
		{"pause", func(h *Handle) error { return h.Pause(ctx) }, "", Paused},
		{"pause again", func(h *Handle) error { return h.Pause(ctx) }, "container not running", Paused},
		{"exec paused", func(h *Handle) error {
			_, err := h.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, ExecOptions{Detach: true})
			return err
		}, "cannot exec in a paused container", Paused},
		{"resume", func(h *Handle) error { return h.Resume(ctx) }, "", Running},
		{"signal", func(h *Handle) error { return h.Signal(ctx, unix.SIGUSR1, false) }, "", Running},
		{"exec", func(h *Handle) error {
			rp, err := h.Exec(ctx, &specs.Process{Args: []string{"true"}, Cwd: "/"}, ExecOptions{Detach: true})
			if err == nil {
				rp.Kill()
			}
			return err
		}, "", Running},
		{"stats", func(h *Handle) error { _, err := h.Stats(ctx); return err }, "", Running},
		{"processes", func(h *Handle) error {
			ps, err := h.Processes(ctx)
			if err == nil && (len(ps) != 1 || ps[0].Cmdline != "sleep 60") {
				err = fmt.Errorf("processes %+v", ps)
			}
			return err
		}, "", Running},
	}
	for _, s := range steps {
		if s.do == nil {
			continue
		}
		h := open(t, rt, "c1")
		err := s.do(h)
		h.Close()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != s.want {
			t.Errorf("%s: %q, want %q", s.name, got, s.want)
		}
		if s.want != "" && !errors.Is(err, ErrFailedPrecondition) {
			t.Errorf("%s: %v is not ErrFailedPrecondition", s.name, err)
		}
		if rec, _ := rt.Load("c1"); rec.CurrentStatus() != s.then {
			t.Errorf("after %s: status %s, want %s", s.name, rec.CurrentStatus(), s.then)
		}
	}

	h = open(t, rt, "c1")
	sbDir := h.c.Sandbox().Dir()
	if err := h.Delete(ctx, true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := rt.Load("c1"); !errors.Is(err, ErrNotExist) {
		t.Errorf("record after delete: %v", err)
	}
	if _, err := os.Stat(sbDir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory after delete: %v", err)
	}
	if RelayAlive(relayPID, 0) {
		t.Errorf("relay %d still runs", relayPID)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"create c1", "start c1", "pause c1", "resume c1", "signal c1 10", "exec c1"}
	if strings.Join(calls, ", ") != strings.Join(want, ", ") {
		t.Errorf("agent calls %v, want %v", calls, want)
	}
}

// TestRuntimePodDelete: the pod rule of one home, through the Runtime. The
// sandbox container's delete leaves the VM to the member still in it; the
// last container's delete destroys it.
func TestRuntimePodDelete(t *testing.T) {
	testutil.RequireRoot(t)
	fakes := sandboxtest.New(t, &clienttest.Agent{})
	rt := fakeRuntime(t, t.TempDir(), fakes)
	ctx := context.Background()
	if err := create(t, rt, "pod", &specs.Spec{Annotations: criAnnotations(ContainerTypeSandbox, "pod")}); err != nil {
		t.Fatal(err)
	}
	if err := create(t, rt, "app", &specs.Spec{Annotations: criAnnotations(ContainerTypeContainer, "pod")}); err != nil {
		t.Fatal(err)
	}
	h := open(t, rt, "pod")
	sb := h.c.Sandbox()
	machine := fakes.Machine(sb.Dir())
	if err := h.Delete(ctx, true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if machine.Status() != hypervisor.Running {
		t.Fatalf("the sandbox container's delete stopped the VM that app still uses: %s", machine.Status())
	}
	if ids, err := sb.Containers(); err != nil || len(ids) != 1 || ids[0] != "app" {
		t.Errorf("the sandbox holds %v (%v), want app alone", ids, err)
	}
	h = open(t, rt, "app")
	if err := h.ready(ctx); err != nil {
		t.Fatalf("app lost its sandbox: %v", err)
	}
	if err := h.Delete(ctx, true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if machine.Status() != hypervisor.Stopped {
		t.Errorf("the last delete left the VM %s", machine.Status())
	}
	if _, err := os.Stat(sb.Dir()); !os.IsNotExist(err) {
		t.Errorf("the sandbox's directory is left: %v", err)
	}
}

// TestRuntimeDeleteListError: a delete that cannot tell whether other
// containers use the sandbox fails, and leaves the VM and the record, rather
// than destroy a VM on a guess.
func TestRuntimeDeleteListError(t *testing.T) {
	testutil.RequireRoot(t)
	fakes := sandboxtest.New(t, &clienttest.Agent{})
	rt := fakeRuntime(t, t.TempDir(), fakes)
	ctx := context.Background()
	if err := create(t, rt, "c1", &specs.Spec{}); err != nil {
		t.Fatal(err)
	}
	h := open(t, rt, "c1")
	defer h.Close()
	sb := h.c.Sandbox()
	// The share can no longer be listed: its directory is a file (its
	// mount is in the VMM's namespace, not this one's).
	share := sb.SharedDir()
	hidden := share + ".hidden"
	if err := os.Rename(share, hidden); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(share, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := h.Delete(ctx, true)
	if err == nil || !strings.Contains(err.Error(), "listing the containers of sandbox") {
		t.Fatalf("delete with an unreadable share: %v, want a failure to list", err)
	}
	if st := fakes.Machine(sb.Dir()).Status(); st != hypervisor.Running {
		t.Errorf("the failed delete left the VM %s", st)
	}
	if _, err := rt.Load("c1"); err != nil {
		t.Errorf("the failed delete removed the record: %v", err)
	}
	// Repaired, the delete goes through.
	if err := os.Remove(share); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hidden, share); err != nil {
		t.Fatal(err)
	}
	if err := h.Delete(ctx, true); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeUnresponsive: a sandbox whose VMM stopped answering fails
// every command at once with what to do, but for SIGKILL, which kills its
// VM; the delete then removes it all.
func TestRuntimeUnresponsive(t *testing.T) {
	testutil.RequireRoot(t)
	fakes := sandboxtest.New(t, &clienttest.Agent{})
	rt := fakeRuntime(t, t.TempDir(), fakes)
	ctx := context.Background()
	if err := create(t, rt, "c1", &specs.Spec{}); err != nil {
		t.Fatal(err)
	}
	h := open(t, rt, "c1")
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	sbDir := h.c.Sandbox().Dir()
	h.Close()
	machine := fakes.Machine(sbDir)
	machine.Freeze()

	h = open(t, rt, "c1")
	err := h.Signal(ctx, unix.SIGTERM, false)
	if !errors.Is(err, sandbox.ErrUnresponsive) || !strings.Contains(err.Error(), "delete --force c1 removes it") {
		t.Errorf("SIGTERM to an unresponsive sandbox: %v", err)
	}
	if err := h.Pause(ctx); !errors.Is(err, sandbox.ErrUnresponsive) {
		t.Errorf("pause of an unresponsive sandbox: %v", err)
	}
	if machine.Status() != hypervisor.Frozen {
		t.Fatalf("the VM is %s before the SIGKILL", machine.Status())
	}
	if err := h.Signal(ctx, unix.SIGKILL, false); err != nil {
		t.Fatalf("SIGKILL to an unresponsive sandbox: %v", err)
	}
	if machine.Status() != hypervisor.Stopped {
		t.Errorf("SIGKILL left the VM %s", machine.Status())
	}
	h.Close()
	h = open(t, rt, "c1")
	if err := h.Delete(ctx, true); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if _, err := os.Stat(sbDir); !os.IsNotExist(err) {
		t.Errorf("the sandbox's directory is left: %v", err)
	}
	if _, err := rt.Load("c1"); !errors.Is(err, ErrNotExist) {
		t.Errorf("record after delete: %v", err)
	}
}

// TestRuntimeConcurrentMembers creates and deletes members of a pod
// concurrently, each as a command of its own, while the pod's sandbox
// container is deleted at a random moment (run it with -race), for several
// pods in turn. No member ever loses its VM: one whose create succeeded
// finds its sandbox healthy until its own delete. A member that comes after
// the pod's end is refused at create, as one of a pod that does not exist.
// The last delete of each pod destroys its only VM.
func TestRuntimeConcurrentMembers(t *testing.T) {
	testutil.RequireRoot(t)
	a := &clienttest.Agent{
		CreateContainerFunc: func(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			time.Sleep(time.Millisecond) // widens the window of a join
			return &api.CreateContainerResponse{Pid: 2}, nil
		},
	}
	fakes := sandboxtest.New(t, a)
	root := t.TempDir()
	const pods, members, rounds = 4, 12, 1
	var joined, refused atomic.Int32
	for p := range pods {
		pod := fmt.Sprintf("pod%d", p)
		errs := racePod(t, fakes, root, pod, members, rounds, &joined, &refused)
		for _, err := range errs {
			t.Errorf("%s: %v", pod, err)
		}
		if n := fakes.Started(); n != p+1 {
			t.Errorf("%s: %d VMs started in all, want one a pod", pod, n)
		}
		if entries, _ := os.ReadDir(fakes.Manager.Root); len(entries) != 0 {
			t.Errorf("%s: left in the sandbox root: %v", pod, entries)
		}
	}
	t.Logf("%d members joined a pod, %d came after its end", joined.Load(), refused.Load())
	if joined.Load() < pods {
		t.Error("members hardly joined their pods")
	}
	if recs, _ := fakeRuntime(t, root, fakes).List(); len(recs) != 0 {
		t.Errorf("records left: %d", len(recs))
	}
}

// racePod runs one pod of TestRuntimeConcurrentMembers and returns what
// went wrong.
func racePod(t *testing.T, fakes *sandboxtest.Fakes, root, pod string, members, rounds int, joined, refused *atomic.Int32) []error {
	ctx := context.Background()
	if err := create(t, fakeRuntime(t, root, fakes), pod, &specs.Spec{Annotations: criAnnotations(ContainerTypeSandbox, pod)}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	var wg sync.WaitGroup
	for i := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				time.Sleep(time.Duration(rand.IntN(80)) * time.Millisecond)
				id := fmt.Sprintf("%s-m%d-%d", pod, i, r)
				rt := fakeRuntime(t, root, fakes)
				err := create(t, rt, id, &specs.Spec{Annotations: criAnnotations(ContainerTypeContainer, pod)})
				if err != nil {
					if !errors.Is(err, sandbox.ErrNotFound) {
						fail(fmt.Errorf("create %s: %w", id, err))
					}
					refused.Add(1)
					continue
				}
				joined.Add(1)
				h, err := rt.Open(ctx, id)
				if err != nil {
					fail(err)
					continue
				}
				time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
				if err := h.ready(ctx); err != nil {
					fail(fmt.Errorf("member %s lost its VM: %w", id, err))
				}
				if err := h.Delete(ctx, true); err != nil {
					fail(fmt.Errorf("delete %s: %w", id, err))
				}
				h.Close()
			}
		}()
	}
	// The sandbox container goes while members come and go.
	time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
	h := open(t, fakeRuntime(t, root, fakes), pod)
	if err := h.Delete(ctx, true); err != nil {
		fail(fmt.Errorf("delete %s: %w", pod, err))
	}
	h.Close()
	wg.Wait()
	return errs
}

// TestRuntimeHostNamespaces: a container that asks for the host's network
// or IPC namespace is refused with one line, nothing started and nothing
// left, unless runtime.host_namespaces gives it the VM's own.
func TestRuntimeHostNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	fakes := sandboxtest.New(t, &clienttest.Agent{})
	root := t.TempDir()
	rt := fakeRuntime(t, root, fakes)
	hostNet := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.IPCNamespace}}}}
	hostIPC := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}}}}
	for _, tc := range []struct {
		id   string
		spec *specs.Spec
		want string
	}{
		{"hostnet", hostNet, "container hostnet asks for the host's network namespace, which a VM cannot share: run this pod with runc"},
		{"hostipc", hostIPC, "container hostipc asks for the host's network and IPC namespaces, which a VM cannot share"},
	} {
		err := create(t, rt, tc.id, tc.spec)
		var hn *HostNamespaceError
		if !errors.As(err, &hn) || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("create %s: %v; want one line with %q", tc.id, err, tc.want)
		}
		if _, err := rt.Load(tc.id); err == nil {
			t.Errorf("the refused %s has a record", tc.id)
		}
	}
	if n := fakes.Started(); n != 0 {
		t.Errorf("%d VMs started for refused containers", n)
	}
	if left, _ := os.ReadDir(fakes.Manager.Root); len(left) != 0 {
		t.Errorf("refused containers left %v in the sandbox root", left)
	}

	// Allowed, the host's network namespace named by path (as Docker's
	// --network=host has it) is not mirrored into the VM: the guest's own
	// network has loopback only.
	fakes.Manager.Config.Runtime.HostNamespaces = config.HostGuest
	if err := create(t, rt, "allowed", hostIPC); err != nil {
		t.Fatalf("with host_namespaces = guest: %v", err)
	}
	if n := fakes.Started(); n != 1 {
		t.Errorf("%d VMs started for the allowed container, want 1", n)
	}
	h := open(t, rt, "allowed")
	defer h.Close()
	if n := h.c.Sandbox().State().Network; n != nil {
		t.Errorf("the VM took over the interfaces of %+v, want none", n)
	}
	if err := h.Delete(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}
