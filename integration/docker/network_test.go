//go:build integration

package docker_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// bridgeNetwork creates a user-defined bridge network (the daemon runs
// with --iptables=false and --bridge=none: this host's iptables cannot be
// used) on 198.51.100.0/24 and removes it at the test's end.
func bridgeNetwork(t *testing.T) string {
	t.Helper()
	name := "cocoonnet"
	mustDocker(t, "network", "create", "--driver", "bridge", "--subnet", "198.51.100.0/24",
		"--opt", "com.docker.network.bridge.name=cocoonbr0", name)
	t.Cleanup(func() {
		if r := docker(t, "network", "rm", name); r.code != 0 {
			t.Errorf("docker network rm: %v", r)
		}
		if out, _ := exec.Command("ip", "link", "show", "cocoonbr0").CombinedOutput(); strings.Contains(string(out), "cocoonbr0:") {
			t.Errorf("bridge left: %s", out)
		}
	})
	return name
}

// TestBridgeNetwork runs a cocoon container on a bridge network: it has
// the address Docker gave it, reaches a peer container (runc) on the
// network, and is reached by it.
func TestBridgeNetwork(t *testing.T) {
	nw := bridgeNetwork(t)
	peer := mustDocker(t, "run", "-d", "--runtime", "runc", "--network", nw, "--ip", "198.51.100.10", image,
		"sh", "-c", "echo from-peer | nc -l -p 7000; echo from-peer-again | nc -l -p 7001")
	t.Cleanup(func() { docker(t, "rm", "-f", peer) })
	r := docker(t, "run", "--rm", "--runtime", "cocoon", "--network", nw, "--ip", "198.51.100.20", image, "sh", "-c", `
echo "addr: $(ip -o addr show dev eth0 | grep 'inet ')"
echo "route: $(ip route | grep default)"
for i in $(seq 1 50); do
  if out=$(nc -w 10 198.51.100.10 7000 </dev/null) && [ -n "$out" ]; then echo "got: $out"; break; fi
  sleep 0.2
done`+"\n")
	t.Logf("cocoon container: %v", r)
	for _, want := range []string{"inet 198.51.100.20/24", "route: default via 198.51.100.1 dev eth0", "got: from-peer"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %v", want, r)
		}
	}
}

// TestBridgeNetworkServe: a peer container reaches a server in a cocoon
// container, and a port published with -p reaches it from the host
// (through docker-proxy, since the daemon has no iptables here).
func TestBridgeNetworkServe(t *testing.T) {
	nw := bridgeNetwork(t)
	id := mustDocker(t, "run", "-d", "--runtime", "cocoon", "--network", nw, "--ip", "198.51.100.21",
		"-p", "127.0.0.1:18321:8000", image, "sh", "-c", "while true; do echo from-cocoon | nc -l -p 8000; done")
	t.Cleanup(func() { docker(t, "rm", "-f", id) })
	// A sandbox with a NIC is restored from the template with one.
	restoredQEMU(t, id)
	var r result
	for i := 0; i < 50; i++ {
		r = docker(t, "run", "--rm", "--runtime", "runc", "--network", nw, image, "nc", "-w", "5", "198.51.100.21", "8000")
		if strings.Contains(r.stdout, "from-cocoon") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(r.stdout, "from-cocoon") {
		t.Fatalf("peer container could not reach the cocoon container: %v", r)
	}
	// The server is a loop of one-shot `nc -l`: between two of them
	// docker-proxy's connection is refused and the client sees EOF, so
	// try again, as for the peer above.
	var line string
	for i := 0; i < 50 && line != "from-cocoon\n"; i++ {
		line = readPublished(t, "127.0.0.1:18321")
		if line != "from-cocoon\n" {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if line != "from-cocoon\n" {
		t.Fatalf("published port sent %q", line)
	}
	fmt.Println("docker -p: published port reached the cocoon container")
}

// readPublished reads one line from a published port; "" on any error.
func readPublished(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Logf("published port: %v", err)
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Logf("published port: %q, %v", line, err)
	}
	return line
}
