//go:build integration

// Package network_test runs cocoon containers (through the cocoon-runtime
// binary, as containerd and CRI-O drive runc) in network namespaces built
// the way a CNI bridge plugin builds them, with real VMs, and checks that
// the container gets the namespace's network: its address, MTU and
// routes, traffic both ways, and nothing left behind.
package network_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// commandTimeout bounds one runtime command (a VM boot under TCG).
const commandTimeout = 3 * time.Minute

var e struct {
	runtime, config, root, rootfs, tmp string
	// prefix starts the name of every namespace the suite makes.
	prefix string
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	tmp, err := os.MkdirTemp("", "cocoon-network-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	e.runtime = filepath.Join(bin, "cocoon-runtime")
	e.config = filepath.Join(out, "configuration.toml")
	e.root = filepath.Join(tmp, "root")
	e.rootfs = filepath.Join(tmp, "rootfs")
	e.tmp = tmp
	e.prefix = fmt.Sprintf("cnet%d", os.Getpid()%100000)
	if err := testutil.BusyboxRootfs(e.rootfs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return testutil.RunAdopting(m, leftovers)
}

// sandboxRoot is where cocoon-runtime puts the sandboxes of e.root.
func sandboxRoot() string { return testutil.SandboxRoot(e.root) }

// leftovers reports containers, sandboxes, processes and namespaces that
// the suite left.
func leftovers() error {
	var problems []string
	if entries, _ := os.ReadDir(e.root); len(entries) > 0 {
		problems = append(problems, fmt.Sprintf("--root not empty: %d entries", len(entries)))
	}
	if _, err := os.Stat(sandboxRoot()); err == nil {
		problems = append(problems, sandboxRoot()+" still exists")
	}
	if ps := testutil.ProcessesOf(sandboxRoot()); len(ps) > 0 {
		problems = append(problems, fmt.Sprintf("processes left: %v", ps))
	}
	if nss, _ := filepath.Glob("/run/netns/" + e.prefix + "*"); len(nss) > 0 {
		problems = append(problems, fmt.Sprintf("network namespaces left: %v", nss))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// sh runs a host command and fails the test unless it exits 0.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// topology is what a CNI bridge plugin makes: a namespace "br" holding the
// bridge br0 (192.0.2.1/24 and 2001:db8::1/64, the containers' gateway and
// the peer the tests talk to) and, per container, a namespace whose eth0
// (a veth whose other end is a port of br0) has addresses in 192.0.2.0/24
// and 2001:db8::/64 (documentation ranges), a default route via 192.0.2.1
// and the topology's MTU.
type topology struct {
	t   *testing.T
	br  string
	mtu int
}

func newTopology(t *testing.T, mtu int) *topology {
	t.Helper()
	tp := &topology{t: t, br: e.prefix + "br", mtu: mtu}
	tp.addNS(tp.br)
	sh(t, "ip", "-n", tp.br, "link", "add", "br0", "mtu", fmt.Sprint(mtu), "type", "bridge")
	sh(t, "ip", "-n", tp.br, "addr", "add", "192.0.2.1/24", "dev", "br0")
	sh(t, "ip", "-n", tp.br, "addr", "add", "2001:db8::1/64", "dev", "br0", "nodad")
	sh(t, "ip", "-n", tp.br, "link", "set", "br0", "up")
	sh(t, "ip", "-n", tp.br, "link", "set", "lo", "up")
	return tp
}

func (tp *topology) addNS(name string) {
	tp.t.Helper()
	sh(tp.t, "ip", "netns", "add", name)
	tp.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tp.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

// container makes the namespace of a container with address addr (host
// part of 192.0.2.0/24) and returns its path.
func (tp *topology) container(name string, host int) string {
	t := tp.t
	t.Helper()
	ns := e.prefix + name
	tp.addNS(ns)
	port := fmt.Sprintf("p%s", name)
	sh(t, "ip", "-n", tp.br, "link", "add", port, "mtu", fmt.Sprint(tp.mtu), "type", "veth", "peer", "name", "eth0", "netns", ns)
	sh(t, "ip", "-n", tp.br, "link", "set", port, "master", "br0", "up")
	sh(t, "ip", "-n", ns, "link", "set", "eth0", "mtu", fmt.Sprint(tp.mtu), "up")
	sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	sh(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("192.0.2.%d/24", host), "dev", "eth0")
	sh(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("2001:db8::%d/64", host), "dev", "eth0", "nodad")
	sh(t, "ip", "-n", ns, "route", "add", "default", "via", "192.0.2.1")
	return "/run/netns/" + ns
}

// checkClean fails unless the namespace at path has no tap, no ingress
// qdisc and no nftables table (what cocoon adds) left.
func checkClean(t *testing.T, path string) {
	t.Helper()
	ns := filepath.Base(path)
	if out := sh(t, "ip", "-n", ns, "link", "show"); strings.Contains(out, "cocoon_tap") {
		t.Errorf("tap left in %s:\n%s", ns, out)
	}
	if out := sh(t, "tc", "-n", ns, "qdisc", "show", "dev", "eth0"); strings.Contains(out, "ingress") {
		t.Errorf("ingress qdisc left on eth0 in %s:\n%s", ns, out)
	}
	if out := sh(t, "ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Contains(out, "cocoon") {
		t.Errorf("port forwarding redirect left in %s:\n%s", ns, out)
	}
}

// inNS runs fn on a thread in the named namespace: sockets made there stay
// in it.
func inNS(t *testing.T, name string, fn func() error) error {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// bundle writes a bundle running script in the namespace at nsPath, with
// resolv.conf, hosts and hostname bind-mounted from files, as Docker and
// the CRI runtimes do.
func bundle(t *testing.T, nsPath, hostname, script string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"resolv.conf": "nameserver 192.0.2.53\nsearch cocoon.test\n",
		"hosts":       "127.0.0.1 localhost\n192.0.2.1 gateway.cocoon.test\n",
		"hostname":    hostname + "\n",
	}
	var mounts []specs.Mount
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: p, Options: []string{"rbind", "ro"}})
	}
	out, err := exec.Command(e.runtime, "--config", e.config, "--root", e.root, "spec", "--bundle", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("spec: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Root.Path = e.rootfs
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", script}
	s.Hostname = hostname
	s.Mounts = append(s.Mounts, mounts...)
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = nsPath
		}
	}
	if data, err = json.MarshalIndent(&s, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// running is a container run in the foreground (`cocoon-runtime run`).
type running struct {
	id   string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// start runs a container in the foreground in the background of the test;
// wait collects it. The container is force-deleted at the test's end.
func start(t *testing.T, id, bundle string) *running {
	t.Helper()
	r := &running{id: id, done: make(chan error, 1)}
	r.cmd = exec.Command(e.runtime, "--config", e.config, "--root", e.root, "run", "--bundle", bundle, id)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		_ = exec.Command(e.runtime, "--config", e.config, "--root", e.root, "delete", "--force", id).Run()
	})
	return r
}

// wait returns the container's output once it exited 0.
func (r *running) wait(t *testing.T) string {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Fatalf("container %s: %v: %s", r.id, err, r.out.String())
		}
	case <-time.After(commandTimeout):
		t.Fatalf("container %s did not exit: %s", r.id, r.out.String())
	}
	return r.out.String()
}

// dial connects from the named namespace to addr, retrying until the
// server listens, and returns what it sends.
func dial(t *testing.T, ns, addr string) string {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		var got string
		err := inNS(t, ns, func() error {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var buf bytes.Buffer
			_, err = buf.ReadFrom(c)
			got = buf.String()
			if got == "" {
				return fmt.Errorf("nothing received: %v", err)
			}
			return nil
		})
		if err == nil {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("connecting to %s from %s: %v", addr, ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// listen starts a TCP server in the named namespace that records the first
// line a client sends; the returned function waits for it.
func listen(t *testing.T, ns, addr string) func() string {
	t.Helper()
	var l net.Listener
	if err := inNS(t, ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(commandTimeout))
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(c)
		got <- buf.String()
	}()
	t.Cleanup(func() { l.Close() })
	return func() string {
		select {
		case s := <-got:
			return s
		case <-time.After(commandTimeout):
			t.Fatal("no client reached the peer's server")
			return ""
		}
	}
}

// ctx is a test context bounded by commandTimeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), commandTimeout)
	t.Cleanup(cancel)
	return c
}
