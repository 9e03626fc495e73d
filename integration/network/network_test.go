//go:build integration

package network_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/internal/testutil"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestContainerNetwork runs two containers, each in its own namespace on
// one bridge: the first sees its address, MTU, routes and the DNS files
// of its bundle, reaches a server in the bridge's namespace, serves one
// that the bridge's namespace reaches, and serves one that the second
// container reaches. Then nothing of cocoon's is left in the namespaces.
func TestContainerNetwork(t *testing.T) {
	tp := newTopology(t, 1400)
	ns1 := tp.container("c1", 2)
	ns2 := tp.container("c2", 3)

	peerGot := listen(t, tp.br, "192.0.2.1:7000")
	peerGot6 := listen(t, tp.br, "[2001:db8::1]:7003")
	c1 := start(t, "net-c1", bundle(t, ns1, "c1", `
echo "addr: $(ip -o addr show dev eth0 | grep 'inet ')"
echo "mtu: $(cat /sys/class/net/eth0/mtu)"
echo "route: $(ip route | grep default)"
echo "lo: $(ip -o addr show dev lo | grep 'inet ')"
echo "resolv: $(cat /etc/resolv.conf | tr '\n' ' ')"
echo "hosts: $(grep gateway /etc/hosts)"
echo "hostname: $(hostname) $(cat /etc/hostname)"
echo "addr6: $(ip -o addr show dev eth0 | grep 'inet6 2001')"
echo from-c1 | nc -w 30 192.0.2.1 7000 || echo "nc to the peer failed: $?"
echo from-c1-v6 | nc -w 30 2001:db8::1 7003 || echo "nc to the peer over ipv6 failed: $?"
echo from-c1-server | nc -l -p 8000
echo from-c1-to-c2 | nc -l -p 8001
echo c1 done`))

	if got := peerGot(); got != "from-c1\n" {
		t.Errorf("the peer's server got %q, want %q", got, "from-c1\n")
	}
	if got := peerGot6(); got != "from-c1-v6\n" {
		t.Errorf("the peer's ipv6 server got %q", got)
	}
	if got := dial(t, tp.br, "192.0.2.2:8000"); got != "from-c1-server\n" {
		t.Errorf("the container's server sent %q to the peer", got)
	}
	c2 := start(t, "net-c2", bundle(t, ns2, "c2", `
for i in $(seq 1 100); do
  if out=$(nc -w 10 192.0.2.2 8001 </dev/null) && [ -n "$out" ]; then echo "c2 got: $out"; exit 0; fi
  sleep 0.2
done
echo "c2 could not reach c1"; exit 1`))
	out2 := c2.wait(t)
	if !strings.Contains(out2, "c2 got: from-c1-to-c2") {
		t.Errorf("second container: %s", out2)
	}
	out1 := c1.wait(t)
	t.Logf("c1:\n%s", out1)
	for _, want := range []string{
		"addr: ", "inet 192.0.2.2/24",
		"addr6: ", "inet6 2001:db8::2/64",
		"mtu: 1400",
		"route: default via 192.0.2.1 dev eth0",
		"lo: ", "inet 127.0.0.1/8",
		"resolv: nameserver 192.0.2.53 search cocoon.test",
		"hosts: 192.0.2.1 gateway.cocoon.test",
		"hostname: c1 c1",
		"c1 done",
	} {
		if !strings.Contains(out1, want) {
			t.Errorf("c1's output lacks %q", want)
		}
	}
	if strings.Contains(out1, "failed") {
		t.Errorf("c1: %s", out1)
	}
	// run deletes the containers when they exit.
	checkClean(t, ns1)
	checkClean(t, ns2)
}

// TestPortForward dials localhost in a container's namespace on the host,
// as CRI-O and containerd serve CRI port-forward (kubectl port-forward):
// the connection reaches the port the container listens on in its VM, and
// one to a port nothing listens on there is reset.
func TestPortForward(t *testing.T) {
	tp := newTopology(t, 1500)
	ns := tp.container("pf", 2)
	c := start(t, "net-pf", bundle(t, ns, "pf", `
echo from-guest | nc -l -p 8002
echo pf done`))
	if got := dial(t, filepath.Base(ns), "127.0.0.1:8002"); got != "from-guest\n" {
		t.Errorf("through localhost:8002 in the namespace: %q, want from-guest", got)
	}
	// The reset can come before the dial has returned.
	err := inNS(t, filepath.Base(ns), func() error {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:9", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		_, err = c.Read(make([]byte, 1))
		return err
	})
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("localhost:9 in the namespace, closed in the guest: %v, want a reset", err)
	}
	if out := c.wait(t); !strings.Contains(out, "pf done") {
		t.Errorf("container output: %s", out)
	}
	checkClean(t, ns)
}

// TestQEMUCrash kills the VM of a running container: delete still cleans
// the namespace, and the next container in it has a working network.
func TestQEMUCrash(t *testing.T) {
	tp := newTopology(t, 1500)
	ns := tp.container("crash", 2)
	id := "net-crash"
	b := bundle(t, ns, "crash", "sleep 600")
	// The detached shim keeps stdout and stderr: files, not pipes.
	logf, err := os.Create(filepath.Join(t.TempDir(), "run.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(e.runtime, "--config", e.config, "--root", e.root, "run", "-d", "--bundle", b, id)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("run -d: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command(e.runtime, "--config", e.config, "--root", e.root, "delete", "--force", id).Run()
	})
	qemu := qemuPIDs(t)
	if len(qemu) != 1 {
		t.Fatalf("qemu processes of the suite: %v", qemu)
	}
	if out := sh(t, "ip", "-n", filepath.Base(ns), "link", "show"); !strings.Contains(out, "cocoon_tap0") {
		t.Fatalf("no tap while the container runs:\n%s", out)
	}
	if err := syscall.Kill(qemu[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The tap goes with QEMU (the last descriptor closes); the filters
	// stay until delete.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := sh(t, "ip", "-n", filepath.Base(ns), "link", "show")
		if !strings.Contains(out, "cocoon_tap0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap outlived qemu:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := exec.Command(e.runtime, "--config", e.config, "--root", e.root, "delete", "--force", id).CombinedOutput(); err != nil {
		t.Fatalf("delete --force after the crash: %v: %s", err, out)
	}
	checkClean(t, ns)

	peerGot := listen(t, tp.br, "192.0.2.1:7001")
	next := start(t, "net-after-crash", bundle(t, ns, "crash", `echo again | nc -w 30 192.0.2.1 7001; echo "rc=$?"`))
	if got := peerGot(); got != "again\n" {
		t.Errorf("after the crash, the peer got %q", got)
	}
	if out := next.wait(t); !strings.Contains(out, "rc=0") {
		t.Errorf("container after the crash: %s", out)
	}
	checkClean(t, ns)
}

// qemuPIDs lists the QEMU processes of the suite's sandboxes.
func qemuPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, p := range testutil.ProcessesOf(sandboxRoot()) {
		pid, cl, _ := strings.Cut(p, ": ")
		if strings.HasPrefix(cl, "qemu-system") || strings.Contains(strings.Fields(cl)[0], "qemu-system") {
			var n int
			for _, c := range pid {
				n = n*10 + int(c-'0')
			}
			pids = append(pids, n)
		}
	}
	return pids
}

// TestHostNetwork: a container without a network namespace of its own
// (the host's, as a CRI host-network pod asks) is refused with one line and
// leaves nothing; with runtime.host_namespaces = "guest" it runs on the
// VM's own network, with only loopback, and a warning says so.
func TestHostNetwork(t *testing.T) {
	b := bundle(t, "", "hostnet", `ip -o link | grep -v ' lo:' | grep -c . || true; ip -o addr show dev lo | grep 'inet '`)
	path := filepath.Join(b, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
	if data, err = json.Marshal(&s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(e.runtime, "--config", e.config, "--root", e.root, "run", "--bundle", b, "net-host-refused").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "asks for the host's network namespace, which a VM cannot share: run this pod with runc") ||
		strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Errorf("run on the host's network: %v: %q; want one line refusing it", err, out)
	}
	if st, err := exec.Command(e.runtime, "--root", e.root, "state", "net-host-refused").CombinedOutput(); err == nil {
		t.Errorf("the refused container exists: %s", st)
	}
	if q := qemuPIDs(t); len(q) != 0 {
		t.Errorf("the refused container left QEMU %v", q)
	}

	guest := filepath.Join(t.TempDir(), "configuration.toml")
	if err := testutil.DeriveConfig(e.config, guest, testutil.GuestNamespaces); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(e.runtime, "--config", guest, "--root", e.root, "run", "--bundle", b, "net-host").CombinedOutput()
	if err != nil {
		_ = exec.Command(e.runtime, "--config", guest, "--root", e.root, "delete", "--force", "net-host").Run()
		t.Fatalf("run with host_namespaces = guest: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "inet 127.0.0.1/8") || !strings.Contains(string(out), "\n0\n") {
		t.Errorf("host-network container: %q (want only lo, up)", out)
	}
	if !strings.Contains(string(out), "level=warning") || !strings.Contains(string(out), "host's network namespace") {
		t.Errorf("no warning about the host network: %q", out)
	}
}

// TestMachines carries a namespace into a guest on each machine type
// (virtio-net-device on microvm, virtio-net-pci on q35): address, MTU and a
// connection to the peer.
func TestMachines(t *testing.T) {
	for _, machine := range []string{"microvm", "q35"} {
		t.Run(machine, func(t *testing.T) {
			config := machineConfig(t, machine)
			tp := newTopology(t, 1450)
			ns := tp.container("m"+machine[:1], 4)
			peerGot := listen(t, tp.br, "192.0.2.1:7002")
			id := "net-" + machine
			b := bundle(t, ns, id, `echo "addr: $(ip -o addr show dev eth0 | grep 'inet ')"; echo "mtu: $(cat /sys/class/net/eth0/mtu)"; echo `+machine+` | nc -w 30 192.0.2.1 7002`)
			out, err := exec.Command(e.runtime, "--config", config, "--root", e.root, "run", "--bundle", b, id).CombinedOutput()
			if err != nil {
				_ = exec.Command(e.runtime, "--config", config, "--root", e.root, "delete", "--force", id).Run()
				t.Fatalf("run: %v: %s", err, out)
			}
			if got := peerGot(); got != machine+"\n" {
				t.Errorf("the peer got %q", got)
			}
			for _, want := range []string{"inet 192.0.2.4/24", "mtu: 1450"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q: %s", want, out)
				}
			}
			checkClean(t, ns)
		})
	}
}

// machineConfig writes a copy of the suite's configuration with the
// machine type set and its relative paths made absolute.
func machineConfig(t *testing.T, machine string) string {
	t.Helper()
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(e.config)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, " = \""); ok && !filepath.IsAbs(strings.TrimSuffix(v, "\"")) {
			l = k + ` = "` + filepath.Join(dir, strings.TrimSuffix(v, "\"")) + `"`
		}
		lines = append(lines, l)
		if strings.TrimSpace(l) == "[hypervisor]" {
			lines = append(lines, `machine = "`+machine+`"`)
		}
	}
	p := filepath.Join(t.TempDir(), "configuration.toml")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
