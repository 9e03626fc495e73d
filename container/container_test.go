package container

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/hypervisortest"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// fakeSandboxes returns a manager whose VMs are fakes and whose agent is
// a; it counts the VMs started.
func fakeSandboxes(t *testing.T, a *clienttest.Agent, started *int) *sandbox.Manager {
	t.Helper()
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	assets := t.TempDir()
	cfg.Hypervisor.Kernel = filepath.Join(assets, "vmlinux")
	cfg.Hypervisor.Initrd = filepath.Join(assets, "initrd.img")
	for _, f := range []string{cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var machines []*hypervisortest.Machine
	a.DestroySandboxFunc = func(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range machines {
			m.Exit()
		}
		return &api.DestroySandboxResponse{}, nil
	}
	d, _ := clienttest.NewDialer(t, a)
	log := logrus.New()
	log.SetOutput(io.Discard)
	return &sandbox.Manager{
		Root:        filepath.Join(t.TempDir(), "sandboxes"),
		Config:      cfg,
		Accelerator: hypervisor.KVM,
		Log:         logrus.NewEntry(log),
		AgentDialer: d,
		Hypervisor: &hypervisortest.Hypervisor{
			StartFunc: func(ctx context.Context, vc hypervisor.VMConfig) (hypervisor.VM, error) {
				vm, m := hypervisortest.NewVM(hypervisor.State{Hypervisor: "fake", PID: 4242, Dir: vc.Dir})
				mu.Lock()
				defer mu.Unlock()
				machines = append(machines, m)
				*started++
				return vm, nil
			},
			AttachFunc: func(_ context.Context, st hypervisor.State) (hypervisor.VM, error) {
				vm, m := hypervisortest.NewVM(st)
				mu.Lock()
				defer mu.Unlock()
				machines = append(machines, m)
				return vm, nil
			},
		},
	}
}

// bundle writes a bundle with spec s and loads it.
func bundle(t *testing.T, s *specs.Spec) *oci.Bundle {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Version, s.Root = specs.Version, &specs.Root{Path: "rootfs"}
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
	if os.Geteuid() != 0 {
		t.Skip("creating a container makes bind mounts: run as root")
	}
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
			return &api.StatsContainerResponse{StatsJson: []byte(`{"pids":{"current":1}}`)}, nil
		},
	}
	started := 0
	m := fakeSandboxes(t, a, &started)
	ctx := context.Background()

	crio := func(typ string) map[string]string {
		return map[string]string{CRIOContainerType: typ, CRIOSandboxID: "pod"}
	}
	infraB := bundle(t, &specs.Spec{Hostname: "pod-host", Annotations: crio("sandbox"), Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.UTSNamespace}},
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
	if !infra.Booted || infra.GuestPID != 11 || started != 1 {
		t.Fatalf("infra: booted %v, guest pid %d, %d VMs", infra.Booted, infra.GuestPID, started)
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
	if app.Booted || started != 1 || app.Sandbox().ID() != "pod" {
		t.Fatalf("app: booted %v, %d VMs, sandbox %s", app.Booted, started, app.Sandbox().ID())
	}
	appNS := created["app"].Linux.Namespaces
	if len(appNS) != 1 || appNS[0].Type != specs.PIDNamespace || appNS[0].Path != "/proc/11/ns/pid" {
		t.Errorf("app's namespaces in the guest: %+v, want the infra's PID namespace only", appNS)
	}

	c := app.Container
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
	if st, err := c.Stats(ctx); err != nil || !json.Valid(st) {
		t.Fatalf("stats: %s, %v", st, err)
	}
	if err := c.Remove(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(app.Sandbox().Share().ContainerDir("app")); !os.IsNotExist(err) {
		t.Errorf("app's share directory left: %v", err)
	}
	if err := infra.Remove(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := infra.Sandbox().Destroy(ctx); err != nil {
		t.Fatal(err)
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
