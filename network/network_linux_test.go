package network

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ip runs the ip(8) command; tests build their namespaces the way a CNI
// plugin would, with the usual tool.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// pair makes namespaces <name>-a and <name>-b joined by a veth pair
// (eth0 in a, 192.0.2.2/24, MTU 1400; peer in b, 192.0.2.1/24) and returns
// a's path. Both are removed when the test ends.
func pair(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	name := fmt.Sprintf("cocoontest%d", os.Getpid()%100000)
	a, b := name+"-a", name+"-b"
	ip(t, "netns", "add", a)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", a).Run() })
	ip(t, "netns", "add", b)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", b).Run() })
	ip(t, "-n", a, "link", "add", "eth0", "address", "02:00:c0:00:02:02", "mtu", "1400", "type", "veth", "peer", "name", "peer0", "netns", b)
	ip(t, "-n", b, "link", "set", "peer0", "mtu", "1400", "up")
	ip(t, "-n", b, "addr", "add", "192.0.2.1/24", "dev", "peer0")
	ip(t, "-n", a, "link", "set", "eth0", "up")
	ip(t, "-n", a, "link", "set", "lo", "up")
	ip(t, "-n", a, "addr", "add", "192.0.2.2/24", "dev", "eth0")
	ip(t, "-n", a, "route", "add", "default", "via", "192.0.2.1")
	ip(t, "-n", a, "route", "add", "198.51.100.0/24", "via", "192.0.2.1", "src", "192.0.2.2")
	ip(t, "-n", a, "neigh", "add", "192.0.2.9", "lladdr", "02:00:c0:00:02:09", "dev", "eth0", "nud", "permanent")
	return filepath.Join("/run/netns", a)
}

func TestScan(t *testing.T) {
	path := pair(t)
	cfg, err := Scan(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Interfaces: []Interface{{Name: "eth0", MAC: "02:00:c0:00:02:02", MTU: 1400, Addresses: []string{"192.0.2.2/24"}}},
		Routes: []Route{
			{Device: "eth0", Gateway: "192.0.2.1", Family: 4},
			{Device: "eth0", Destination: "198.51.100.0/24", Gateway: "192.0.2.1", Source: "192.0.2.2", Family: 4},
		},
		Neighbors: []Neighbor{{IP: "192.0.2.9", MAC: "02:00:c0:00:02:09", Device: "eth0"}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Scan = %+v\nwant %+v", cfg, want)
	}
	if cfg.Empty() {
		t.Fatal("Empty() = true for a namespace with a veth")
	}
}

func TestScanLoopbackOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	name := fmt.Sprintf("cocoontestlo%d", os.Getpid()%100000)
	ip(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	cfg, err := Scan("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Empty() {
		t.Fatalf("Scan of a loopback-only namespace = %+v, want no interfaces", cfg)
	}
}

func TestScanErrors(t *testing.T) {
	if _, err := Scan("/nonexistent/ns"); err == nil || !strings.Contains(err.Error(), "/nonexistent/ns") {
		t.Fatalf("Scan of a missing path: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Scan(f); err == nil {
		t.Fatal("Scan of a plain file: no error")
	}
}

// TestSetupMirrors checks both directions through a real tap: a packet the
// peer namespace sends to the veth comes out of the tap's descriptor, and a
// frame written to the tap reaches the peer. Then Teardown leaves nothing.
func TestSetupMirrors(t *testing.T) {
	path := pair(t)
	peerNS := strings.TrimSuffix(filepath.Base(path), "-a") + "-b"
	cfg, err := Scan(path)
	if err != nil {
		t.Fatal(err)
	}
	// A stale tap and filter, as a crashed run leaves them.
	stale, err := Setup(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stale[0].Tap.Close() // the VMM crashed: its tap goes
	links, err := Setup(path, cfg)
	if err != nil {
		t.Fatalf("Setup over a crashed run's leftovers: %v", err)
	}
	defer Close(links)
	if len(links) != 1 || links[0].TapName != TapPrefix+"0" || links[0].HardwareAddr.String() != "02:00:c0:00:02:02" {
		t.Fatalf("links = %+v", links)
	}
	out := ip(t, "-n", filepath.Base(path), "-d", "link", "show", TapPrefix+"0")
	if !strings.Contains(out, "mtu 1400") || !strings.Contains(out, "tun type tap") {
		t.Fatalf("tap: %s", out)
	}
	for _, dev := range []string{"eth0", TapPrefix + "0"} {
		out, err := exec.Command("tc", "-n", filepath.Base(path), "filter", "show", "dev", dev, "ingress").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "mirred (Egress Redirect to device") {
			t.Fatalf("tc filter show dev %s: %v: %s", dev, err, out)
		}
	}

	// Peer -> veth -> tap: the peer's ARP request for 192.0.2.2.
	_ = exec.Command("ip", "netns", "exec", peerNS, "ping", "-c", "1", "-W", "1", "192.0.2.2").Start()
	tap := links[0].Tap
	if err := tap.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	peerMAC := linkMAC(t, peerNS, "peer0")
	for {
		n, err := tap.Read(buf)
		if err != nil {
			t.Fatalf("reading the tap: %v (nothing mirrored from the veth)", err)
		}
		// vnet header (10 bytes), then the Ethernet frame.
		if n > 10+14 && bytes.Equal(buf[10+6:10+12], peerMAC) {
			break
		}
	}

	// Tap -> veth -> peer: a broadcast frame with a source MAC the peer
	// learns nothing from, counted on the peer's receive side.
	before := rxPackets(t, peerNS, "peer0")
	frame := make([]byte, 10+60)
	copy(frame[10:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0xc0, 0, 2, 2, 0x88, 0xb5})
	if _, err := tap.Write(frame); err != nil {
		t.Fatalf("writing the tap: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rxPackets(t, peerNS, "peer0") == before {
		if time.Now().After(deadline) {
			t.Fatal("a frame written to the tap did not reach the peer")
		}
		time.Sleep(20 * time.Millisecond)
	}

	Close(links)
	if err := Teardown(path, cfg); err != nil {
		t.Fatal(err)
	}
	out = ip(t, "-n", filepath.Base(path), "link", "show")
	if strings.Contains(out, TapPrefix) {
		t.Fatalf("tap left after Teardown: %s", out)
	}
	q, _ := exec.Command("tc", "-n", filepath.Base(path), "qdisc", "show", "dev", "eth0").CombinedOutput()
	if strings.Contains(string(q), "ingress") {
		t.Fatalf("ingress qdisc left after Teardown: %s", q)
	}
	// Teardown is idempotent, and a vanished namespace has nothing left.
	if err := Teardown(path, cfg); err != nil {
		t.Fatal(err)
	}
	if err := Teardown("/run/netns/cocoon-no-such-ns", cfg); err != nil {
		t.Fatalf("Teardown of a missing namespace: %v", err)
	}
}

// TestSetupKeepsForeignIngress refuses to remove an ingress qdisc that
// holds someone else's filter.
func TestSetupKeepsForeignIngress(t *testing.T) {
	path := pair(t)
	ns := filepath.Base(path)
	if out, err := exec.Command("tc", "-n", ns, "qdisc", "add", "dev", "eth0", "ingress").CombinedOutput(); err != nil {
		t.Fatalf("tc qdisc add: %v: %s", err, out)
	}
	if out, err := exec.Command("tc", "-n", ns, "filter", "add", "dev", "eth0", "parent", "ffff:", "u32", "match", "u8", "0", "0", "flowid", "ffff:1").CombinedOutput(); err != nil {
		t.Fatalf("tc filter add: %v: %s", err, out)
	}
	cfg, err := Scan(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(path, cfg); err == nil || !strings.Contains(err.Error(), "did not add") {
		t.Fatalf("Setup over a foreign filter: %v", err)
	}
	if out := ip(t, "-n", ns, "link", "show"); strings.Contains(out, TapPrefix) {
		t.Fatalf("tap left after a failed Setup: %s", out)
	}
}

func linkMAC(t *testing.T, ns, dev string) net.HardwareAddr {
	return linkIn(t, ns, dev).Attrs().HardwareAddr
}

func rxPackets(t *testing.T, ns, dev string) uint64 {
	return linkIn(t, ns, dev).Attrs().Statistics.RxPackets
}

// linkIn looks dev up in the named namespace.
func linkIn(t *testing.T, ns, dev string) netlink.Link {
	t.Helper()
	h, err := handleIn(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func handleIn(ns string) (*netlink.Handle, error) {
	h, err := openNS("/run/netns/" + ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
}
