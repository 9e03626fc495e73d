package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox/sandboxtest"
)

// bundle writes a bundle with spec s and loads it.
func bundle(t *testing.T, s *specs.Spec) *oci.Bundle {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Version, s.Root = specs.Version, &specs.Root{Path: "rootfs"}
	if s.Linux == nil {
		// As `runc spec` writes it: a network and an IPC namespace of the
		// container's own, which a VM gives.
		s.Linux = &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}}}
	}
	if s.Process == nil {
		s.Process = &specs.Process{Args: []string{"true"}, Cwd: "/"}
	}
	data, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := oci.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPodLifecycle creates a CRI-O pod on fakes: the infra container boots
// the VM, an app joins it (its pod namespaces mapped to the infra's in the
// guest), both run through the container operations, and the last removal
// leaves the sandbox to be destroyed.
func TestPodLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	var mu sync.Mutex
	created := map[string]*specs.Spec{}
	var calls []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, s)
	}
	a := &clienttest.Agent{
		CreateContainerFunc: func(_ context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			var s specs.Spec
			if err := json.Unmarshal(r.SpecJson, &s); err != nil {
				return nil, err
			}
			mu.Lock()
			created[r.ContainerId] = &s
			mu.Unlock()
			return &api.CreateContainerResponse{Pid: int32(10 + len(created))}, nil
		},
		StartContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("start " + r.ContainerId)
			return &api.Empty{}, nil
		},
		SignalProcessFunc: func(_ context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
			record("signal " + r.ContainerId)
			return &api.Empty{}, nil
		},
		WaitProcessFunc: func(context.Context, *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			return &api.WaitProcessResponse{ExitStatus: 137, OomKilled: true}, nil
		},
		ListProcessesFunc: func(context.Context, *api.ContainerRequest) (*api.ListProcessesResponse, error) {
			return &api.ListProcessesResponse{Processes: []*api.ProcessInfo{{Pid: 1, Cmdline: "sleep"}}}, nil
		},
		StatsContainerFunc: func(context.Context, *api.ContainerRequest) (*api.StatsContainerResponse, error) {
			return &api.StatsContainerResponse{StatsJson: []byte(`{"pids":{"current":1}}`), OomKills: 1}, nil
		},
	}
	fakes := sandboxtest.New(t, a)
	m := fakes.Manager
	ctx := context.Background()

	crio := func(typ string) map[string]string {
		return map[string]string{CRIOContainerType: typ, CRIOSandboxID: "pod"}
	}
	infraB := bundle(t, &specs.Spec{Hostname: "pod-host", Annotations: crio("sandbox"), Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}},
	}})
	infraPod, err := PodOf("pod", infraB.Spec.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	infra, err := Create(ctx, m, CreateConfig{ID: "pod", Bundle: infraB, Pod: infraPod})
	if err != nil {
		t.Fatal(err)
	}
	defer infra.Sandbox().Close()
	if !infra.OwnsSandbox || infra.GuestPID != 11 || fakes.Started() != 1 {
		t.Fatalf("infra: booted %v, guest pid %d, %d VMs", infra.OwnsSandbox, infra.GuestPID, fakes.Started())
	}

	appB := bundle(t, &specs.Spec{Annotations: crio("container"), Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/777/ns/pid"}, {Type: specs.UTSNamespace, Path: "/var/run/utsns/pod"}},
	}})
	appPod, err := PodOf("app", appB.Spec.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	app, err := Create(ctx, m, CreateConfig{ID: "app", Bundle: appB, Pod: appPod, KnownNamespaces: GuestNamespacePaths(777, infra.GuestPID)})
	if err != nil {
		t.Fatal(err)
	}
	if app.OwnsSandbox || fakes.Started() != 1 || app.Sandbox().ID() != "pod" {
		t.Fatalf("app: booted %v, %d VMs, sandbox %s", app.OwnsSandbox, fakes.Started(), app.Sandbox().ID())
	}
	appNS := created["app"].Linux.Namespaces
	if len(appNS) != 1 || appNS[0].Type != specs.PIDNamespace || appNS[0].Path != "/proc/11/ns/pid" {
		t.Errorf("app's namespaces in the guest: %+v, want the infra's PID namespace only", appNS)
	}

	c := app
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(ctx, "", syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(ctx, "")
	if err != nil || exit.Status != 137 || !exit.OOMKilled || exit.At.IsZero() {
		t.Fatalf("wait: %+v, %v", exit, err)
	}
	if ps, err := c.Processes(ctx); err != nil || len(ps) != 1 || ps[0].Cmdline != "sleep" {
		t.Fatalf("processes: %+v, %v", ps, err)
	}
	if st, err := c.Stats(ctx); err != nil || !json.Valid(st.JSON) || st.OOMKills != 1 {
		t.Fatalf("stats: %+v, %v", st, err)
	}
	// The pod rule: a member's delete removes it, the last one's destroys
	// the sandbox.
	share := app.Sandbox().Share()
	if gone, err := c.Delete(ctx); err != nil || gone {
		t.Fatalf("deleting the app: sandbox gone %v, %v", gone, err)
	}
	if _, err := os.Stat(share.ContainerDir("app")); !os.IsNotExist(err) {
		t.Errorf("app's share directory left: %v", err)
	}
	if gone, err := infra.Delete(ctx); err != nil || !gone {
		t.Fatalf("deleting the infra container: sandbox gone %v, %v", gone, err)
	}
	if _, err := os.Stat(filepath.Dir(share.HostDir)); !os.IsNotExist(err) {
		t.Errorf("the sandbox's directory is left: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0] != "start app" || calls[1] != "signal app" {
		t.Errorf("agent calls %v", calls)
	}

	// The app of a pod whose sandbox is gone: containerd's CRI never
	// drops the sandbox container, so this is an error.
	lone := bundle(t, &specs.Spec{Annotations: map[string]string{CRIContainerType: "container", CRISandboxID: "gone"}})
	pod, _ := PodOf("lone", lone.Spec.Annotations)
	if _, err := Create(ctx, m, CreateConfig{ID: "lone", Bundle: lone, Pod: pod}); err == nil {
		t.Error("joined a sandbox that does not exist")
	}
}
