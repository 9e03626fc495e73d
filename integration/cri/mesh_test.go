//go:build integration

package cri_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/podnettest"
)

var (
	netToolsOnce sync.Once
	netToolsErr  error
)

// importNetTools imports podnettest.Image (the distribution's iptables,
// nft, ip, brctl and meshproxy over busybox) once for the suite.
func importNetTools(t *testing.T) {
	t.Helper()
	netToolsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		rootfs := filepath.Join(daemon.Dir, "nettools-"+namespace)
		defer os.RemoveAll(rootfs)
		if netToolsErr = podnettest.Rootfs(ctx, rootfs); netToolsErr == nil {
			netToolsErr = daemon.Import(ctx, namespace, containerdtest.Image{Name: podnettest.Image, Rootfs: rootfs, Cmd: []string{"sh"}})
		}
	})
	if netToolsErr != nil {
		t.Fatalf("the network tools image: %v", netToolsErr)
	}
}

// netToolsContainer writes the configuration of a container of
// podnettest.Image running cmd, with the CRI security context sc (nil: none),
// and returns its path.
func netToolsContainer(t *testing.T, dir, name string, sc map[string]any, cmd ...string) string {
	t.Helper()
	path, err := containerdtest.ContainerConfig(dir, name, podnettest.Image, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	if sc != nil {
		setLinux(t, path, map[string]any{"security_context": sc})
	}
	return path
}

// netAdmin is the security context of a mesh's init container and proxy.
var netAdmin = map[string]any{"capabilities": map[string]any{"add_capabilities": []string{"NET_ADMIN", "NET_RAW"}}}

// waitExited waits for container id to exit and returns its logs; it
// must exit 0.
func waitExited(t *testing.T, id string) string {
	t.Helper()
	if st := waitExit(t, id); st != "0 Completed" {
		t.Fatalf("container %s: exit %s; logs: %v", id[:12], st, crictl(t, "logs", id))
	}
	logs := crictl(t, "logs", id)
	return logs.stdout + logs.stderr
}

// logsUntil waits until container id's logs hold want.
func logsUntil(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		r := crictl(t, "logs", id)
		if strings.Contains(r.stdout+r.stderr, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: its logs lack %q: %v", id[:12], want, r)
		}
		time.Sleep(time.Second)
	}
}

// execUntil runs cmd in container id until its output holds want (a
// server may still be starting), for at most a minute, and returns the
// output.
func execUntil(t *testing.T, id, want string, cmd ...string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := crictl(t, append([]string{"exec", "-s", id}, cmd...)...)
		if strings.Contains(r.stdout, want) {
			return r.stdout
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v in %s: %v; want %q", cmd, id[:12], r, want)
		}
		time.Sleep(time.Second)
	}
}

// dialUntil connects from the host to addr, sends an HTTP request and
// returns the answer once it holds want, for at most a minute.
func dialUntil(t *testing.T, addr, want string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := podnettest.Ask(addr)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("from the host to %s: %q, %v; want %q", addr, got, err, want)
		}
		time.Sleep(time.Second)
	}
}

// TestMeshRedirect is a meshed pod on the suite's CNI network, with each
// iptables back end: an init container with NET_ADMIN installs a mesh's
// rule set (podnettest.InitScript: nat REDIRECT of outbound TCP to the
// proxy's port, its user exempted by owner, TPROXY of one inbound port,
// policy routing of the TPROXY mark; IPv4 and IPv6) and exits; a proxy
// container (meshproxy, which answers with each connection's original
// destination) and an application container follow. The application's
// outbound connections, to an outside address and to the pod's own IPv4
// and IPv6 addresses, land on the proxy, which sees where they were
// going; the proxy's user reaches the application's server directly; a
// connection from the host to the captured inbound port lands on the
// proxy's transparent socket. Removing the pod leaves nothing.
func TestMeshRedirect(t *testing.T) {
	importNetTools(t)
	for _, backend := range podnettest.Backends {
		t.Run(backend, func(t *testing.T) { meshPod(t, backend) })
	}
}

func meshPod(t *testing.T, backend string) {
	dir := t.TempDir()
	podJSON, err := containerdtest.NetworkPodConfig(dir, "mesh-"+backend)
	if err != nil {
		t.Fatal(err)
	}
	pod := runPod(t, "cocoon", podJSON)
	ip := inspectPod(t, pod)

	initC := startContainer(t, pod, netToolsContainer(t, dir, "mesh-init", netAdmin, "sh", "-c", podnettest.InitScript(backend)), podJSON)
	out := waitExited(t, initC)
	for _, want := range podnettest.InstalledRules(backend) {
		if !strings.Contains(out, want) {
			t.Errorf("the init container's output lacks %q:\n%s", want, out)
		}
	}
	proxy := startContainer(t, pod, netToolsContainer(t, dir, "mesh-proxy", netAdmin, podnettest.ProxyCommand()...), podJSON)
	app := startContainer(t, pod, netToolsContainer(t, dir, "app", nil, "sh", "-c", podnettest.DirectServer+" && exec sleep 1000"), podJSON)
	// A failure's log shows the rules' counters and the routes, while the
	// pod is there.
	diagnosed := false
	diagnose := func() {
		if t.Failed() && !diagnosed {
			t.Logf("in the pod: %v", crictl(t, "exec", "-s", proxy, "sh", "-c", podnettest.Diagnosis(backend)))
		}
		diagnosed = true
	}
	defer diagnose()

	outside := net.JoinHostPort(podnettest.OutsideAddr, "80")
	own := net.JoinHostPort(ip.IP, fmt.Sprint(podnettest.DirectPort))
	own6 := net.JoinHostPort(ip.IP6, fmt.Sprint(podnettest.DirectPort))
	logsUntil(t, proxy, podnettest.ProxyListening)
	for _, dst := range []string{outside, own, own6} {
		execUntil(t, app, podnettest.Reply(podnettest.OutboundPort, dst), podnettest.Fetch("http://"+dst+"/")...)
	}
	// The proxy's own user is not redirected: it reaches the server.
	execUntil(t, app, "direct", "su", "proxy", "-c", strings.Join(podnettest.Fetch("http://"+own+"/"), " "))
	// Inbound: TPROXY hands the connection to the proxy's transparent
	// socket, whose local address is the one the client dialled.
	inbound := net.JoinHostPort(ip.IP, fmt.Sprint(podnettest.ServicePort))
	dialUntil(t, inbound, podnettest.Reply(podnettest.InboundPort, inbound))

	// The proxy logged both (its log reaches the CRI log file a moment
	// after the answer).
	logsUntil(t, proxy, podnettest.Reply(podnettest.OutboundPort, outside))
	logsUntil(t, proxy, podnettest.Reply(podnettest.InboundPort, inbound))
	diagnose()
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left after rmp: %v", q)
	}
}

// TestPrivilegedNetDevices runs podnettest.DevicesScript in a privileged
// container of a privileged host-network pod: bridges (brctl and ip),
// tun/tap through /dev/net/tun, VLAN, VXLAN, macvlan, ipvlan, WireGuard,
// tc with BPF, nftables, ipset and IPVS all work in the guest.
func TestPrivilegedNetDevices(t *testing.T) {
	importNetTools(t)
	dir := t.TempDir()
	podJSON := podConfig(t, dir, "privileged-pod")
	data, err := os.ReadFile(podJSON)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["linux"].(map[string]any)["security_context"].(map[string]any)["privileged"] = true
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(podJSON, data, 0o644); err != nil {
		t.Fatal(err)
	}
	pod := runPod(t, containerdtest.HostNSRuntime, podJSON)
	c := startContainer(t, pod, netToolsContainer(t, dir, "devices", map[string]any{"privileged": true}, "sh", "-c", podnettest.DevicesScript), podJSON)
	out := waitExited(t, c)
	for _, p := range podnettest.DevicesCheck(out) {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	mustCrictl(t, "stopp", pod)
	mustCrictl(t, "rmp", pod)
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left after rmp: %v", q)
	}
}
