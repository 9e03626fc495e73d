package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Addresses of the network bench: the container's namespace holds eth0
// (benchIP) whose veth peer, in a second namespace, is benchPeerIP.
const (
	benchIP     = "198.51.100.2"
	benchPeerIP = "198.51.100.1"
)

// netResult is one runtime's network numbers.
type netResult struct {
	toContainer, fromContainer []float64 // TCP throughput, Gbit/s
	rtt                        []float64 // ICMP round trip, ms
	failed                     []string  // errors of iperf3 runs that were retried
}

// network measures TCP throughput (iperf3, both directions) and round-trip
// latency (ping) between a peer namespace and a container in a CNI-style
// namespace joined to it by a veth pair, with runc and with cocoon-runtime
// on the same bundle and namespaces. runc's result is nil where runc is
// missing; both are nil (and a note printed) without iperf3.
func (b *bench) network(ctx context.Context, out, bin string, runs int) (runc, cocoon *netResult, err error) {
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		fmt.Println("network bench skipped: iperf3 is not installed (apt-get install iperf3)")
		return nil, nil, nil
	}
	rootfs := filepath.Join(b.work, "netrootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return nil, nil, err
	}
	if err := copyWithLibs(iperf, rootfs); err != nil {
		return nil, nil, err
	}
	prefix := fmt.Sprintf("cbench%d", os.Getpid()%100000)
	ct, peer := prefix+"ct", prefix+"peer"
	for _, ns := range []string{ct, peer} {
		if err := ipCmd("netns", "add", ns); err != nil {
			return nil, nil, err
		}
		defer ipCmd("netns", "del", ns) //nolint:errcheck // best effort
	}
	for _, args := range [][]string{
		{"-n", ct, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0", "netns", peer},
		{"-n", ct, "link", "set", "eth0", "up"},
		{"-n", ct, "link", "set", "lo", "up"},
		{"-n", ct, "addr", "add", benchIP + "/24", "dev", "eth0"},
		{"-n", peer, "link", "set", "peer0", "up"},
		{"-n", peer, "link", "set", "lo", "up"},
		{"-n", peer, "addr", "add", benchPeerIP + "/24", "dev", "peer0"},
	} {
		if err := ipCmd(args...); err != nil {
			return nil, nil, err
		}
	}
	bundle, err := netBundle(b.work, filepath.Join(bin, "cocoon-runtime"), rootfs, "/run/netns/"+ct)
	if err != nil {
		return nil, nil, err
	}
	config := filepath.Join(out, "configuration.toml")
	cocoonArgs := []string{filepath.Join(bin, "cocoon-runtime"), "--config", config, "--root", filepath.Join(b.work, "cocoon-net")}
	if runcBin, err := exec.LookPath("runc"); err == nil {
		if runc, err = measureNet(ctx, []string{runcBin, "--root", filepath.Join(b.work, "runc-net")}, bundle, peer, runs); err != nil {
			return nil, nil, fmt.Errorf("runc: %w", err)
		}
	}
	if cocoon, err = measureNet(ctx, cocoonArgs, bundle, peer, runs); err != nil {
		return nil, nil, fmt.Errorf("cocoon: %w", err)
	}
	return runc, cocoon, nil
}

// measureNet starts the iperf3 server container with runtime (argv
// prefix), measures from the peer namespace, and deletes it.
func measureNet(ctx context.Context, runtime []string, bundle, peer string, runs int) (*netResult, error) {
	id := fmt.Sprintf("bench-net-%d", os.Getpid())
	logf, err := os.Create(filepath.Join(bundle, "run.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, runtime[0], append(runtime[1:], "run", "-d", "--bundle", bundle, id)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		o, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("run -d: %w: %s", err, o)
	}
	defer exec.Command(runtime[0], append(runtime[1:], "delete", "--force", id)...).Run() //nolint:errcheck // best effort
	// Wait for the server: a probe connection would count as an iperf3
	// client, so the first test is retried until the server answers.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := iperfRun(ctx, peer, false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			o, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("the iperf3 server did not answer: %w: %s", err, o)
		}
		time.Sleep(500 * time.Millisecond)
	}
	r := &netResult{}
	for i := 0; i < runs; i++ {
		for _, reverse := range []bool{false, true} {
			var gbps float64
			for attempt := 0; ; attempt++ {
				if gbps, err = iperfRun(ctx, peer, reverse); err == nil {
					break
				}
				if attempt == 10 {
					o, _ := os.ReadFile(logf.Name())
					return nil, fmt.Errorf("%w: %s", err, o)
				}
				r.failed = append(r.failed, err.Error())
				time.Sleep(500 * time.Millisecond)
			}
			if reverse {
				r.fromContainer = append(r.fromContainer, gbps)
			} else {
				r.toContainer = append(r.toContainer, gbps)
			}
		}
		ms, err := pingAvg(ctx, peer)
		if err != nil {
			return nil, err
		}
		r.rtt = append(r.rtt, ms)
	}
	return r, nil
}

// iperfRun runs a 3-second iperf3 test from the peer namespace and returns
// the receiver's rate in Gbit/s; reverse makes the container send.
func iperfRun(ctx context.Context, peer string, reverse bool) (float64, error) {
	args := []string{"netns", "exec", peer, "iperf3", "-c", benchIP, "-t", "3", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	o, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil && len(o) == 0 {
		return 0, fmt.Errorf("iperf3: %w", err)
	}
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(o, &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3: %q, nothing received", res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

var pingRTT = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

// pingAvg pings the container 20 times from the peer and returns the
// average round trip in milliseconds.
func pingAvg(ctx context.Context, peer string) (float64, error) {
	o, err := exec.CommandContext(ctx, "ip", "netns", "exec", peer, "busybox", "ping", "-q", "-c", "20", "-i", "0.05", benchIP).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ping: %w: %s", err, o)
	}
	m := pingRTT.FindStringSubmatch(string(o))
	if m == nil {
		return 0, fmt.Errorf("ping output: %s", o)
	}
	return strconv.ParseFloat(m[1], 64)
}

// netBundle writes a bundle running an iperf3 server in the namespace.
func netBundle(work, runtime, rootfs, netns string) (string, error) {
	bundle := filepath.Join(work, "netbundle")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		return "", err
	}
	if o, err := exec.Command(runtime, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cocoon-runtime spec: %w: %s", err, o)
	}
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return "", err
	}
	spec["root"] = map[string]any{"path": rootfs}
	p := spec["process"].(map[string]any)
	p["terminal"] = false
	p["args"] = []string{"/usr/bin/iperf3", "-s"}
	// iperf3 maps a temporary file shared, which the guest's 9p mount of
	// the root file system refuses: /tmp is a tmpfs, as in most images.
	spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
		"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"},
	})
	for _, ns := range spec["linux"].(map[string]any)["namespaces"].([]any) {
		if m := ns.(map[string]any); m["type"] == "network" {
			m["path"] = netns
		}
	}
	if data, err = json.Marshal(spec); err != nil {
		return "", err
	}
	return bundle, os.WriteFile(path, data, 0o644)
}

// copyWithLibs copies a dynamically linked binary and the libraries ldd
// lists into rootfs, at the same paths.
func copyWithLibs(binary, rootfs string) error {
	o, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", binary, err)
	}
	files := []string{binary}
	for _, line := range strings.Split(string(o), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return err
		}
		dst := filepath.Join(rootfs, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func ipCmd(args ...string) error {
	if o, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, o)
	}
	return nil
}

// netRows prints the network rows and the cocoon/runc ratios of the
// medians.
func netRows(runc, cocoon *netResult) {
	if cocoon == nil {
		return
	}
	type pair struct {
		name         string
		runc, cocoon []float64
	}
	var rs []pair
	if runc != nil {
		rs = []pair{
			{"TCP peer->container (Gbit/s)", runc.toContainer, cocoon.toContainer},
			{"TCP container->peer (Gbit/s)", runc.fromContainer, cocoon.fromContainer},
			{"ICMP round trip (ms)", runc.rtt, cocoon.rtt},
		}
	}
	for _, p := range rs {
		row("runc: "+p.name, p.runc)
		row("cocoon: "+p.name, p.cocoon)
	}
	if runc == nil {
		row("cocoon: TCP peer -> container (Gbit/s)", cocoon.toContainer)
		row("cocoon: TCP container -> peer (Gbit/s)", cocoon.fromContainer)
		row("cocoon: ICMP round trip (ms)", cocoon.rtt)
		return
	}
	fmt.Printf("\niperf3 runs retried after an error: runc %d %q, cocoon %d %q\n", len(runc.failed), runc.failed, len(cocoon.failed), cocoon.failed)
	for _, p := range rs {
		fmt.Printf("cocoon / runc, medians, %s: %.3f\n", p.name, median(p.cocoon)/median(p.runc))
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
