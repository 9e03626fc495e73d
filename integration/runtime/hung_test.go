//go:build integration

package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/internal/proc"
)

// qemuPID reads the PID of the QEMU of sandbox id from its state.
func qemuPID(t *testing.T, id string) int {
	t.Helper()
	var st struct {
		VM struct {
			PID int `json:"pid"`
		} `json:"vm"`
	}
	data, err := os.ReadFile(filepath.Join(sandboxRoot(), id, "state.json"))
	if err == nil {
		err = json.Unmarshal(data, &st)
	}
	if err != nil || st.VM.PID <= 0 {
		t.Fatalf("sandbox state of %s: %v (%s)", id, err, data)
	}
	return st.VM.PID
}

// timed runs cocoon-runtime and returns its result and how long it took.
func timed(t *testing.T, args ...string) (result, time.Duration) {
	t.Helper()
	start := time.Now()
	r := rt(t, args...)
	return r, time.Since(start)
}

// oneLine tells whether s is one line of text (log lines of level warning
// or error aside, it is what the caller shows).
func oneLine(s string) bool {
	return strings.Count(strings.TrimSpace(s), "\n") == 0 && strings.TrimSpace(s) != ""
}

// TestHungSandbox stops QEMU (SIGSTOP) under a running container: exec,
// kill, ps and pause fail within 15 s with one line saying the sandbox is
// unresponsive, state still says running but warns, and delete --force
// returns within 10 s leaving nothing (the suite's leftovers check).
func TestHungSandbox(t *testing.T) {
	const id = "hung"
	bundle := writeBundle(t, baseSpec(t, "sleep", "600"))
	mustRT(t, "run", "--detach", "--bundle", bundle, id)
	pid := qemuPID(t, id)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL) // never left stopped

	for _, args := range [][]string{
		{"exec", id, "true"},
		{"kill", id, "TERM"},
		{"ps", id},
		{"pause", id},
	} {
		r, took := timed(t, args...)
		t.Logf("%s on a hung sandbox: %.2fs, %q", args[0], took.Seconds(), strings.TrimSpace(r.stderr))
		if r.code == 0 || took > 15*time.Second || !strings.Contains(r.stderr, "unresponsive") || !oneLine(r.stderr) {
			t.Errorf("%v on a hung sandbox: %v after %.1fs; want a one-line error naming it unresponsive within 15s", args, r, took.Seconds())
		}
	}
	r, took := timed(t, "state", id)
	if r.code != 0 || !strings.Contains(r.stdout, `"running"`) || !strings.Contains(r.stderr, "unresponsive") {
		t.Errorf("state of a hung sandbox's container: %v (%.1fs); want running with a warning", r, took.Seconds())
	}
	r, took = timed(t, "delete", "--force", id)
	t.Logf("delete --force of a hung sandbox: %.2fs", took.Seconds())
	if r.code != 0 || took > 10*time.Second {
		t.Errorf("delete --force of a hung sandbox: %v after %.1fs, want success within 10s", r, took.Seconds())
	}
	if proc.Alive(pid) {
		t.Errorf("qemu %d still runs after delete --force", pid)
	}
}

// TestDeadSandbox kills QEMU under a running container: the container is
// stopped, exec says so at once, and delete --force returns within 10 s
// leaving nothing.
func TestDeadSandbox(t *testing.T) {
	const id = "dead"
	bundle := writeBundle(t, baseSpec(t, "sleep", "600"))
	mustRT(t, "run", "--detach", "--bundle", bundle, id)
	pid := qemuPID(t, id)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, id, "stopped")
	r, took := timed(t, "exec", id, "true")
	if r.code == 0 || took > 15*time.Second || !oneLine(r.stderr) {
		t.Errorf("exec in a dead sandbox: %v after %.1fs", r, took.Seconds())
	}
	r, took = timed(t, "delete", "--force", id)
	t.Logf("delete --force of a dead sandbox: %.2fs", took.Seconds())
	if r.code != 0 || took > 10*time.Second {
		t.Errorf("delete --force of a dead sandbox: %v after %.1fs, want success within 10s", r, took.Seconds())
	}
}

// TestKilledThenVMGone: a container stopped by kill KILL whose VM then
// dies is deleted (without --force) leaving nothing: no sandbox
// directory, no mounts (the suite's leftovers check).
func TestKilledThenVMGone(t *testing.T) {
	const id = "killed-gone"
	bundle := writeBundle(t, baseSpec(t, "sleep", "600"))
	mustRT(t, "run", "--detach", "--bundle", bundle, id)
	pid := qemuPID(t, id)
	mustRT(t, "kill", id, "KILL")
	waitStatus(t, id, "stopped")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for proc.Alive(pid) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := stateOf(t, id); st.Status != "stopped" {
		t.Errorf("state once the VM is gone: %+v", st)
	}
	mustRT(t, "delete", id)
	if _, err := os.Stat(filepath.Join(sandboxRoot(), id)); !os.IsNotExist(err) {
		t.Errorf("sandbox directory left: %v", err)
	}
}
