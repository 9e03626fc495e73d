package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/hypervisortest"
	"github.com/cocoon-containers/cocoon/sandbox"
)

func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netNS makes a named network namespace, removed at the test's end; with
// veth, it holds eth0 (192.0.2.2/24, MTU 1400, default route via
// 192.0.2.1) whose peer is in a second namespace.
func netNS(t *testing.T, suffix string, veth bool) string {
	t.Helper()
	name := fmt.Sprintf("cocoonsb%d%s", os.Getpid()%100000, suffix)
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if veth {
		ipCmd(t, "netns", "add", name+"p")
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name+"p").Run() })
		ipCmd(t, "-n", name, "link", "add", "eth0", "address", "02:00:c0:00:02:02", "mtu", "1400", "type", "veth", "peer", "name", "peer0", "netns", name+"p")
		ipCmd(t, "-n", name, "link", "set", "eth0", "up")
		ipCmd(t, "-n", name+"p", "link", "set", "peer0", "up")
		ipCmd(t, "-n", name, "addr", "add", "192.0.2.2/24", "dev", "eth0")
		ipCmd(t, "-n", name, "route", "add", "default", "via", "192.0.2.1")
	}
	return name
}

// recordStart wraps the fixture's fake hypervisor to keep the VMConfigs
// and, while the VM starts, the namespace's links.
func recordStart(t *testing.T, f *fixture, ns string) (*[]hypervisor.VMConfig, *string) {
	var (
		mu    sync.Mutex
		cfgs  []hypervisor.VMConfig
		links string
	)
	h := f.m.Hypervisor.(*hypervisortest.Hypervisor)
	start := h.StartFunc
	h.StartFunc = func(ctx context.Context, vc hypervisor.VMConfig) (hypervisor.VM, error) {
		mu.Lock()
		cfgs = append(cfgs, vc)
		// Hold the taps as QEMU would (they vanish with the last
		// descriptor).
		for _, n := range vc.NICs {
			if fd, err := unix.Dup(int(n.Tap.Fd())); err == nil {
				t.Cleanup(func() { unix.Close(fd) })
			}
		}
		if ns != "" {
			out, _ := exec.Command("ip", "-n", ns, "link", "show").CombinedOutput()
			links = string(out)
		}
		mu.Unlock()
		return start(ctx, vc)
	}
	return &cfgs, &links
}

func specWithNetNS(path string) *specs.Spec {
	return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: path},
	}}}
}

// withHook adds a prestart hook, as Docker's libnetwork-setkey is.
func withHook(s *specs.Spec) *specs.Spec {
	s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/usr/bin/dockerd", Args: []string{"libnetwork-setkey"}}}}
	return s
}

func TestNetworkOf(t *testing.T) {
	for name, tc := range map[string]struct {
		spec *specs.Spec
		want sandbox.Network
	}{
		"path":                  {specWithNetNS("/run/netns/x"), sandbox.Network{NSPath: "/run/netns/x"}},
		"new":                   {withHook(specWithNetNS("")), sandbox.Network{New: true}},
		"new, nothing fills it": {specWithNetNS(""), sandbox.Network{}},
		"host":                  {&specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}, sandbox.Network{Host: true}},
		"no linux":              {&specs.Spec{}, sandbox.Network{Host: true}},
		"nil spec":              {nil, sandbox.Network{Host: true}},
	} {
		if got := sandbox.NetworkOf(tc.spec); got != tc.want {
			t.Errorf("%s: NetworkOf = %+v, want %+v", name, got, tc.want)
		}
	}
}

func TestCreateWithNetwork(t *testing.T) {
	var (
		mu     sync.Mutex
		ifcs   *api.UpdateInterfacesRequest
		routes *api.UpdateRoutesRequest
	)
	a := &clienttest.Agent{
		UpdateInterfacesFunc: func(_ context.Context, r *api.UpdateInterfacesRequest) (*api.Empty, error) {
			mu.Lock()
			defer mu.Unlock()
			ifcs = r
			return &api.Empty{}, nil
		},
		UpdateRoutesFunc: func(_ context.Context, r *api.UpdateRoutesRequest) (*api.Empty, error) {
			mu.Lock()
			defer mu.Unlock()
			routes = r
			return &api.Empty{}, nil
		},
	}
	f := newFixture(t, a)
	ns := netNS(t, "v", true)
	cfgs, links := recordStart(t, f, ns)
	ctx := context.Background()
	sb, err := f.m.Create(ctx, "net1", sandbox.WithNetwork(sandbox.NetworkOf(specWithNetNS("/run/netns/"+ns))))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	nics := (*cfgs)[0].NICs
	if len(nics) != 1 || nics[0].MAC.String() != "02:00:c0:00:02:02" || nics[0].MTU != 1400 || nics[0].Tap == nil {
		t.Fatalf("NICs = %+v", nics)
	}
	if !strings.Contains(*links, "cocoon_tap0") {
		t.Fatalf("no tap in the namespace while the VM started:\n%s", *links)
	}
	if err := sb.Attach(ctx, sandbox.AttachConfig{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if ifcs == nil || len(ifcs.Interfaces) != 1 || ifcs.Interfaces[0].Name != "eth0" || ifcs.Interfaces[0].Mac != "02:00:c0:00:02:02" ||
		ifcs.Interfaces[0].Mtu != 1400 || strings.Join(ifcs.Interfaces[0].Addresses, ",") != "192.0.2.2/24" {
		t.Errorf("UpdateInterfaces got %v", ifcs)
	}
	if routes == nil || len(routes.Routes) != 1 || routes.Routes[0].Gateway != "192.0.2.1" || routes.Routes[0].Destination != "" || routes.Routes[0].Device != "eth0" {
		t.Errorf("UpdateRoutes got %v", routes)
	}
	mu.Unlock()
	if q := exec.Command("tc", "-n", ns, "qdisc", "show", "dev", "eth0"); true {
		out, _ := q.CombinedOutput()
		if !strings.Contains(string(out), "ingress") {
			t.Errorf("no ingress qdisc on eth0 while the sandbox runs: %s", out)
		}
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("tc", "-n", ns, "qdisc", "show", "dev", "eth0").CombinedOutput()
	if strings.Contains(string(out), "ingress") {
		t.Errorf("ingress qdisc left after Destroy: %s", out)
	}
	if l := ipCmd(t, "-n", ns, "link", "show"); strings.Contains(l, "cocoon_tap") {
		t.Errorf("tap left after Destroy: %s", l)
	}
}

func TestCreateWithoutNIC(t *testing.T) {
	for name, spec := range map[string]func(t *testing.T) *specs.Spec{
		"loopback only": func(t *testing.T) *specs.Spec { return specWithNetNS("/run/netns/" + netNS(t, "lo", false)) },
		"host network":  func(*testing.T) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{}} },
	} {
		t.Run(name, func(t *testing.T) {
			called := false
			a := &clienttest.Agent{UpdateInterfacesFunc: func(context.Context, *api.UpdateInterfacesRequest) (*api.Empty, error) {
				called = true
				return &api.Empty{}, nil
			}}
			f := newFixture(t, a)
			cfgs, _ := recordStart(t, f, "")
			ctx := context.Background()
			sb, err := f.m.Create(ctx, "nonet", sandbox.WithNetwork(sandbox.NetworkOf(spec(t))))
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Destroy(ctx)
			if err := sb.Attach(ctx, sandbox.AttachConfig{}); err != nil {
				t.Fatal(err)
			}
			if n := (*cfgs)[0].NICs; len(n) != 0 {
				t.Errorf("NICs = %+v, want none", n)
			}
			if called {
				t.Error("UpdateInterfaces called for a guest without NICs")
			}
		})
	}
}

func TestCreateWithBadNetNS(t *testing.T) {
	f := newFixture(t, &clienttest.Agent{})
	_, err := f.m.Create(context.Background(), "badnet", sandbox.WithNetwork(sandbox.Network{NSPath: "/run/netns/cocoon-missing"}))
	if err == nil || !strings.Contains(err.Error(), "/run/netns/cocoon-missing") {
		t.Fatalf("Create with a missing namespace: %v", err)
	}
	if _, err := os.Stat(f.m.Root + "/badnet"); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left: %v", err)
	}
}

// TestCreateNewNetNS is Docker's case: Create makes the namespace and the
// NIC's tap, a veth arrives in the namespace after boot (the prestart
// hook), and ConnectNetwork carries it into the guest.
func TestCreateNewNetNS(t *testing.T) {
	var (
		mu   sync.Mutex
		ifcs *api.UpdateInterfacesRequest
	)
	a := &clienttest.Agent{UpdateInterfacesFunc: func(_ context.Context, r *api.UpdateInterfacesRequest) (*api.Empty, error) {
		mu.Lock()
		defer mu.Unlock()
		ifcs = r
		return &api.Empty{}, nil
	}}
	f := newFixture(t, a)
	cfgs, _ := recordStart(t, f, "")
	ctx := context.Background()
	sb, err := f.m.Create(ctx, "docker1", sandbox.WithNetwork(sandbox.NetworkOf(withHook(specWithNetNS("")))))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(ctx)
	path := sb.NetNS()
	if path == "" || !strings.HasPrefix(path, sb.Dir()) {
		t.Fatalf("NetNS() = %q", path)
	}
	nics := (*cfgs)[0].NICs
	if len(nics) != 1 || nics[0].MAC[0]&2 == 0 {
		t.Fatalf("NICs = %+v, want one with a locally administered mac", nics)
	}
	if err := sb.Attach(ctx, sandbox.AttachConfig{}); err != nil {
		t.Fatal(err)
	}
	// Nothing in the namespace yet: ConnectNetwork leaves the NIC alone.
	if err := sb.ConnectNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	if ifcs != nil {
		t.Fatalf("UpdateInterfaces before the namespace has an interface: %v", ifcs)
	}
	// The hook: a veth moved into the namespace, with an address.
	peer := netNS(t, "dp", false)
	ipCmd(t, "-n", peer, "link", "add", "eth0", "address", "02:42:c0:00:02:05", "type", "veth", "peer", "name", "peer0")
	out, err := exec.Command("sh", "-c", fmt.Sprintf("ip -n %s link set eth0 netns /proc/self/fd/3 3<%s", peer, path)).CombinedOutput()
	if err != nil {
		t.Fatalf("moving the veth: %v: %s", err, out)
	}
	if out, err := exec.Command("nsenter", "--net="+path, "sh", "-c", "ip addr add 192.0.2.5/24 dev eth0 && ip link set eth0 up").CombinedOutput(); err != nil {
		t.Fatalf("configuring the veth: %v: %s", err, out)
	}
	if err := sb.ConnectNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if ifcs == nil || len(ifcs.Interfaces) != 1 || ifcs.Interfaces[0].Mac != nics[0].MAC.String() ||
		ifcs.Interfaces[0].HardwareAddr != "02:42:c0:00:02:05" || strings.Join(ifcs.Interfaces[0].Addresses, ",") != "192.0.2.5/24" {
		t.Errorf("UpdateInterfaces got %v", ifcs)
	}
	mu.Unlock()
	if out, _ := exec.Command("nsenter", "--net="+path, "tc", "qdisc", "show", "dev", "eth0").CombinedOutput(); !strings.Contains(string(out), "ingress") {
		t.Errorf("no ingress qdisc on the veth: %s", out)
	}
	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
}
