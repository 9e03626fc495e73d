package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/api"
)

// netService serves the agent with a netlink handle in a fresh network
// namespace holding a veth pair ("nic" with the MAC 02:00:c0:00:02:02, as
// a virtio-net NIC would come up, and its peer "other").
func netService(t *testing.T) (api.AgentService, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ns := fmt.Sprintf("cocoonagent%d", os.Getpid()%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", "nic", "address", "02:00:c0:00:02:02", "type", "veth", "peer", "name", "other")
	run("-n", ns, "link", "set", "other", "up")
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	svc := NewService(ServiceConfig{Log: testLog(t), Netlink: nl})
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{Service: svc})
	return agentClient(t, hostSession(t, host)), ns
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestUpdateInterfacesAndRoutes(t *testing.T) {
	client, ns := netService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ifc := &api.Interface{Name: "eth0", Mac: "02:00:c0:00:02:02", Mtu: 1400, Addresses: []string{"192.0.2.2/24", "2001:db8::2/64"}}
	if _, err := client.UpdateInterfaces(ctx, &api.UpdateInterfacesRequest{Interfaces: []*api.Interface{ifc}}); err != nil {
		t.Fatalf("UpdateInterfaces: %v", err)
	}
	out := ipOut(t, "-n", ns, "addr", "show", "dev", "eth0")
	for _, want := range []string{"mtu 1400", "UP", "inet 192.0.2.2/24", "inet6 2001:db8::2/64", "02:00:c0:00:02:02"} {
		if !strings.Contains(out, want) {
			t.Errorf("eth0 lacks %q:\n%s", want, out)
		}
	}
	if lo := ipOut(t, "-n", ns, "link", "show", "lo"); !strings.Contains(lo, "UP") {
		t.Errorf("lo is not up: %s", lo)
	}
	// Again with another address: the old one goes.
	ifc.Addresses = []string{"192.0.2.3/24"}
	if _, err := client.UpdateInterfaces(ctx, &api.UpdateInterfacesRequest{Interfaces: []*api.Interface{ifc}}); err != nil {
		t.Fatalf("UpdateInterfaces again: %v", err)
	}
	out = ipOut(t, "-n", ns, "addr", "show", "dev", "eth0")
	if strings.Contains(out, "192.0.2.2/") || strings.Contains(out, "2001:db8::2") || !strings.Contains(out, "192.0.2.3/24") {
		t.Errorf("addresses not replaced:\n%s", out)
	}

	// The NIC takes another MAC (Docker's veth arrives after boot).
	ifc.HardwareAddr = "02:42:c0:00:02:03"
	if _, err := client.UpdateInterfaces(ctx, &api.UpdateInterfacesRequest{Interfaces: []*api.Interface{ifc}}); err != nil {
		t.Fatalf("UpdateInterfaces with a new mac: %v", err)
	}
	if out := ipOut(t, "-n", ns, "link", "show", "dev", "eth0"); !strings.Contains(out, "02:42:c0:00:02:03") || !strings.Contains(out, "state UP") && !strings.Contains(out, ",UP") {
		t.Errorf("eth0 after a mac change:\n%s", out)
	}

	_, err := client.UpdateRoutes(ctx, &api.UpdateRoutesRequest{
		Routes: []*api.Route{
			{Gateway: "192.0.2.1", Device: "eth0", Family: 4},
			{Destination: "198.51.100.0/24", Gateway: "192.0.2.1", Source: "192.0.2.3", Device: "eth0", Family: 4},
		},
		Neighbors: []*api.Neighbor{{Ip: "192.0.2.9", Mac: "02:00:c0:00:02:09", Device: "eth0"}},
	})
	if err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	routes := ipOut(t, "-n", ns, "route", "show")
	for _, want := range []string{"default via 192.0.2.1 dev eth0", "198.51.100.0/24 via 192.0.2.1 dev eth0 src 192.0.2.3"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	if n := ipOut(t, "-n", ns, "neigh", "show", "dev", "eth0"); !strings.Contains(n, "192.0.2.9 lladdr 02:00:c0:00:02:09 PERMANENT") {
		t.Errorf("neighbour missing: %s", n)
	}
}

func TestUpdateInterfacesErrors(t *testing.T) {
	client, ns := netService(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, tc := range map[string]struct {
		ifc  *api.Interface
		code codes.Code
	}{
		"unknown mac": {&api.Interface{Name: "eth0", Mac: "02:00:00:00:00:99"}, codes.NotFound},
		"bad mac":     {&api.Interface{Name: "eth0", Mac: "zz"}, codes.InvalidArgument},
		"bad address": {&api.Interface{Name: "eth0", Mac: "02:00:c0:00:02:02", Addresses: []string{"192.0.2.300/24"}}, codes.InvalidArgument},
		"long name":   {&api.Interface{Name: strings.Repeat("e", 16), Mac: "02:00:c0:00:02:02"}, codes.InvalidArgument},
	} {
		_, err := client.UpdateInterfaces(ctx, &api.UpdateInterfacesRequest{Interfaces: []*api.Interface{tc.ifc}})
		if status.Code(err) != tc.code {
			t.Errorf("%s: UpdateInterfaces error %v, want code %s", name, err, tc.code)
		}
	}
	// Nothing was changed by the refused requests.
	if out := ipOut(t, "-n", ns, "link", "show", "nic"); strings.Contains(out, "state UP") {
		t.Errorf("a refused request changed the link: %s", out)
	}
	_, err := client.UpdateRoutes(ctx, &api.UpdateRoutesRequest{Routes: []*api.Route{{Gateway: "192.0.2.1", Device: "nope"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("UpdateRoutes on an unknown device: %v", err)
	}
}

func TestApplyNetworkSysctls(t *testing.T) {
	procSys := t.TempDir()
	if err := os.MkdirAll(procSys+"/net/ipv4", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(procSys+"/net/ipv4/ip_unprivileged_port_start", []byte("1024\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := NewService(ServiceConfig{Log: testLog(t), ProcSysDir: procSys})
	spec := &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}},
		Sysctl:     map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.msgmax": "8192"},
	}}
	if err := svc.applyNetworkSysctls(spec); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(procSys + "/net/ipv4/ip_unprivileged_port_start"); string(got) != "0" {
		t.Errorf("guest sysctl = %q, want 0", got)
	}
	if len(spec.Linux.Sysctl) != 1 || spec.Linux.Sysctl["kernel.msgmax"] != "8192" {
		t.Errorf("spec sysctls left: %v", spec.Linux.Sysctl)
	}
	// With a network namespace of its own, the container keeps them.
	spec = &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}},
		Sysctl:     map[string]string{"net.ipv4.ip_unprivileged_port_start": "5"},
	}}
	if err := svc.applyNetworkSysctls(spec); err != nil || len(spec.Linux.Sysctl) != 1 {
		t.Errorf("own namespace: %v, %v", err, spec.Linux.Sysctl)
	}
}
