package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/hypervisortest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
	"github.com/cocoon-containers/cocoon/sandbox/sandboxtest"
)

// fixture is a Manager whose VMs are fakes and whose agent is a clienttest
// fake speaking the real protocol.
type fixture struct {
	m         *sandbox.Manager
	agent     *clienttest.Agent
	stopAgent func()

	mu      sync.Mutex
	machine *hypervisortest.Machine
	vm      *hypervisortest.VM
	// namespaces are the share namespaces the fake VMMs entered
	// ("mnt:[inode]").
	namespaces []string
}

func newFixture(t *testing.T, a *clienttest.Agent) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandbox tests make bind mounts: run them as root")
	}
	cfg := sandboxtest.Config(t)
	f := &fixture{agent: a}
	if a.DestroySandboxFunc == nil {
		a.DestroySandboxFunc = func(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.machine != nil {
				f.machine.Exit()
			}
			return &api.DestroySandboxResponse{}, nil
		}
	}
	d, stop := clienttest.NewDialer(t, a)
	f.stopAgent = stop
	log := logrus.New()
	log.SetOutput(io.Discard)
	f.m = &sandbox.Manager{
		Root:        filepath.Join(t.TempDir(), "sandboxes"),
		Config:      cfg,
		Accelerator: hypervisor.KVM,
		Log:         logrus.NewEntry(log),
		AgentDialer: d,
		Hypervisor: &hypervisortest.Hypervisor{
			StartFunc: func(ctx context.Context, vc hypervisor.VMConfig) (hypervisor.VM, error) {
				exited := make(chan struct{})
				pid, ns := sandboxtest.VMMProcess(t, vc.MountNamespace, exited)
				vm, machine := hypervisortest.NewVM(hypervisor.State{Hypervisor: "fake", PID: pid, Dir: vc.Dir})
				go func() { <-machine.Exited(); close(exited) }()
				f.mu.Lock()
				defer f.mu.Unlock()
				f.vm, f.machine = vm, machine
				f.namespaces = append(f.namespaces, ns)
				return vm, nil
			},
			AttachFunc: func(ctx context.Context, st hypervisor.State) (hypervisor.VM, error) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if f.machine == nil || f.machine.Status() == hypervisor.Stopped {
					return nil, hypervisor.ErrNotRunning
				}
				return f.vm, nil
			},
		},
	}
	t.Cleanup(func() {
		checkNoMounts(t, f.m.Root)
		f.checkNamespacesReleased(t)
	})
	return f
}

// vmPID is the fake VMM's process, in the share's mount namespace.
func (f *fixture) vmPID() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.vm.State().PID
}

// vmPath is path as the VMM sees it, in the share's mount namespace.
func (f *fixture) vmPath(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", f.vmPID(), path)
}

// vmMounts lists the mounts at or under dir in the share's mount
// namespace; the host's namespace must have none there.
func (f *fixture) vmMounts(t *testing.T, dir string) []string {
	t.Helper()
	checkNoMounts(t, dir)
	mps, err := testutil.MountsUnderOf(fmt.Sprint(f.vmPID()), dir)
	if err != nil {
		t.Fatal(err)
	}
	return mps
}

// checkNoVMMounts: nothing is mounted at or under dir, in the host's
// namespace or, while the VMM runs, in the share's.
func (f *fixture) checkNoVMMounts(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", f.vmPID())); err != nil {
		checkNoMounts(t, dir)
		return
	}
	if mps := f.vmMounts(t, dir); len(mps) > 0 {
		t.Errorf("mounts left under %s in the VM's namespace: %v", dir, mps)
	}
}

// checkNamespacesReleased: this process holds none of the share
// namespaces once the sandboxes are destroyed (the VMM's exit ends them,
// with every mount in them).
func (f *fixture) checkNamespacesReleased(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		link, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if slices.Contains(f.namespaces, link) {
			t.Errorf("the share's mount namespace %s is still open (fd %s)", link, e.Name())
		}
	}
}

// create boots and attaches a sandbox, destroyed at the test's end.
func (f *fixture) create(t *testing.T, id string) *sandbox.Sandbox {
	t.Helper()
	ctx := context.Background()
	sb, err := f.m.Create(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Destroy(context.Background()) })
	if err := sb.Attach(ctx, sandbox.AttachConfig{Hostname: "host-" + id}); err != nil {
		t.Fatal(err)
	}
	return sb
}

func checkNoMounts(t *testing.T, dir string) {
	t.Helper()
	if left := testutil.MustMountsUnder(t, dir); len(left) > 0 {
		t.Errorf("mounts left under %s: %v", dir, left)
		for _, mp := range left {
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// bundle is a bundle with a rootfs holding a marker file, a volume
// directory and a resolv.conf bound read-only.
type bundle struct {
	*oci.Bundle
	volume, resolv string
}

func newBundle(t *testing.T) bundle {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	volume := filepath.Join(t.TempDir(), "volume")
	resolv := filepath.Join(dir, "resolv.conf")
	for _, d := range []string{filepath.Join(rootfs, "bin"), volume} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(rootfs, "bin", "marker"): "rootfs",
		filepath.Join(volume, "data"):          "volume",
		resolv:                                 "nameserver 192.0.2.1\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: volume, Options: []string{"rbind"}},
			{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"rbind", "ro"}},
		},
		Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}},
	}
	return bundle{Bundle: &oci.Bundle{Dir: dir, Spec: spec, Rootfs: rootfs}, volume: volume, resolv: resolv}
}

// checkSourcesIntact fails if cleaning up reached into the bundle.
func (b bundle) checkSourcesIntact(t *testing.T) {
	t.Helper()
	for p, want := range map[string]string{
		filepath.Join(b.Rootfs, "bin", "marker"): "rootfs",
		filepath.Join(b.volume, "data"):          "volume",
		b.resolv:                                 "nameserver 192.0.2.1\n",
	} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s after cleanup: %q, %v", p, got, err)
		}
	}
}

func TestCreateAttach(t *testing.T) {
	var got *api.CreateSandboxRequest
	f := newFixture(t, &clienttest.Agent{
		CreateSandboxFunc: func(_ context.Context, r *api.CreateSandboxRequest) (*api.Empty, error) {
			got = r
			return &api.Empty{}, nil
		},
	})
	ctx := context.Background()
	sb, err := f.m.Create(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	if mps := f.vmMounts(t, sb.Dir()); len(mps) != 1 || mps[0] != sb.SharedDir() {
		t.Errorf("mounts after boot in the VM's namespace: %v, want the private share only", mps)
	}
	if _, err := sb.CreateContainer(ctx, "c1", newBundle(t).Bundle, nil); !errors.Is(err, sandbox.ErrNotAttached) {
		t.Errorf("CreateContainer before Attach: %v", err)
	}
	if err := sb.Attach(ctx, sandbox.AttachConfig{DNS: []string{"nameserver 192.0.2.53"}}); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.SharedMountTag != sandbox.ShareTag || got.SharedMountPath != oci.GuestSharePath ||
		got.Hostname != "sb1" || strings.Join(got.Dns, ",") != "nameserver 192.0.2.53" {
		t.Errorf("CreateSandbox request %v", got)
	}
	loaded, err := f.m.Load(ctx, "sb1")
	if err != nil {
		t.Fatal(err)
	}
	if st := loaded.State(); !st.Attached || st.Hostname != "sb1" {
		t.Errorf("loaded state %+v", st)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sb.Dir()); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left: %v", err)
	}
}

func TestContainerLifecycle(t *testing.T) {
	var created *api.CreateContainerRequest
	var removed []*api.RemoveContainerRequest
	f := newFixture(t, &clienttest.Agent{
		CreateContainerFunc: func(_ context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			created = r
			return &api.CreateContainerResponse{Pid: 7}, nil
		},
		RemoveContainerFunc: func(_ context.Context, r *api.RemoveContainerRequest) (*api.Empty, error) {
			removed = append(removed, r)
			return &api.Empty{}, nil
		},
	})
	sb := f.create(t, "sb1")
	b := newBundle(t)
	ctx := context.Background()
	pid, err := sb.CreateContainer(ctx, "c1", b.Bundle, &api.StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if pid != 7 {
		t.Errorf("pid %d", pid)
	}

	// The agent got the guest spec.
	var spec specs.Spec
	if err := json.Unmarshal(created.SpecJson, &spec); err != nil {
		t.Fatal(err)
	}
	if created.ContainerId != "c1" || !created.Stdio.Stdout || created.Stdio.Stdin {
		t.Errorf("request %v", created)
	}
	if spec.Root.Path != "/run/cocoon/shared/c1/rootfs" || spec.Mounts[1].Source != "/run/cocoon/shared/c1/mounts/1" ||
		spec.Mounts[2].Source != "/run/cocoon/shared/c1/mounts/2" || spec.Mounts[0].Source != "proc" {
		t.Errorf("guest spec root %s, mounts %+v", spec.Root.Path, spec.Mounts)
	}
	if spec.Hooks != nil || len(spec.Linux.Namespaces) != 0 {
		t.Errorf("guest spec kept hooks %v or the host netns %v", spec.Hooks, spec.Linux.Namespaces)
	}

	// The VMM's mounts show the bundle's content where the guest looks.
	share := sb.SharedDir()
	for p, want := range map[string]string{
		filepath.Join(share, "c1/rootfs/bin/marker"): "rootfs",
		filepath.Join(share, "c1/mounts/1/data"):     "volume",
		filepath.Join(share, "c1/mounts/2"):          "nameserver 192.0.2.1\n",
	} {
		if got, err := os.ReadFile(f.vmPath(p)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	if err := os.WriteFile(f.vmPath(filepath.Join(share, "c1/mounts/2")), []byte("x"), 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("writing the read-only bind: %v, want EROFS", err)
	}
	if err := os.WriteFile(f.vmPath(filepath.Join(share, "c1/mounts/1/new")), []byte("guest"), 0o644); err != nil {
		t.Errorf("writing the volume: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(b.volume, "new")); string(got) != "guest" {
		t.Errorf("the volume's source does not see the write: %q", got)
	}
	if n := len(f.vmMounts(t, filepath.Join(share, "c1"))); n != 3 {
		t.Errorf("%d mounts for the container, want 3", n)
	}

	if _, err := sb.CreateContainer(ctx, "c1", b.Bundle, nil); !errors.Is(err, sandbox.ErrContainerExists) {
		t.Errorf("second create of c1: %v", err)
	}
	if n := len(f.vmMounts(t, filepath.Join(share, "c1"))); n != 3 {
		t.Errorf("the failed duplicate changed the first container's mounts: %d", n)
	}

	if err := sb.RemoveContainer(ctx, "c1", false); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ContainerId != "c1" || removed[0].Force {
		t.Errorf("remove requests %v", removed)
	}
	f.checkNoVMMounts(t, share+"/c1")
	if _, err := os.Stat(filepath.Join(share, "c1")); !os.IsNotExist(err) {
		t.Errorf("container directory left: %v", err)
	}
	b.checkSourcesIntact(t)
}

func TestCreateContainerAgentFails(t *testing.T) {
	tests := map[string]struct {
		err         error
		sentinel    error
		wantRemoved bool
	}{
		"invalid spec":   {status.Error(codes.InvalidArgument, "bad spec"), agentclient.ErrInvalidArgument, false},
		"id taken":       {status.Error(codes.AlreadyExists, "c1 exists"), sandbox.ErrContainerExists, false},
		"internal error": {status.Error(codes.Internal, "runc init failed"), nil, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var removed []string
			f := newFixture(t, &clienttest.Agent{
				CreateContainerFunc: func(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
					return nil, tc.err
				},
				RemoveContainerFunc: func(_ context.Context, r *api.RemoveContainerRequest) (*api.Empty, error) {
					removed = append(removed, r.ContainerId)
					return &api.Empty{}, nil
				},
			})
			sb := f.create(t, "sb1")
			b := newBundle(t)
			_, err := sb.CreateContainer(context.Background(), "c1", b.Bundle, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			if (len(removed) > 0) != tc.wantRemoved {
				t.Errorf("removed from the guest: %v", removed)
			}
			f.checkNoVMMounts(t, sb.SharedDir()+"/c1")
			if _, err := os.Stat(filepath.Join(sb.SharedDir(), "c1")); !os.IsNotExist(err) {
				t.Errorf("container directory left: %v", err)
			}
			b.checkSourcesIntact(t)
		})
	}
}

func TestCreateContainerBadInput(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{})
	sb := f.create(t, "sb1")
	b := newBundle(t)
	ctx := context.Background()
	if _, err := sb.CreateContainer(ctx, "../x", b.Bundle, nil); err == nil {
		t.Error("hostile id accepted")
	}
	b.Spec.Mounts = append(b.Spec.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: "/nonexistent"})
	if _, err := sb.CreateContainer(ctx, "c1", b.Bundle, nil); !errors.Is(err, oci.ErrInvalidBundle) {
		t.Errorf("missing volume: %v", err)
	}
	if entries, _ := os.ReadDir(sb.SharedDir()); len(entries) != 0 {
		t.Errorf("bad input left %v in the share", entries)
	}
}

func TestRemoveContainerAgentGone(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{})
	sb := f.create(t, "sb1")
	b := newBundle(t)
	ctx := context.Background()
	if _, err := sb.CreateContainer(ctx, "c1", b.Bundle, nil); err != nil {
		t.Fatal(err)
	}
	f.stopAgent() // the VM died
	if err := sb.RemoveContainer(ctx, "c1", false); err != nil {
		t.Fatal(err)
	}
	f.checkNoVMMounts(t, sb.SharedDir()+"/c1")
	b.checkSourcesIntact(t)
	if err := sb.RemoveContainer(ctx, "c1", false); err != nil {
		t.Errorf("removing again with the agent gone: %v", err)
	}
}

func TestRemoveContainerRefused(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{
		RemoveContainerFunc: func(_ context.Context, r *api.RemoveContainerRequest) (*api.Empty, error) {
			return nil, status.Error(codes.FailedPrecondition, "container c1 is running")
		},
	})
	sb := f.create(t, "sb1")
	b := newBundle(t)
	ctx := context.Background()
	if _, err := sb.CreateContainer(ctx, "c1", b.Bundle, nil); err != nil {
		t.Fatal(err)
	}
	err := sb.RemoveContainer(ctx, "c1", false)
	if !errors.Is(err, agentclient.ErrFailedPrecondition) {
		t.Fatalf("remove of a running container: %v", err)
	}
	if n := len(f.vmMounts(t, sb.SharedDir()+"/c1")); n != 3 {
		t.Errorf("a refused remove unmounted: %d mounts left of 3", n)
	}
	if err := sb.RemoveContainer(ctx, "c1", true); err != nil {
		t.Fatalf("forced remove: %v", err)
	}
	f.checkNoVMMounts(t, sb.SharedDir()+"/c1")
	b.checkSourcesIntact(t)
}

func TestRemoveUnknownContainer(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{
		RemoveContainerFunc: func(_ context.Context, r *api.RemoveContainerRequest) (*api.Empty, error) {
			return nil, status.Error(codes.NotFound, "no container c9")
		},
	})
	sb := f.create(t, "sb1")
	if err := sb.RemoveContainer(context.Background(), "c9", false); !errors.Is(err, agentclient.ErrNotFound) {
		t.Errorf("removing an unknown container: %v", err)
	}
}

// TestDestroyCleansMounts: containers never removed, and a sandbox found
// again by another process after its VM died, still leave nothing mounted.
func TestDestroyCleansMounts(t *testing.T) {
	for _, crashed := range []bool{false, true} {
		name := map[bool]string{false: "running", true: "vm died"}[crashed]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, &clienttest.Agent{})
			sb := f.create(t, "sb1")
			b := newBundle(t)
			ctx := context.Background()
			for _, id := range []string{"c1", "c2"} {
				if _, err := sb.CreateContainer(ctx, id, b.Bundle, nil); err != nil {
					t.Fatal(err)
				}
			}
			if crashed {
				f.stopAgent()
				f.machine.Exit()
				var err error
				if sb, err = f.m.Load(ctx, "sb1"); err != nil {
					t.Fatal(err)
				}
			}
			if err := sb.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
			checkNoMounts(t, f.m.Root)
			if _, err := os.Stat(sb.Dir()); !os.IsNotExist(err) {
				t.Errorf("sandbox directory left: %v", err)
			}
			b.checkSourcesIntact(t)
		})
	}
}

// TestAgentAddress: a relay reaches the agent through the proxy's socket in
// the sandbox directory, or over vsock.
func TestAgentAddress(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{})
	ctx := context.Background()
	sb, err := f.m.Create(ctx, "sb-addr")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	sock, cid := sb.AgentAddress()
	if st := sb.State(); st.Transport == api.TransportVsock {
		if sock != "" || cid != st.VsockCID {
			t.Errorf("vsock sandbox: %q, %d", sock, cid)
		}
	} else if sock != filepath.Join(sb.Dir(), "proxy.sock") || cid != 0 {
		t.Errorf("serial sandbox: %q, %d", sock, cid)
	}
}
