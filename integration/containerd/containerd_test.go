//go:build integration

// Package containerd_test runs containers with `ctr run --runtime
// io.containerd.cocoon.v2` against a private containerd (Debian's 1.6
// daemon, see containerdtest) with a busybox image imported from the
// host's busybox-static: exit codes, stdin, a terminal, exec and kill, and
// nothing left afterwards. VM templates are on: every sandbox is restored
// from a template that the first one made.
package containerd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
)

const (
	image          = containerdtest.BusyboxImage
	commandTimeout = 3 * time.Minute
)

var daemon *containerdtest.Daemon

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// VM templates on: the shim restores every sandbox from the one
	// template of the suite's containers (no NIC: ctr's containers have a
	// network namespace of their own without interfaces).
	return containerdtest.RunTests(m, containerdtest.Options{Templates: 1}, "default", func(ctx context.Context, d *containerdtest.Daemon) error {
		daemon = d
		return d.ImportBusybox(ctx, "")
	})
}

// result is what a ctr command left.
type result struct {
	out  string
	code int
}

// ctrIn runs ctr with stdin (none when empty) and returns its combined
// output and exit code.
func ctrIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := daemon.CtrCommand(ctx, "", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ctr %v: timed out after %v: %s", args, commandTimeout, out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ctr %v: %v", args, err)
	}
	return result{out: out.String(), code: code}
}

func mustCtr(t *testing.T, args ...string) string {
	t.Helper()
	r := ctrIn(t, "", args...)
	if r.code != 0 {
		t.Fatalf("ctr %v: exit %d: %s", args, r.code, r.out)
	}
	return r.out
}

// run is `ctr run --rm --runtime io.containerd.cocoon.v2` of the image.
func run(t *testing.T, stdin, id string, cmd ...string) result {
	t.Helper()
	args := append([]string{"run", "--rm", "--runtime", containerdtest.Runtime, image, id}, cmd...)
	return ctrIn(t, stdin, args...)
}

// detached starts a container with ctr run -d and removes it (task and
// container) at the end of the test.
func detached(t *testing.T, id string, cmd ...string) {
	t.Helper()
	mustCtr(t, append([]string{"run", "-d", "--runtime", containerdtest.Runtime, image, id}, cmd...)...)
	t.Cleanup(func() {
		ctrIn(t, "", "task", "kill", "-s", "KILL", id)
		ctrIn(t, "", "task", "delete", "-f", id)
		ctrIn(t, "", "container", "delete", id)
	})
}

// taskStatus returns the STATUS column of `ctr task ls` for id.
func taskStatus(t *testing.T, id string) string {
	t.Helper()
	for _, line := range strings.Split(mustCtr(t, "task", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

func TestRunGuestKernel(t *testing.T) {
	rel, err := os.ReadFile(filepath.Join(daemon.Out, "kernel.release"))
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, "", "uname", "uname", "-r")
	if r.code != 0 || strings.TrimSpace(r.out) != strings.TrimSpace(string(rel)) {
		t.Fatalf("uname -r: exit %d, %q; want the guest's %q", r.code, r.out, rel)
	}
}

func TestExitCodes(t *testing.T) {
	for _, code := range []int{0, 3, 42} {
		r := run(t, "", fmt.Sprintf("exit-%d", code), "sh", "-c", fmt.Sprintf("echo out; echo err >&2; exit %d", code))
		if r.code != code {
			t.Errorf("exit %d: got %d: %s", code, r.code, r.out)
		}
		if !strings.Contains(r.out, "out") || !strings.Contains(r.out, "err") {
			t.Errorf("exit %d: output %q lacks stdout or stderr", code, r.out)
		}
	}
}

func TestStdin(t *testing.T) {
	const input = "hello through the FIFO\nsecond line\n"
	r := run(t, input, "stdin", "sh", "-c", "cat; echo done")
	if r.code != 0 || r.out != input+"done\n" {
		t.Fatalf("cat: exit %d, %q; want %q", r.code, r.out, input+"done\n")
	}
}

func TestTerminal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := daemon.CtrCommand(ctx, "", "run", "--rm", "-t", "--runtime", containerdtest.Runtime, image, "tty",
		"sh", "-c", "tty; stty size; exit 7")
	got, code, err := containerdtest.RunInTerminal(cmd, 33, 101, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7: %q", code, got)
	}
	// The size reaches the guest's terminal through ResizePty.
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "33 101") {
		t.Errorf("output %q: want a /dev/pts terminal of 33 rows and 101 columns", got)
	}
}

// events collects the topics of `ctr events` until the returned function
// is called, which returns them.
func events(t *testing.T) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := daemon.CtrCommand(ctx, "", "events")
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // subscribed
	return func() string {
		time.Sleep(200 * time.Millisecond) // delivered
		cancel()
		_ = cmd.Wait()
		return out.String()
	}
}

func TestExecAndKill(t *testing.T) {
	const id = "exec-kill"
	stopEvents := events(t)
	detached(t, id, "sh", "-c", "echo started > /tmp/mark; exec sleep 1000")
	if st := taskStatus(t, id); st != "RUNNING" {
		t.Fatalf("task status %q, want RUNNING", st)
	}
	r := ctrIn(t, "", "task", "exec", "--exec-id", "e1", id, "sh", "-c", "cat /tmp/mark; echo err >&2; exit 5")
	if r.code != 5 || !strings.Contains(r.out, "started") || !strings.Contains(r.out, "err") {
		t.Fatalf("exec: exit %d, %q; want 5 with the container's file and stderr", r.code, r.out)
	}
	r = ctrIn(t, "in through exec\n", "task", "exec", "--exec-id", "e2", id, "cat")
	if r.code != 0 || r.out != "in through exec\n" {
		t.Fatalf("exec with stdin: exit %d, %q", r.code, r.out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	// ctr exec gives no console size in the process spec and resizes the
	// terminal only once the process has started (with runc too), so the
	// process waits for the size: 0x0 until then, which stty refuses.
	term, code, err := containerdtest.RunInTerminal(daemon.CtrCommand(ctx, "", "task", "exec", "-t", "--exec-id", "e3", id,
		"sh", "-c", "tty; until stty size 2>/dev/null; do sleep 0.1; done; exit 6"), 20, 70, "", 0)
	if err != nil || code != 6 || !strings.Contains(term, "/dev/pts/") || !strings.Contains(term, "20 70") {
		t.Errorf("exec -t: %v, exit %d, %q; want 6 on a 20x70 terminal", err, code, term)
	}
	ps := mustCtr(t, "task", "ps", id)
	if len(strings.Split(strings.TrimSpace(ps), "\n")) < 2 {
		t.Errorf("task ps: %q, want the container's processes", ps)
	}
	mustCtr(t, "task", "pause", id)
	if st := taskStatus(t, id); st != "PAUSED" {
		t.Errorf("after pause: %q, want PAUSED", st)
	}
	mustCtr(t, "task", "resume", id)
	if st := taskStatus(t, id); st != "RUNNING" {
		t.Errorf("after resume: %q, want RUNNING", st)
	}
	metrics := mustCtr(t, "task", "metrics", id)
	if !strings.Contains(metrics, "memory") && !strings.Contains(metrics, "pids") {
		t.Errorf("task metrics: %q", metrics)
	}
	mustCtr(t, "task", "kill", "-s", "KILL", id)
	deadline := time.Now().Add(time.Minute)
	for taskStatus(t, id) != "STOPPED" {
		if time.Now().After(deadline) {
			t.Fatalf("task still %q a minute after kill", taskStatus(t, id))
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := mustCtr(t, "task", "delete", id)
	if !strings.Contains(out, "exit code 137") {
		t.Errorf("task delete: %q, want exit status 137", out)
	}
	mustCtr(t, "container", "delete", id)
	got := stopEvents()
	for _, topic := range []string{"/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
		"/tasks/paused", "/tasks/resumed", "/tasks/exit", "/tasks/delete"} {
		if !strings.Contains(got, topic+" ") {
			t.Errorf("no %s event from the shim in:\n%s", topic, got)
		}
	}
}

func TestKillAll(t *testing.T) {
	const id = "kill-all"
	// PID 1 ignores signals it has no handler for: kill once the trap is set.
	detached(t, id, "sh", "-c", "trap 'exit 9' TERM; sleep 1000 & touch /tmp/ready; wait")
	deadline := time.Now().Add(time.Minute)
	for ctrIn(t, "", "task", "exec", "--exec-id", "ready", id, "test", "-e", "/tmp/ready").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the container's shell did not get ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustCtr(t, "task", "kill", "--all", "-s", "TERM", id)
	deadline = time.Now().Add(time.Minute)
	for taskStatus(t, id) != "STOPPED" {
		if time.Now().After(deadline) {
			t.Fatalf("task still %q a minute after kill --all", taskStatus(t, id))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := mustCtr(t, "task", "delete", id); !strings.Contains(out, "exit code 9") {
		t.Errorf("task delete: %q, want exit status 9 (the trap's)", out)
	}
}

func TestNoVMLeft(t *testing.T) {
	run(t, "", "leftover", "true")
	if q := containerdtest.QEMUs(daemon.SandboxRoot("default")); len(q) > 0 {
		t.Fatalf("QEMU still running after ctr run --rm: %v", q)
	}
}

// TestShimDied kills a shim: containerd then runs the shim binary's delete
// command, which must destroy the VM the dead shim left.
func TestShimDied(t *testing.T) {
	const id = "shim-dies"
	detached(t, id, "sleep", "1000")
	shims := containerdtest.Processes("containerd-shim-cocoon-v2 -namespace default -address " + daemon.Socket)
	var pid int
	for _, p := range shims {
		if strings.HasSuffix(strings.TrimSuffix(p, " -debug"), "-id "+id) {
			fmt.Sscanf(p, "%d:", &pid)
		}
	}
	if pid == 0 {
		t.Fatalf("no shim for %s among %v", id, shims)
	}
	vmDir := filepath.Join(daemon.SandboxRoot("default"), id)
	if _, err := os.Stat(vmDir); err != nil {
		t.Fatalf("the container's VM: %v", err)
	}
	qemuOf(t, id)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := os.Stat(vmDir)
		if os.IsNotExist(err) && len(containerdtest.Processes(vmDir+"/")) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a minute after the shim died: VM directory %v, processes %v", err, containerdtest.Processes(vmDir+"/"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st := taskStatus(t, id); st != "STOPPED" && st != "" {
		t.Errorf("task status %q after its shim died, want STOPPED or gone", st)
	}
}

// qemuOf returns the PID of the QEMU of container id's VM, which must
// have been restored from the suite's template.
func qemuOf(t *testing.T, id string) int {
	t.Helper()
	for _, p := range containerdtest.QEMUs(filepath.Join(daemon.SandboxRoot("default"), id)) {
		var pid int
		if _, err := fmt.Sscanf(p, "%d:", &pid); err == nil {
			if err := daemon.Templates.Restored(pid); err != nil {
				t.Errorf("container %s: %v", id, err)
			}
			return pid
		}
	}
	t.Fatalf("no QEMU for %s", id)
	return 0
}

// TestHungAndDeadVM stops QEMU (SIGSTOP), or kills it, under a running
// task whose VM was restored from a template: exec fails at once, and `ctr task rm -f` (kill, wait, delete)
// returns within 10 s, leaving nothing (the suite's leftovers check).
func TestHungAndDeadVM(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"hung", syscall.SIGSTOP}, {"dead", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) {
			id := "vm-" + tc.name
			mustCtr(t, "run", "-d", "--runtime", containerdtest.Runtime, image, id, "sleep", "1000")
			t.Cleanup(func() { ctrIn(t, "", "container", "delete", id) })
			pid := qemuOf(t, id)
			if err := syscall.Kill(pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped
			if tc.name == "hung" {
				start := time.Now()
				r := ctrIn(t, "", "task", "exec", "--exec-id", "probe", id, "true")
				if r.code == 0 || time.Since(start) > 15*time.Second || !strings.Contains(r.out, "unresponsive") {
					t.Errorf("exec in a hung VM: %+v after %.1fs, want an error naming it unresponsive within 15s", r, time.Since(start).Seconds())
				}
			}
			start := time.Now()
			r := ctrIn(t, "", "task", "rm", "-f", id)
			took := time.Since(start)
			t.Logf("ctr task rm -f of a %s VM: %.2fs: %s", tc.name, took.Seconds(), strings.TrimSpace(r.out))
			if r.code != 0 || took > 10*time.Second {
				t.Errorf("ctr task rm -f of a %s VM: %+v after %.1fs, want success within 10s", tc.name, r, took.Seconds())
			}
			if st := taskStatus(t, id); st != "" {
				t.Errorf("task still listed as %q", st)
			}
		})
	}
}
