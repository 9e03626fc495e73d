//go:build integration

package cri_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/network"
)

// podNetwork is the suite's CNI network: Debian's bridge and host-local
// plugins on a bridge of its own, in TEST-NET-2.
var podNetwork = &containerdtest.PodNetwork{Name: "cocoon-cri-test", Bridge: "cocoon-cri0", Subnet: "198.51.100.0/24", Subnet6: "2001:db8:51::/64"}

const (
	gateway  = "198.51.100.1"
	gateway6 = "2001:db8:51::1"
)

// podInfo is what crictl inspectp tells of a pod's network.
type podInfo struct {
	IP    string // from CNI
	IP6   string // the IPv6 address CNI gave too
	NetNS string // the namespace's path in the pause container's spec
}

func inspectPod(t *testing.T, id string) podInfo {
	t.Helper()
	var p struct {
		Status struct {
			Network struct {
				IP            string
				AdditionalIPs []struct{ IP string } `json:"additionalIps"`
			}
		}
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string }
				}
			}
		}
	}
	out := mustCrictl(t, "inspectp", "-o", "json", id)
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("inspectp %s: %v", id, err)
	}
	info := podInfo{IP: p.Status.Network.IP}
	for _, a := range p.Status.Network.AdditionalIPs {
		if ip := net.ParseIP(a.IP); ip != nil && ip.To4() == nil {
			info.IP6 = a.IP
		}
	}
	for _, ns := range p.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			info.NetNS = ns.Path
		}
	}
	if net.ParseIP(info.IP) == nil || !strings.HasPrefix(info.IP, "198.51.100.") || !strings.HasPrefix(info.IP6, "2001:db8:51::") || info.NetNS == "" {
		t.Fatalf("pod %s: IPs %q %q, network namespace %q; want addresses of %s and %s and a path", id, info.IP, info.IP6, info.NetNS, podNetwork.Subnet, podNetwork.Subnet6)
	}
	return info
}

// httpdCommand serves body on port 8080 with busybox httpd.
func httpdCommand(body string) []string {
	return []string{"sh", "-c", "mkdir -p /www && echo " + body + " > /www/index.html && exec httpd -f -p 8080 -h /www"}
}

// httpGet fetches url from the host until it answers or the deadline.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	return testutil.HTTPGet(t, url, commandTimeout)
}

// wgetIn fetches url with busybox wget in container id, retrying while
// the server is starting. (Debian's busybox wget crashes with -T, on the
// host as in a guest: crictl's timeout bounds it instead.)
func wgetIn(t *testing.T, id, url string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := crictl(t, "exec", "-s", id, "wget", "-q", "-O", "-", url)
		if r.code == 0 {
			return strings.TrimSpace(r.stdout)
		}
		if time.Now().After(deadline) {
			t.Fatalf("wget %s in %s: %v", url, id[:12], r)
		}
		time.Sleep(time.Second)
	}
}

// startNetworkPod runs a pod on the suite's pod network with the handler
// and one container running cmd, logs how long runp, create and start
// took, and returns the pod's and container's IDs.
func startNetworkPod(t *testing.T, dir, handler, name string, cmd ...string) (pod, ctr string) {
	t.Helper()
	podJSON, err := containerdtest.NetworkPodConfig(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pod = runPod(t, handler, podJSON)
	ctr = startContainer(t, pod, containerConfig(t, dir, name+"-c", cmd...), podJSON)
	t.Logf("pod start with a CNI network (runp + create + start), %s: %v", handler, time.Since(start).Round(time.Millisecond))
	return pod, ctr
}

func TestPodNetwork(t *testing.T) {
	dir := t.TempDir()
	podA, ctrA := startNetworkPod(t, dir, "cocoon", "net-a", httpdCommand("hello-from-a")...)
	a := inspectPod(t, podA)
	t.Logf("cocoon pod A: %s and %s in %s", a.IP, a.IP6, a.NetNS)

	// The pod's VM carries the namespace's interface: a tap beside it,
	// mirred filters both ways.
	taps, filters, err := containerdtest.NetNSDevices(a.NetNS, network.TapPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("namespace of pod A: taps %v, %d ingress filters", taps, filters)
	if len(taps) != 1 || filters < 2 {
		t.Errorf("namespace %s: taps %v, %d ingress filters; want one tap and its two mirred filters", a.NetNS, taps, filters)
	}
	if q := qemus(t); len(q) != 1 {
		t.Errorf("%d QEMU processes for one pod, want 1: %v", len(q), q)
	}

	t.Run("guest interface and route", func(t *testing.T) {
		addrs := mustCrictl(t, "exec", "-s", ctrA, "ip", "-4", "addr", "show")
		if !strings.Contains(addrs, "inet "+a.IP+"/24") {
			t.Errorf("ip addr in the container lacks the pod IP %s/24:\n%s", a.IP, addrs)
		}
		routes := mustCrictl(t, "exec", "-s", ctrA, "ip", "route")
		if !strings.Contains(routes, "default via "+gateway) {
			t.Errorf("ip route in the container lacks the default route via %s:\n%s", gateway, routes)
		}
		addrs6 := mustCrictl(t, "exec", "-s", ctrA, "ip", "-6", "addr", "show", "scope", "global")
		if !strings.Contains(addrs6, "inet6 "+a.IP6+"/64") {
			t.Errorf("ip -6 addr in the container lacks the pod IPv6 %s/64:\n%s", a.IP6, addrs6)
		}
		routes6 := mustCrictl(t, "exec", "-s", ctrA, "ip", "-6", "route")
		if !strings.Contains(routes6, "default via "+gateway6) {
			t.Errorf("ip -6 route in the container lacks the default route via %s:\n%s", gateway6, routes6)
		}
		if got := mustCrictl(t, "exec", "-s", ctrA, "hostname"); got != "net-a" {
			t.Errorf("hostname in the pod: %q, want net-a", got)
		}
		// The pod's DNS settings reach its containers, as the kubelet's do.
		resolv := mustCrictl(t, "exec", "-s", ctrA, "cat", "/etc/resolv.conf")
		for _, want := range []string{"nameserver " + containerdtest.PodDNS.Server, "search " + containerdtest.PodDNS.Search, "options ndots:5"} {
			if !strings.Contains(resolv, want) {
				t.Errorf("/etc/resolv.conf in the pod lacks %q:\n%s", want, resolv)
			}
		}
	})

	t.Run("host to pod", func(t *testing.T) {
		if got := httpGet(t, "http://"+a.IP+":8080/"); got != "hello-from-a" {
			t.Errorf("GET from the host: %q, want hello-from-a", got)
		}
		if got := httpGet(t, "http://["+a.IP6+"]:8080/"); got != "hello-from-a" {
			t.Errorf("GET over IPv6 from the host: %q, want hello-from-a", got)
		}
	})

	t.Run("pod to host", func(t *testing.T) {
		l, err := net.Listen("tcp", gateway+":0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello-from-host to %s\n", r.RemoteAddr)
		})}
		go srv.Serve(l)
		defer srv.Close()
		got := wgetIn(t, ctrA, "http://"+l.Addr().String()+"/")
		if !strings.HasPrefix(got, "hello-from-host to "+a.IP+":") {
			t.Errorf("wget of the host from the pod: %q, want hello-from-host from %s", got, a.IP)
		}
	})

	_, ctrB := startNetworkPod(t, dir, "cocoon", "net-b", "sleep", "1000")
	_, ctrR := startNetworkPod(t, dir, "runc", "net-runc", httpdCommand("hello-from-runc")...)

	t.Run("pod to pod", func(t *testing.T) {
		if got := wgetIn(t, ctrB, "http://"+a.IP+":8080/"); got != "hello-from-a" {
			t.Errorf("cocoon pod B to cocoon pod A: %q", got)
		}
		if got := wgetIn(t, ctrB, "http://["+a.IP6+"]:8080/"); got != "hello-from-a" {
			t.Errorf("cocoon pod B to cocoon pod A over IPv6: %q", got)
		}
	})

	t.Run("runc parity", func(t *testing.T) {
		var r podInfo
		for _, p := range strings.Fields(mustCrictl(t, "pods", "-q", "--name", "net-runc")) {
			r = inspectPod(t, p)
		}
		if got := httpGet(t, "http://"+r.IP+":8080/"); got != "hello-from-runc" {
			t.Errorf("host to runc pod: %q", got)
		}
		if got := wgetIn(t, ctrB, "http://"+r.IP+":8080/"); got != "hello-from-runc" {
			t.Errorf("cocoon pod B to runc pod: %q", got)
		}
		if got := wgetIn(t, ctrR, "http://"+a.IP+":8080/"); got != "hello-from-a" {
			t.Errorf("runc pod to cocoon pod A: %q", got)
		}
		routes := mustCrictl(t, "exec", "-s", ctrR, "ip", "route")
		if !strings.Contains(routes, "default via "+gateway) {
			t.Errorf("ip route in the runc pod:\n%s", routes)
		}
	})

	// Tear down: CNI DEL, the namespaces, taps and filters, VMs, shims.
	pods := strings.Fields(mustCrictl(t, "pods", "-q"))
	if len(pods) != 3 {
		t.Errorf("%d pods before the teardown, want 3: %v", len(pods), pods)
	}
	for _, p := range pods {
		netns := inspectPod(t, p).NetNS
		mustCrictl(t, "stopp", p)
		if _, err := os.Stat(netns); err == nil {
			t.Logf("%s is still there after stopp", netns)
			// containerd 1.6 removes the namespace at stopp; if it ever
			// keeps it, it must at least hold nothing of cocoon's.
			taps, filters, err := containerdtest.NetNSDevices(netns, network.TapPrefix)
			if err == nil && (len(taps) > 0 || filters > 0) {
				t.Errorf("after stopp, %s still has taps %v and %d filters", netns, taps, filters)
			}
		}
		mustCrictl(t, "rmp", p)
		if _, err := os.Stat(netns); err == nil {
			t.Errorf("network namespace %s left after rmp", netns)
		}
	}
	if q := qemus(t); len(q) != 0 {
		t.Errorf("QEMU left after rmp: %v", q)
	}
	if p := containerdtest.Processes("containerd-shim-cocoon-v2 -namespace " + namespace + " -address " + daemon.Socket); len(p) != 0 {
		t.Errorf("shim left after rmp: %v", p)
	}
	if left := daemon.PodNetworkLeftovers(); len(left) > 0 {
		t.Errorf("pod network after rmp: %v", left)
	}
	if taps, _, err := containerdtest.NetNSDevices("/proc/self/ns/net", network.TapPrefix); err != nil || len(taps) > 0 {
		t.Errorf("taps in the host's namespace: %v %v", taps, err)
	}
}
