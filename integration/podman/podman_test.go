//go:build integration

// Package podman_test runs containers with Debian's podman (4.3) and
// cocoon-runtime as its OCI runtime, the way a user would:
//
//	podman --runtime /path/to/cocoon-runtime --cgroup-manager cgroupfs run ...
//
// against a private store (--root, --runroot, a private CONTAINERS_CONF and
// storage.conf, vfs), a busybox image imported from the host's
// busybox-static (no registry is reachable), and a private default "podman"
// network (CNI bridge + host-local, its IPAM state in the suite's tmp).
// Nothing is left behind: no containers, mounts, network namespaces,
// bridge, CNI state, cgroups or processes.
package podman_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hostcgroup"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

const (
	image          = "localhost/busybox:cocoon"
	commandTimeout = 3 * time.Minute
	bridge         = "cocoonpm0"
	subnet         = "203.0.113" // TEST-NET-3: .1 is the bridge
)

// The suite's podman: set once by TestMain.
var (
	podmanPath string
	globals    []string // global flags of every podman command
	env        []string // podman's environment
	cgParent   string   // --cgroup-parent of every container
	tmp        string
	rtRoot     string // cocoon-runtime --root
	guestRel   string // out/kernel.release
)

// Host paths that podman or CNI create on first use, outside the private
// roots: removed after the suite when it created them.
var sharedPaths = []string{"/var/lib/containers", "/var/lib/cni", "/run/containers", "/run/libpod"}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	rel, err := os.ReadFile(filepath.Join(out, "kernel.release"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	guestRel = strings.TrimSpace(string(rel))
	if podmanPath, err = exec.LookPath("podman"); err != nil {
		fmt.Fprintln(os.Stderr, "podman not found (packaging/deps.sh installs it):", err)
		return 1
	}
	preexisting := map[string]bool{}
	for _, p := range sharedPaths {
		if _, err := os.Stat(p); err == nil {
			preexisting[p] = true
		}
	}
	netnsBefore := netns()
	if tmp, err = os.MkdirTemp("", "cocoon-podman"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := configure(bin, out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	imp := exec.Command("sh", "-c", fmt.Sprintf("tar -C %s -c . | %s %s import - %s",
		rootfs, podmanPath, strings.Join(globals, " "), image))
	imp.Env = env
	if out, err := imp.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "podman import: %v: %s\n", err, out)
		return 1
	}
	// conmon double-forks: the suite adopts it (and the shims, QEMU and
	// the proxy) as podman's caller's init would.
	return testutil.RunAdopting(m, func() error {
		return leftovers(preexisting, netnsBefore)
	})
}

// configure writes the private configuration under tmp and sets globals.
func configure(bin, out string) error {
	rtRoot = filepath.Join(tmp, "rt")
	cgParent = fmt.Sprintf("/cocoon-podman-%d", os.Getpid())
	for _, d := range []string{"bin", "net", "ipam", "tmp", "volumes"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o700); err != nil {
			return err
		}
	}
	conf := filepath.Join(tmp, "containers.conf")
	storage := filepath.Join(tmp, "storage.conf")
	files := map[string]string{
		conf: fmt.Sprintf(`[containers]
log_driver = "k8s-file"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "%[1]s/tmp"
volume_path = "%[1]s/volumes"
static_dir = "%[1]s/static"
[network]
network_backend = "cni"
network_config_dir = "%[1]s/net"
`, tmp),
		storage: fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = \"%[1]s/root\"\nrunroot = \"%[1]s/runroot\"\n", tmp),
		// The default network, "podman": a bridge without NAT (no
		// iptables here), its IPAM state in tmp.
		filepath.Join(tmp, "net", "podman.conflist"): fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "podman",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "dataDir": "%s/ipam", "routes": [{"dst": "0.0.0.0/0"}],
             "ranges": [[{"subnet": "%s.0/24", "gateway": "%s.1"}]]}
  }]
}
`, bridge, tmp, subnet, subnet),
	}
	// Podman's exit command (conmon runs `podman container cleanup` when
	// the container exits) drops --runtime-flag: the suite's root and
	// configuration go in the runtime's path instead, as an installed
	// cocoon has them in /run/cocoon and /etc/cocoon.
	runtime := filepath.Join(tmp, "bin", "cocoon-runtime")
	files[runtime] = fmt.Sprintf("#!/bin/sh\nexec %s --root %s --config %s \"$@\"\n",
		filepath.Join(bin, "cocoon-runtime"), rtRoot, filepath.Join(out, "configuration.toml"))
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o755); err != nil {
			return err
		}
	}
	env = append(os.Environ(), "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+storage)
	globals = []string{
		"--root", filepath.Join(tmp, "root"), "--runroot", filepath.Join(tmp, "runroot"),
		"--cgroup-manager", "cgroupfs", "--tmpdir", filepath.Join(tmp, "tmp"),
		"--network-config-dir", filepath.Join(tmp, "net"), "--network-backend", "cni",
		"--storage-driver", "vfs", "--events-backend", "none",
		"--runtime", runtime,
	}
	return nil
}

// netns lists /run/netns.
func netns() map[string]bool {
	names := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

// leftovers removes and reports what the suite left: containers, cocoon
// state, processes, mounts under tmp, network namespaces, the bridge, and
// cgroups (podman's conmon cgroup under the suite's parent is podman's and
// is removed; a container's cgroup left there is cocoon's and reported).
func leftovers(preexisting, netnsBefore map[string]bool) error {
	var problems []string
	if out, err := podmanOut("ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
		problems = append(problems, "containers left: "+strings.Join(strings.Fields(out), " "))
		for _, id := range strings.Fields(out) {
			_, _ = podmanOut("rm", "-f", "-t", "0", id)
		}
	}
	if entries, _ := os.ReadDir(rtRoot); len(entries) > 0 {
		problems = append(problems, fmt.Sprintf("%s not empty: %d entries", rtRoot, len(entries)))
	}
	vm := testutil.SandboxRoot(rtRoot)
	if _, err := os.Stat(vm); err == nil {
		problems = append(problems, vm+" still exists")
	}
	for _, p := range append(testutil.ProcessesOf(vm), testutil.ProcessesOf(tmp)...) {
		problems = append(problems, "process left: "+p)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], tmp+"/") {
			problems = append(problems, "mount left: "+f[4])
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
	// podman's cleanup of a container's network namespace may still run
	// (conmon's exit command, `podman container cleanup`) when `podman
	// rm -f` has returned.
	newNetns := func() []string {
		var left []string
		for name := range netns() {
			if !netnsBefore[name] {
				left = append(left, name)
			}
		}
		return left
	}
	for deadline := time.Now().Add(10 * time.Second); len(newNetns()) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range newNetns() {
		problems = append(problems, "network namespace left: "+name)
	}
	// The CNI bridge plugin never removes its bridge: podman leaves it.
	if out, _ := exec.Command("ip", "link", "del", bridge).CombinedOutput(); len(out) > 0 && !strings.Contains(string(out), "Cannot find device") {
		problems = append(problems, fmt.Sprintf("removing %s: %s", bridge, out))
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgParent)
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			if e.Name() != "conmon" {
				problems = append(problems, "cgroup left: "+filepath.Join(dir, e.Name()))
			}
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
		if err := os.Remove(dir); err != nil {
			problems = append(problems, fmt.Sprintf("removing cgroup %s: %v", dir, err))
		}
	}
	for _, p := range sharedPaths {
		if !preexisting[p] {
			if err := os.RemoveAll(p); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// result is what a podman command left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, podmanPath, append(append([]string{}, globals...), args...)...)
	cmd.Env = env
	return cmd
}

func podmanOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	out, err := command(ctx, args...).Output()
	return string(out), err
}

// podmanIn runs podman with the suite's flags, and stdin if given.
func podmanIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := testutil.RunClient(t, commandTimeout, stdin, func(ctx context.Context) *exec.Cmd { return command(ctx, args...) })
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
}

func podman(t *testing.T, args ...string) result {
	t.Helper()
	return podmanIn(t, "", args...)
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	r := podman(t, args...)
	if r.code != 0 {
		t.Fatalf("podman %v: %v", args, r)
	}
	return strings.TrimSpace(r.stdout)
}

// runArgs are `podman run` with the suite's cgroup parent, opts and image.
func runArgs(run []string, opts []string, cmd ...string) []string {
	args := append(append(append(run, "--cgroup-parent", cgParent), opts...), image)
	return append(args, cmd...)
}

// detached starts a container with `podman run -d`, removed at the end of
// the test.
func detached(t *testing.T, opts []string, cmd ...string) string {
	t.Helper()
	id := mustPodman(t, runArgs([]string{"run", "-d"}, opts, cmd...)...)
	t.Cleanup(func() { podman(t, "rm", "-f", "-t", "0", id) })
	return id
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRun: run --rm in the guest (its kernel, the exit code); -v with a
// host directory both ways; the default bridge network (the address CNI
// gave, the bridge reached).
func TestRun(t *testing.T) {
	r := podman(t, runArgs([]string{"run", "--rm"}, nil, "uname", "-r")...)
	if r.code != 0 || strings.TrimSpace(r.stdout) != guestRel {
		t.Fatalf("uname -r: %v, want the guest's %q", r, guestRel)
	}
	if r := podman(t, runArgs([]string{"run", "--rm"}, nil, "sh", "-c", "exit 3")...); r.code != 3 {
		t.Errorf("exit 3: %v", r)
	}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = podman(t, runArgs([]string{"run", "--rm"}, []string{"-v", vol + ":/data"},
		"sh", "-c", "cat /data/in; echo from-container > /data/out")...)
	if r.code != 0 || r.stdout != "from-host" {
		t.Errorf("-v: %v", r)
	}
	if got, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(got) != "from-container\n" {
		t.Errorf("-v: the host reads %q (%v)", got, err)
	}
	r = podman(t, runArgs([]string{"run", "--rm"}, nil, "sh", "-c",
		"ip -o -4 addr show dev eth0; ip route | grep default; ping -c 1 -W 10 "+subnet+".1 >/dev/null && echo reached")...)
	for _, want := range []string{"inet " + subnet + ".", "default via " + subnet + ".1 dev eth0", "reached"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("default network: output lacks %q: %v", want, r)
		}
	}
}

// TestDetachedLifecycle: run -d, logs, exec, exec -i, stop (TERM ignored
// by sh as PID 1: KILL after -t), start again, rm.
func TestDetachedLifecycle(t *testing.T) {
	id := detached(t, nil, "sh", "-c", "echo started; while true; do sleep 1; done")
	waitFor(t, func() bool { return podman(t, "logs", id).stdout == "started\n" }, "logs to show started")
	if got := mustPodman(t, "exec", id, "sh", "-c", "echo out; echo err >&2; exit 0"); got != "out" {
		t.Errorf("exec: %q", got)
	}
	if r := podman(t, "exec", id, "sh", "-c", "exit 5"); r.code != 5 {
		t.Errorf("exec exit 5: %v", r)
	}
	if r := podmanIn(t, "piped\n", "exec", "-i", id, "cat"); r.code != 0 || r.stdout != "piped\n" {
		t.Errorf("exec -i cat: %v", r)
	}
	checkTop(t, id)
	start := time.Now()
	mustPodman(t, "stop", "-t", "2", id)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("stop -t 2 took %v: TERM should have been ignored", d)
	}
	if got := mustPodman(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id); got != "exited 137" {
		t.Errorf("after stop: %q", got)
	}
	mustPodman(t, "start", id)
	waitFor(t, func() bool { return podman(t, "logs", id).stdout == "started\nstarted\n" }, "logs to show the second start")
	if got := mustPodman(t, "exec", id, "echo", "again"); got != "again" {
		t.Errorf("exec after start: %q", got)
	}
	mustPodman(t, "rm", "-f", "-t", "0", id)
	if r := podman(t, "inspect", id); r.code == 0 {
		t.Errorf("inspect after rm: %v", r)
	}
}

// checkTop checks what each form of podman top shows of container id, whose
// init runs "while true". Without descriptors, and with descriptors that
// psgo knows, podman lists the processes of the /proc that it finds in the
// container PID's mount namespace: cocoon's relay has a PID namespace and
// a /proc of its own, so that lists the relay alone, as PID 1, and none of
// the host's processes. With ps(1) options that psgo lacks, podman runs ps
// in the container, which lists the container's processes.
func checkTop(t *testing.T, id string) {
	t.Helper()
	for _, args := range [][]string{nil, {"pid", "ppid", "comm", "args"}} {
		r := podman(t, append([]string{"top", id}, args...)...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 {
			t.Errorf("top %v: want a header and the relay's line: %v", args, r)
			continue
		}
		// Columns may be empty (TTY: the relay has none), so the command
		// is found by name, after the PID.
		head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
		pid := slices.Index(head, "PID")
		isRelay := func(f string) bool { return strings.HasSuffix(f, "cocoon-relay") }
		if pid < 0 || len(row) <= pid || row[pid] != "1" || !slices.ContainsFunc(row[pid+1:], isRelay) {
			t.Errorf("top %v: want PID 1 and COMMAND cocoon-relay: %v", args, r)
		}
	}
	for _, args := range [][]string{{"-o", "pid,args"}, {"-ef"}} {
		r := podman(t, append([]string{"top", id}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, "while true") || strings.Contains(r.stdout, "cocoon-") || strings.Contains(r.stdout, "qemu") {
			t.Errorf("top %v: want ps's listing of the container's processes: %v", args, r)
		}
	}
}

// TestCopy: podman cp to and from a running container works on the
// container's root file system (it works in the mount namespace of the
// container PID, whose root is the relay's: the container's root on the
// host), and never on the host's files.
func TestCopy(t *testing.T) {
	id := detached(t, nil, "sh", "-c", "echo from the container > /fromctr; echo ready; exec sleep 1000")
	waitFor(t, func() bool { return podman(t, "logs", id).stdout == "ready\n" }, "the container to write its file")
	dir := t.TempDir()
	src := filepath.Join(dir, "in")
	if err := os.WriteFile(src, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostPath := "/cocoon-podman-cp-" + id[:12]
	mustPodman(t, "cp", src, id+":"+hostPath)
	if _, err := os.Stat(hostPath); err == nil {
		os.Remove(hostPath)
		t.Fatalf("podman cp into the container wrote the host's %s", hostPath)
	}
	if got := mustPodman(t, "exec", id, "cat", hostPath); got != "from the host" {
		t.Errorf("the copied file in the container: %q", got)
	}
	out := filepath.Join(dir, "out")
	mustPodman(t, "cp", id+":/fromctr", out)
	if b, err := os.ReadFile(out); err != nil || string(b) != "from the container\n" {
		t.Errorf("podman cp out of the container: %q, %v", b, err)
	}
}

// TestHostCgroup: the container's cgroup (the one podman names, under
// --cgroup-parent) holds the relays with the container's limits exactly, as
// with runc; QEMU and the proxy run in the overhead cgroup beside it, with
// the limits plus the VM's overhead; podman stats shows the spec's limit
// and the VM's usage (podman 4.3 reads the cgroup of the pids line of the
// container's PID, which is the overhead cgroup's on cgroup v1); rm
// removes both.
func TestHostCgroup(t *testing.T) {
	id := detached(t, []string{"--memory", "64m", "--pids-limit", "100"}, "sleep", "1000")
	pid := mustPodman(t, "inspect", "-f", "{{.State.Pid}}", id)
	own, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	want := cgParent + "/libpod-" + id
	memDir := ""
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		// A relay's threads count with the VM's (cgroup v1's pids).
		if w := want; f[2] != w && (f[1] != "pids" || f[2] != w+".vmm") {
			t.Errorf("the container's process %s is in %q, want %q", pid, line, w)
		}
		if f[1] == "memory" {
			memDir = "/sys/fs/cgroup/memory" + f[2]
		}
	}
	if memDir == "" {
		memDir = "/sys/fs/cgroup" + want // cgroup v2
	}
	comms, guestMiB := map[string]string{}, 0
	for _, dir := range []string{memDir, memDir + ".vmm"} {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range strings.Fields(string(procs)) {
			comm, _ := os.ReadFile("/proc/" + p + "/comm")
			comms[strings.TrimSpace(string(comm))] = dir
			cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
			args := strings.Split(string(cmdline), "\x00")
			for i, a := range args {
				if a == "-m" && i+1 < len(args) && strings.HasPrefix(string(comm), "qemu") {
					guestMiB, _ = strconv.Atoi(args[i+1])
				}
			}
		}
	}
	for c, dir := range map[string]string{"qemu-system-x86": memDir + ".vmm", "cocoon-proxy": memDir + ".vmm", "cocoon-relay": memDir} {
		if comms[c] != dir {
			t.Errorf("%s is in %q, want %s: %v", c, comms[c], dir, comms)
		}
	}
	if guestMiB == 0 {
		t.Fatalf("no QEMU -m in the cgroup's processes %v", comms)
	}
	limit := int64(64 << 20)
	vmmLimit := hostcgroup.Resources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}, guestMiB).Memory
	limitFile := "memory.limit_in_bytes"
	if _, err := os.Stat(filepath.Join(memDir, limitFile)); err != nil {
		limitFile = "memory.max"
	}
	for dir, want := range map[string]int64{memDir: limit, memDir + ".vmm": vmmLimit} {
		if got, _ := os.ReadFile(filepath.Join(dir, limitFile)); strings.TrimSpace(string(got)) != strconv.FormatInt(want, 10) {
			t.Errorf("%s/%s %q, want %d", dir, limitFile, got, want)
		}
	}

	// "175.1MB / 67.11MB" (the limit is the spec's), "27".
	var stats []struct {
		MemUsage string `json:"mem_usage"`
		PIDs     string `json:"pids"`
	}
	out := mustPodman(t, "stats", "--no-stream", "--format", "json", id)
	if err := json.Unmarshal([]byte(out), &stats); err != nil || len(stats) != 1 {
		t.Fatalf("podman stats --format json: %v: %s", err, out)
	}
	t.Logf("podman stats: %s", mustPodman(t, "stats", "--no-stream", id))
	usage, err := parseSize(strings.Fields(stats[0].MemUsage)[0])
	if err != nil {
		t.Fatal(err)
	}
	pids, err := strconv.Atoi(stats[0].PIDs)
	if err != nil {
		t.Fatal(err)
	}
	vmMax := float64(guestMiB)*(1<<20) + float64(vmmLimit-limit)
	if usage == 0 || usage > vmMax || pids == 0 || !strings.HasSuffix(stats[0].MemUsage, "/ 67.11MB") {
		t.Errorf("podman stats: memory %s (want within the VM's %.0f bytes, of the 64 MiB limit), pids %d (want > 0)", stats[0].MemUsage, vmMax, pids)
	}

	mustPodman(t, "rm", "-f", "-t", "0", id)
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + want + "*")
	if d, _ := filepath.Glob("/sys/fs/cgroup" + want + "*"); len(d) > 0 {
		dirs = append(dirs, d...)
	}
	if len(dirs) > 0 {
		t.Errorf("cgroups left after rm: %v", dirs)
	}
}

// parseSize reads podman's sizes: "175.1MB", "3kB", "0B".
func parseSize(s string) (float64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"B", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("size %q: %w", s, err)
			}
			return v * u.mult, nil
		}
	}
	return 0, fmt.Errorf("size %q: no unit", s)
}

// TestTerminal: run -it with a shell on a pty, a resize seen by stty.
func TestTerminal(t *testing.T) {
	term := startTerminal(t, runArgs([]string{"run", "-it", "--rm"}, nil, "sh")...)
	term.Session(t, false)
}

// startTerminal runs the client with args on a new pty.
func startTerminal(t *testing.T, args ...string) *testutil.Terminal {
	t.Helper()
	return testutil.StartTerminal(t, command(context.Background(), args...))
}
