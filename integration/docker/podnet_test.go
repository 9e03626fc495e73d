//go:build integration

package docker_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/podnettest"
)

// netToolsImage is podnettest's image: the distribution's iptables, nft,
// ip, tc, brctl, ipset, ipvsadm and meshproxy over busybox.
const netToolsImage = "nettools:cocoon"

var (
	netToolsOnce sync.Once
	netToolsErr  error
)

// importNetTools imports netToolsImage once for the suite.
func importNetTools(t *testing.T) {
	t.Helper()
	netToolsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		defer cancel()
		rootfs, err := os.MkdirTemp(filepath.Dir(dataRoot), "nettools-")
		if err != nil {
			netToolsErr = err
			return
		}
		defer os.RemoveAll(rootfs)
		if netToolsErr = podnettest.Rootfs(ctx, rootfs); netToolsErr != nil {
			return
		}
		imp := fmt.Sprintf("tar -C %s -c . | %s -H unix://%s import - %s", rootfs, dockerCLI, socket, netToolsImage)
		if out, err := exec.CommandContext(ctx, "sh", "-c", imp).CombinedOutput(); err != nil {
			netToolsErr = fmt.Errorf("docker import: %w: %s", err, out)
		}
	})
	if netToolsErr != nil {
		t.Fatalf("the network tools image: %v", netToolsErr)
	}
}

// logsUntil waits until container id's logs hold want.
func logsUntil(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		r := docker(t, "logs", id)
		if strings.Contains(r.stdout+r.stderr, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: its logs lack %q: %v", id[:12], want, r)
		}
		time.Sleep(time.Second)
	}
}

// execUntil runs docker exec with args until its output holds want (a
// server may still be starting), for at most a minute.
func execUntil(t *testing.T, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := docker(t, append([]string{"exec"}, args...)...)
		if strings.Contains(r.stdout, want) {
			return r.stdout
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker exec %v: %v; want %q", args, r, want)
		}
		time.Sleep(time.Second)
	}
}

// TestMeshRedirect is a meshed pod's network in one cocoon container on a
// bridge network, with each iptables back end (Docker puts each cocoon
// container in a VM of its own, so the pod is one container: its init
// process installs the mesh's rules, podnettest.InitScript, then starts
// the application's server and becomes the proxy). Connections from the
// container to an outside address and to its own address land on the
// proxy, which sees where they were going; the proxy's user (docker exec
// -u 1337) reaches the server directly; a connection from the host to the
// captured inbound port lands on the proxy's transparent socket.
func TestMeshRedirect(t *testing.T) {
	importNetTools(t)
	nw := bridgeNetwork(t)
	for i, backend := range podnettest.Backends {
		t.Run(backend, func(t *testing.T) {
			ip := fmt.Sprintf("198.51.100.%d", 30+i)
			script := podnettest.InitScript(backend) + podnettest.DirectServer + " && exec " + strings.Join(podnettest.ProxyCommand(), " ")
			id := mustDocker(t, "run", "-d", "--runtime", "cocoon", "--network", nw, "--ip", ip,
				"--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", netToolsImage, "sh", "-c", script)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("in the container: %v", docker(t, "exec", id, "sh", "-c", podnettest.Diagnosis(backend)))
				}
				if r := docker(t, "rm", "-f", id); r.code != 0 {
					t.Errorf("docker rm -f: %v", r)
				}
			})
			restoredQEMU(t, id)
			logsUntil(t, id, podnettest.RulesInstalled)
			logsUntil(t, id, podnettest.ProxyListening)

			outside := net.JoinHostPort(podnettest.OutsideAddr, "80")
			own := net.JoinHostPort(ip, fmt.Sprint(podnettest.DirectPort))
			for _, dst := range []string{outside, own} {
				execUntil(t, podnettest.Reply(podnettest.OutboundPort, dst), append([]string{id}, podnettest.Fetch("http://"+dst+"/")...)...)
			}
			execUntil(t, "direct", append([]string{"-u", fmt.Sprint(podnettest.ProxyUID), id}, podnettest.Fetch("http://"+own+"/")...)...)
			inbound := net.JoinHostPort(ip, fmt.Sprint(podnettest.ServicePort))
			dialUntil(t, inbound, podnettest.Reply(podnettest.InboundPort, inbound))

			// The rules as iptables-save printed them, and the proxy's log
			// of both connections (which reaches docker logs a moment after
			// the answer).
			wants := append(podnettest.InstalledRules(backend),
				podnettest.Reply(podnettest.OutboundPort, outside), podnettest.Reply(podnettest.InboundPort, inbound))
			for _, want := range wants {
				logsUntil(t, id, want)
			}
		})
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

// TestPrivilegedNetDevices runs podnettest.DevicesScript in a privileged
// cocoon container: bridges (brctl and ip), tun/tap through /dev/net/tun,
// VLAN, VXLAN, macvlan, ipvlan, WireGuard, tc with BPF, nftables, ipset
// and IPVS all work in the guest, as they do under runc.
func TestPrivilegedNetDevices(t *testing.T) {
	importNetTools(t)
	r := docker(t, "run", "--rm", "--runtime", "cocoon", "--network", "none", "--privileged", netToolsImage, "sh", "-c", podnettest.DevicesScript)
	if r.code != 0 {
		t.Errorf("privileged container: %v", r)
	}
	for _, p := range podnettest.DevicesCheck(r.stdout) {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("output:\n%s", r.stdout)
	}
}
