//go:build integration

// Package docker_test runs containers with a real Docker daemon (Debian's
// docker.io) and cocoon-runtime registered as its "cocoon" runtime, the
// way a user would: a private dockerd with its own data root, exec root,
// socket and pid file, a busybox image imported from the host's
// busybox-static, and `docker run --runtime cocoon --network none`. VM
// templates are on: every sandbox is restored from a template that the
// first one of its shape made.
package docker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hostcgroup"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

const (
	image          = "busybox:cocoon"
	commandTimeout = 3 * time.Minute
)

// The daemon of the suite: set once by TestMain.
var (
	dockerCLI string // Debian's docker client
	socket    string // -H unix://socket
	execRoot  string // dockerd --exec-root
	dataRoot  string // dockerd --data-root
	guestRel  string // out/kernel.release: what `uname -r` prints in a guest
	templates *testutil.Templates
)

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
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerd not found (packaging/deps.sh installs docker.io):", err)
		return 1
	}
	// Debian's client: another docker in $PATH may be too new for 20.10.
	dockerCLI = "/usr/bin/docker"
	if _, err := os.Stat(dockerCLI); err != nil {
		if dockerCLI, err = exec.LookPath("docker"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	tmp, err := os.MkdirTemp("", "cocoon-docker")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	socket = filepath.Join(tmp, "docker.sock")
	execRoot = filepath.Join(tmp, "exec")
	dataRoot = filepath.Join(tmp, "data")
	// The suite runs with VM templates on, in a template directory of
	// its own: every sandbox is restored from a template.
	templates, err = testutil.NewTemplates(filepath.Join(bin, "cocoon-runtime"), filepath.Join(out, "configuration.toml"), tmp)
	if err == nil {
		err = templates.Init()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The same templates, with runtime.host_namespaces = "guest".
	hostNSConfig := filepath.Join(tmp, "configuration-hostns.toml")
	if err := testutil.DeriveConfig(templates.Config, hostNSConfig, testutil.GuestNamespaces); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	config := filepath.Join(tmp, "daemon.json")
	daemonJSON, _ := json.Marshal(map[string]any{
		"runtimes": map[string]any{
			"cocoon": map[string]any{
				"path":        filepath.Join(bin, "cocoon-runtime"),
				"runtimeArgs": []string{"--config", templates.Config},
			},
			// Host namespaces allowed (TestHostNamespaces).
			"cocoon-hostns": map[string]any{
				"path":        filepath.Join(bin, "cocoon-runtime"),
				"runtimeArgs": []string{"--config", hostNSConfig},
			},
			// The same templates, and the pool (TestPool).
			"cocoon-pool": map[string]any{
				"path":        filepath.Join(bin, "cocoon-runtime"),
				"runtimeArgs": []string{"--config", templates.PoolConfig},
			},
		},
	})
	if err := os.WriteFile(config, daemonJSON, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logFile, err := os.Create(filepath.Join(tmp, "dockerd.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer logFile.Close()
	pidFile := filepath.Join(tmp, "docker.pid")
	d := exec.Command(dockerd, "--config-file", config, "--data-root", dataRoot, "--exec-root", execRoot,
		"-H", "unix://"+socket, "--pidfile", pidFile, "--iptables=false", "--bridge=none")
	d.Stdout, d.Stderr = logFile, logFile
	d.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := d.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting dockerd:", err)
		return 1
	}
	exited := make(chan struct{})
	go func() { _ = d.Wait(); close(exited) }()
	code := func() int {
		defer stopDaemon(d.Process.Pid, exited, tmp)
		if err := waitDaemon(exited); err != nil {
			fmt.Fprintln(os.Stderr, err)
			dumpLog(logFile.Name())
			return 1
		}
		rootfs := filepath.Join(tmp, "rootfs")
		if err := testutil.BusyboxRootfs(rootfs); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		imp := fmt.Sprintf("tar -C %s -c . | %s -H unix://%s import - %s", rootfs, dockerCLI, socket, image)
		if out, err := exec.Command("sh", "-c", imp).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "docker import: %v: %s\n", err, out)
			return 1
		}
		code := m.Run()
		if code != 0 {
			dumpLog(logFile.Name())
		}
		// One template: the sandbox of every Docker container makes the
		// network namespace that Docker's hook fills (or leaves with
		// loopback only, --network none), with one NIC. While dockerd
		// still runs, so that its cleanup cannot hide a template's mount.
		if err := templates.Destroy(1); err != nil {
			fmt.Fprintln(os.Stderr, "after the suite:", err)
			code = 1
		}
		return code
	}()
	if err := leftovers(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "after the suite:", err)
		code = 1
	}
	return code
}

// waitDaemon waits until dockerd answers on its socket.
func waitDaemon(exited chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("dockerd exited")
		default:
		}
		if exec.Command(dockerCLI, "-H", "unix://"+socket, "version").Run() == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("dockerd did not answer on %s within a minute", socket)
}

// stopDaemon removes what containers are left, stops dockerd by its PID
// (TERM, then KILL), and unmounts what it left under tmp.
func stopDaemon(pid int, exited chan struct{}, tmp string) {
	if out, err := exec.Command(dockerCLI, "-H", "unix://"+socket, "ps", "-aq").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command(dockerCLI, "-H", "unix://"+socket, "rm", "-f", id).Run()
		}
	}
	_ = unix.Kill(pid, unix.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = unix.Kill(pid, unix.SIGKILL)
		<-exited
	}
	// Deepest first.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], tmp+"/") {
			under = append(under, f[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		_ = unix.Unmount(under[i], unix.MNT_DETACH)
	}
}

func dumpLog(path string) {
	data, _ := os.ReadFile(path)
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	fmt.Fprintf(os.Stderr, "--- dockerd log tail:\n%s\n", data)
}

// leftovers reports cocoon state and processes the suite left. Docker's
// containerd shim runs cocoon-runtime with --root <exec-root>/runtime-<name>/moby
// (seen with both runtime-cocoon and runtime-runc); sandboxes live under
// /run/cocoon/.vm/<hash of the root> (cmd/runtime's sandboxRoot).
func leftovers(tmp string) error {
	var problems, vms []string
	for _, name := range []string{"cocoon", "runc"} {
		root := filepath.Join(execRoot, "runtime-"+name, "moby")
		if entries, _ := os.ReadDir(root); len(entries) > 0 {
			problems = append(problems, fmt.Sprintf("%s not empty: %d entries", root, len(entries)))
		}
		sum := sha256.Sum256([]byte(filepath.Clean(root)))
		vm := "/run/cocoon/.vm/" + hex.EncodeToString(sum[:4])
		if _, err := os.Stat(vm); err == nil {
			problems = append(problems, vm+" still exists")
		}
		vms = append(vms, vm)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		data, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		cl := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cl, vms[0]) || strings.Contains(cl, vms[1]) || strings.Contains(cl, tmp) {
			problems = append(problems, "process left: "+filepath.Base(d)+": "+cl)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// result is what a docker command left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// docker runs the client against the suite's daemon, with stdin if given.
func dockerIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := testutil.RunClient(t, commandTimeout, stdin, func(ctx context.Context) *exec.Cmd {
		return exec.CommandContext(ctx, dockerCLI, append([]string{"-H", "unix://" + socket}, args...)...)
	})
	return result{stdout: r.Stdout, stderr: r.Stderr, code: r.Code}
}

func docker(t *testing.T, args ...string) result {
	t.Helper()
	return dockerIn(t, "", args...)
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	r := docker(t, args...)
	if r.code != 0 {
		t.Fatalf("docker %v: %v", args, r)
	}
	return strings.TrimSpace(r.stdout)
}

// cocoon are the flags of every container of the suite.
var cocoon = []string{"--runtime", "cocoon", "--network", "none"}

// runRm is `docker run --rm` with cocoon, the options, the image and cmd.
func runRm(t *testing.T, opts []string, cmd ...string) result {
	t.Helper()
	args := append(append(append([]string{"run", "--rm"}, cocoon...), opts...), image)
	return docker(t, append(args, cmd...)...)
}

// detached starts a container with `docker run -d` and removes it at the
// end of the test.
func detached(t *testing.T, opts []string, cmd ...string) string {
	t.Helper()
	args := append(append(append([]string{"run", "-d"}, cocoon...), opts...), image)
	id := mustDocker(t, append(args, cmd...)...)
	t.Cleanup(func() { docker(t, "rm", "-f", id) })
	return id
}

func TestRunUname(t *testing.T) {
	r := runRm(t, nil, "uname", "-r")
	if r.code != 0 || strings.TrimSpace(r.stdout) != guestRel {
		t.Fatalf("uname -r: %v, want the guest's %q", r, guestRel)
	}
	host, _ := exec.Command("uname", "-r").Output()
	if strings.TrimSpace(string(host)) == guestRel {
		t.Fatalf("the host runs the guest's kernel %q: the test proves nothing", guestRel)
	}
}

func TestExitCodes(t *testing.T) {
	for _, code := range []int{0, 3} {
		if r := runRm(t, nil, "sh", "-c", fmt.Sprintf("exit %d", code)); r.code != code {
			t.Errorf("exit %d: %v", code, r)
		}
	}
	// 137: the container's init killed by SIGKILL (PID 1 of a namespace
	// cannot get SIGKILL from inside it, with runc as with cocoon).
	id := detached(t, nil, "sleep", "100")
	mustDocker(t, "kill", id)
	if got := mustDocker(t, "wait", id); got != "137" {
		t.Errorf("docker wait after kill: %q, want 137", got)
	}
	if got := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", id); got != "137" {
		t.Errorf("exit code after kill: %q, want 137", got)
	}
}

func TestStdin(t *testing.T) {
	in := "hello\nfrom the host\n"
	args := append(append([]string{"run", "--rm", "-i"}, cocoon...), image, "sh", "-c", "cat; echo done")
	if r := dockerIn(t, in, args...); r.code != 0 || r.stdout != in+"done\n" {
		t.Fatalf("run -i: %v", r)
	}
}

func TestProcessOptions(t *testing.T) {
	r := runRm(t, []string{"-e", "FOO=bar baz", "-w", "/tmp", "-u", "1000:1000", "--hostname", "cocoon-host"},
		"sh", "-c", `echo "$FOO"; pwd; id -u; id -g; hostname`)
	want := "bar baz\n/tmp\n1000\n1000\ncocoon-host\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("-e -w -u --hostname: %v, want %q", r, want)
	}
}

func TestVolume(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runRm(t, []string{"-v", dir + ":/data"}, "sh", "-c", "cat /data/in && echo from the guest > /data/out")
	if r.code != 0 || r.stdout != "from the host\n" {
		t.Fatalf("-v read: %v", r)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out")); err != nil || string(got) != "from the guest\n" {
		t.Fatalf("-v write: %q %v", got, err)
	}
}

func TestReadOnly(t *testing.T) {
	r := runRm(t, []string{"--read-only"}, "sh", "-c", "if touch /x 2>/dev/null; then echo writable; else echo read-only; fi")
	if r.code != 0 || r.stdout != "read-only\n" {
		t.Fatalf("--read-only: %v", r)
	}
	if r := runRm(t, nil, "sh", "-c", "touch /x && echo writable"); r.code != 0 || r.stdout != "writable\n" {
		t.Fatalf("without --read-only: %v", r)
	}
}

// memoryMax prints the memory limit of the container's own cgroup (v2 in
// the guest).
const memoryMax = `cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max`

func TestMemoryLimit(t *testing.T) {
	if r := runRm(t, []string{"--memory", "128m"}, "sh", "-c", memoryMax); r.code != 0 || r.stdout != "134217728\n" {
		t.Fatalf("--memory 128m: %v", r)
	}
}

// TestOOMKilled: a container that the guest's OOM killer ends (a 64 MiB
// buffer under a 32 MiB limit) exits 137 with OOMKilled true in docker
// inspect, every time: its relay mirrors the kill in the container's host
// cgroup, where Docker's runc shim watches for OOM. A container killed
// otherwise exits 137 with OOMKilled false.
func TestOOMKilled(t *testing.T) {
	const runs = 10
	for i := range runs {
		id := detached(t, []string{"--memory", "32m"}, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
		if got := mustDocker(t, "wait", id); got != "137" {
			t.Fatalf("run %d: exit %q, want 137", i, got)
		}
		if got := mustDocker(t, "inspect", "-f", "{{.State.OOMKilled}}", id); got != "true" {
			t.Fatalf("run %d: OOMKilled %q, want true", i, got)
		}
		mustDocker(t, "rm", id)
	}
	id := detached(t, []string{"--memory", "32m"}, "sleep", "100")
	mustDocker(t, "kill", id)
	if got := mustDocker(t, "wait", id); got != "137" {
		t.Errorf("killed: exit %q, want 137", got)
	}
	if got := mustDocker(t, "inspect", "-f", "{{.State.OOMKilled}}", id); got != "false" {
		t.Errorf("killed by docker kill: OOMKilled %q, want false", got)
	}
}

func TestDetachedLogsStopRm(t *testing.T) {
	// sh as init ignores TERM (no handler): stop must fall back to KILL.
	id := detached(t, nil, "sh", "-c", "echo started; while true; do sleep 1; done")
	waitFor(t, func() bool { return docker(t, "logs", id).stdout == "started\n" }, "logs to show started")
	start := time.Now()
	mustDocker(t, "stop", "-t", "2", id)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("stop -t 2 took %v: TERM should have been ignored", d)
	}
	if got := mustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id); got != "exited 137" {
		t.Errorf("after stop: %q", got)
	}
	mustDocker(t, "rm", id)
	if r := docker(t, "inspect", id); r.code == 0 {
		t.Errorf("inspect after rm: %v", r)
	}
}

func TestStopTrapsTerm(t *testing.T) {
	id := detached(t, nil, "sh", "-c", `trap "echo term; exit 7" TERM; echo ready; while true; do sleep 0.2; done`)
	waitFor(t, func() bool { return strings.Contains(docker(t, "logs", id).stdout, "ready") }, "ready")
	mustDocker(t, "stop", "-t", "10", id)
	if got := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", id); got != "7" {
		t.Errorf("exit code after a trapped TERM: %q", got)
	}
	if out := docker(t, "logs", id).stdout; out != "ready\nterm\n" {
		t.Errorf("logs: %q", out)
	}
}

func TestExecKillPauseTop(t *testing.T) {
	id := detached(t, nil, "sh", "-c",
		`trap "echo got-usr1" USR1; echo ready; i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done`)
	waitFor(t, func() bool { return strings.Contains(docker(t, "logs", id).stdout, "ready") }, "ready")
	t.Run("Exec", func(t *testing.T) {
		if r := docker(t, "exec", id, "sh", "-c", "test -s /tmp/count && echo ok"); r.code != 0 || r.stdout != "ok\n" {
			t.Errorf("exec: %v", r)
		}
		if r := docker(t, "exec", id, "sh", "-c", "exit 5"); r.code != 5 {
			t.Errorf("exec exit 5: %v", r)
		}
		if r := dockerIn(t, "piped\n", "exec", "-i", id, "cat"); r.code != 0 || r.stdout != "piped\n" {
			t.Errorf("exec -i: %v", r)
		}
		if r := docker(t, "exec", "-u", "1000", "-w", "/tmp", "-e", "X=y", id, "sh", "-c", "id -u; pwd; echo $X"); r.code != 0 || r.stdout != "1000\n/tmp\ny\n" {
			t.Errorf("exec -u -w -e: %v", r)
		}
	})
	t.Run("KillUSR1", func(t *testing.T) {
		mustDocker(t, "kill", "-s", "USR1", id)
		waitFor(t, func() bool { return strings.Contains(docker(t, "logs", id).stdout, "got-usr1") }, "the trap to run")
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", id); st != "running" {
			t.Errorf("after USR1: %s", st)
		}
	})
	// The counter is replaced by rename: a reader never sees it empty.
	count := func(t *testing.T) int {
		t.Helper()
		n, err := strconv.Atoi(strings.TrimSpace(mustDocker(t, "exec", id, "cat", "/tmp/count")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Run("PauseUnpause", func(t *testing.T) {
		a := count(t)
		mustDocker(t, "pause", id)
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", id); st != "paused" {
			t.Errorf("after pause: %s", st)
		}
		time.Sleep(1500 * time.Millisecond)
		mustDocker(t, "unpause", id)
		b := count(t)
		// Paused for 1.5 s: a running counter would have moved by ~15.
		if b-a > 8 {
			t.Errorf("counter moved from %d to %d across a 1.5 s pause", a, b)
		}
		time.Sleep(time.Second)
		if c := count(t); c <= b {
			t.Errorf("counter stuck at %d after unpause", c)
		}
	})
	t.Run("Top", func(t *testing.T) {
		// The container's processes live in the guest: on the host, the
		// shims relaying them stand for them.
		detachedExec(t, id)
		out := mustDocker(t, "top", id)
		if n := strings.Count(out, "cocoon-relay"); n != 2 {
			t.Errorf("top: %d shims, want 2 (init and exec):\n%s", n, out)
		}
	})
	t.Run("UpdateMemory", func(t *testing.T) {
		mustDocker(t, "update", "--memory", "256m", "--memory-swap", "256m", id)
		if r := docker(t, "exec", id, "sh", "-c", memoryMax); r.code != 0 || r.stdout != "268435456\n" {
			t.Errorf("after update --memory 256m: %v", r)
		}
	})
}

// detachedExec starts a long-lived process in container id.
func detachedExec(t *testing.T, id string) string {
	t.Helper()
	return mustDocker(t, "exec", "-d", id, "sleep", "60")
}

func TestRmForce(t *testing.T) {
	id := detached(t, nil, "sleep", "100")
	mustDocker(t, "rm", "-f", id)
	if r := docker(t, "inspect", id); r.code == 0 {
		t.Errorf("inspect after rm -f: %v", r)
	}
}

func TestRestartStopped(t *testing.T) {
	id := mustDocker(t, append(append([]string{"create"}, cocoon...), image, "sh", "-c", "uname -r; exit 4")...)
	t.Cleanup(func() { docker(t, "rm", "-f", id) })
	for i := 0; i < 2; i++ {
		if r := docker(t, "start", "-a", id); r.code != 4 || strings.TrimSpace(r.stdout) != guestRel {
			t.Fatalf("start -a #%d: %v", i+1, r)
		}
	}
	mustDocker(t, "restart", "-t", "1", id)
	if got := mustDocker(t, "wait", id); got != "4" {
		t.Errorf("wait after restart: %q", got)
	}
	if out := docker(t, "logs", id).stdout; out != strings.Repeat(guestRel+"\n", 3) {
		t.Errorf("logs after three runs: %q", out)
	}
}

func TestLogs64MiB(t *testing.T) {
	const size = 64 << 20
	line := "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrs"
	id := mustDocker(t, append(append([]string{"create"}, cocoon...), image, "sh", "-c",
		fmt.Sprintf("yes %s | head -c %d", line, size))...)
	t.Cleanup(func() { docker(t, "rm", "-f", id) })
	start := time.Now()
	mustDocker(t, "start", id)
	if got := mustDocker(t, "wait", id); got != "0" {
		t.Fatalf("exit code %s", got)
	}
	t.Logf("64 MiB to stdout through docker: %v", time.Since(start))
	r := docker(t, "logs", id)
	if r.code != 0 {
		t.Fatalf("logs: exit %d, %q", r.code, r.stderr)
	}
	want := bytes.Repeat([]byte(line+"\n"), size/len(line+"\n")+1)[:size]
	if len(r.stdout) != size || r.stdout != string(want) {
		t.Fatalf("logs: %d bytes, want %d (equal content: %v)", len(r.stdout), size, r.stdout == string(want))
	}
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

// startTerminal runs the client with args on a new pty.
func startTerminal(t *testing.T, args ...string) *testutil.Terminal {
	t.Helper()
	return testutil.StartTerminal(t, exec.Command(dockerCLI, append([]string{"-H", "unix://" + socket}, args...)...))
}

func TestTerminal(t *testing.T) {
	t.Run("RunIt", func(t *testing.T) {
		term := startTerminal(t, append(append([]string{"run", "-it", "--rm"}, cocoon...), image, "sh")...)
		term.Session(t, true)
	})
	t.Run("ExecIt", func(t *testing.T) {
		id := detached(t, nil, "sleep", "100")
		term := startTerminal(t, "exec", "-it", id, "sh")
		term.Session(t, true)
	})
}

// TestStatsHostCgroup: the container's cgroup on the host (Docker's
// /docker/<id>) holds the container's relays with the container's memory
// limit exactly, so that docker stats (the runc shim reads the cgroup of
// the container's PID) shows the limit that was asked for, as with runc,
// and the relays' usage below it. The VM (QEMU, proxy) runs in the overhead
// cgroup beside it, /docker/<id>.vmm, with the limit plus the VM's
// overhead. rm removes both.
func TestStatsHostCgroup(t *testing.T) {
	id := detached(t, []string{"--memory", "64m"}, "sleep", "1000")
	pid := mustDocker(t, "inspect", "-f", "{{.State.Pid}}", id)
	own, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	memDir := ""
	for _, line := range strings.Split(strings.TrimSpace(string(own)), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && (f[1] == "memory" || (f[0] == "0" && memDir == "")) {
			if !strings.HasSuffix(f[2], "/"+id) {
				t.Fatalf("the container's process %s is in %q, want Docker's cgroup of %s", pid, line, id)
			}
			memDir = "/sys/fs/cgroup/memory" + f[2]
			if f[1] != "memory" {
				memDir = "/sys/fs/cgroup" + f[2]
			}
		}
	}
	vmmDir := memDir + ".vmm"
	guestMiB := 0
	procs, err := os.ReadFile(filepath.Join(vmmDir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(procs)) {
		cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		for i, a := range args {
			if a == "-m" && i+1 < len(args) && strings.Contains(args[0], "qemu-system") {
				guestMiB, _ = strconv.Atoi(args[i+1])
			}
		}
	}
	if guestMiB == 0 {
		t.Fatalf("no QEMU in the overhead cgroup %s: %s", vmmDir, procs)
	}
	limit := int64(64 << 20)
	vmmLimit := hostcgroup.Resources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}, guestMiB).Memory
	for dir, want := range map[string]int64{memDir: limit, vmmDir: vmmLimit} {
		file := "memory.limit_in_bytes"
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			file = "memory.max"
		}
		if got, _ := os.ReadFile(filepath.Join(dir, file)); strings.TrimSpace(string(got)) != strconv.FormatInt(want, 10) {
			t.Errorf("%s/%s %q, want %d", dir, file, got, want)
		}
	}

	out := mustDocker(t, "stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", id)
	t.Logf("docker stats: %s", mustDocker(t, "stats", "--no-stream", id))
	var usage, max float64
	var uUnit, mUnit string
	var pids int
	if _, err := fmt.Sscanf(strings.NewReplacer("/", " ", "|", " ").Replace(out), "%f%s %f%s %d", &usage, &uUnit, &max, &mUnit, &pids); err != nil {
		t.Fatalf("docker stats %q: %v", out, err)
	}
	mib := map[string]float64{"KiB": 1.0 / 1024, "MiB": 1, "GiB": 1024}
	usage, max = usage*mib[uUnit], max*mib[mUnit]
	if usage <= 0 || usage >= 64 {
		t.Errorf("docker stats %q: want the relays' usage, within the 64 MiB limit", out)
	}
	if max < 63.9 || max > 64.1 {
		t.Errorf("docker stats %q: limit %.1f MiB, want the 64 MiB asked for", out, max)
	}
	mustDocker(t, "rm", "-f", id)
	for _, dir := range []string{memDir, vmmDir} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the cgroup %s is left after rm (%v)", dir, err)
		}
	}
}

// restoredQEMU returns the PID of the QEMU of container id, whose VM must
// have been restored from one of the suite's templates.
func restoredQEMU(t *testing.T, id string) int {
	t.Helper()
	// The sandbox's directory, or for one taken from the pool the link
	// to the pooled sandbox's, whose QEMU names its own directory.
	dir := "/" + id + "/"
	if links, _ := filepath.Glob(filepath.Join("/run/cocoon/.vm/*", id)); len(links) == 1 {
		if target, err := os.Readlink(links[0]); err == nil {
			dir = target + "/"
		}
	}
	pid := 0
	for _, p := range testutil.ProcessesOf(dir + "qmp.sock") {
		if strings.Contains(p, "qemu-system") {
			fmt.Sscanf(p, "%d:", &pid)
		}
	}
	if pid == 0 {
		t.Fatalf("no QEMU for %s: %v", id, testutil.ProcessesOf("qemu-system"))
	}
	if err := templates.Restored(pid); err != nil {
		t.Errorf("container %s: %v", id, err)
	}
	return pid
}

// TestHungAndDeadVM stops QEMU (SIGSTOP), or kills it, under a running
// container whose VM was restored from a template: docker rm -f returns
// within 10 s, leaving nothing (the suite's leftovers check).
func TestHungAndDeadVM(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"hung", syscall.SIGSTOP}, {"dead", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) {
			id := detached(t, nil, "sleep", "1000")
			pid := restoredQEMU(t, id)
			if err := syscall.Kill(pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped
			start := time.Now()
			r := docker(t, "rm", "-f", id)
			took := time.Since(start)
			t.Logf("docker rm -f of a %s VM: %.2fs", tc.name, took.Seconds())
			if r.code != 0 || took > 10*time.Second {
				t.Errorf("docker rm -f of a %s VM: %v after %.1fs, want success within 10s", tc.name, r, took.Seconds())
			}
		})
	}
}

// TestPool: with the pool on (the cocoon-pool runtime), a container takes
// a warmed-up sandbox of the pool (Docker's: with a network namespace of
// its own), runs, execs and is removed, and the pool is refilled in the
// background; the suite's end destroys the pool with the templates.
func TestPool(t *testing.T) {
	if err := templates.EnablePool(); err != nil {
		t.Fatal(err)
	}
	pooled := []string{"--runtime", "cocoon-pool", "--network", "none"}
	start := time.Now()
	if out := mustDocker(t, append(append([]string{"run", "--rm"}, pooled...), image, "echo", "pooled")...); out != "pooled" {
		t.Errorf("docker run --rm: %q", out)
	}
	t.Logf("docker run --rm of echo from the pool: %.2fs", time.Since(start).Seconds())
	if err := templates.WaitPoolFull(time.Minute); err != nil {
		t.Fatal(err)
	}
	id := mustDocker(t, append(append([]string{"run", "-d"}, pooled...), image, "sleep", "600")...)
	defer docker(t, "rm", "-f", id)
	if err := templates.Pooled(restoredQEMU(t, id)); err != nil {
		t.Errorf("container %s: %v", id, err)
	}
	if out := mustDocker(t, "exec", id, "hostname"); out != id[:12] {
		t.Errorf("docker exec hostname: %q, want %q", out, id[:12])
	}
	mustDocker(t, "rm", "-f", id)
	if err := templates.WaitPoolFull(time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestHostNamespaces: docker run --network=host or --ipc=host fails at
// creation with the runtime's one line (a VM cannot share the host's
// namespace: use runc, or the setting that allows the VM's own), and
// leaves no container; the runtime configured with runtime.host_namespaces
// = "guest" runs them on the VM's own namespaces: loopback only.
func TestHostNamespaces(t *testing.T) {
	before := mustDocker(t, "ps", "-aq")
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--network=host"}, "asks for the host's network namespace, which a VM cannot share: run this pod with runc"},
		{[]string{"--network=none", "--ipc=host"}, "asks for the host's IPC namespace, which a VM cannot share: run this pod with runc"},
	} {
		args := append(append([]string{"run", "--rm", "--runtime", "cocoon"}, tc.flags...), image, "true")
		r := docker(t, args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "host_namespaces") {
			t.Errorf("docker run %v: %v; want a failure saying %q", tc.flags, r, tc.want)
		}
	}
	if after := mustDocker(t, "ps", "-aq"); after != before {
		t.Errorf("refused containers left containers: %q, before %q", after, before)
	}
	for _, p := range testutil.ProcessesOf(execRoot) {
		if strings.Contains(p, "qemu-system") || strings.Contains(p, "cocoon-relay") || strings.Contains(p, "cocoon-proxy") {
			t.Errorf("a refused container left %s", p)
		}
	}
	r := docker(t, "run", "--rm", "--runtime", "cocoon-hostns", "--network=host", "--ipc=host", image,
		"sh", "-c", "uname -r; ls /sys/class/net")
	// Docker names the host's network namespace by a path: none of the
	// host's interfaces is mirrored into the VM.
	if want := guestRel + "\nlo\n"; r.code != 0 || r.stdout != want {
		t.Errorf("--network=host --ipc=host with host_namespaces = guest: %v; want the guest's kernel and loopback only", r)
	}
}
