//go:build integration

package runtime_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
)

// TestForceDeleteRacingGuards SIGKILLs the shims of a running container
// and of two of its exec'd processes while `delete --force` runs: each
// shim's guard then kills its process through the agent while the agent
// removes the container. The removal killed the container's processes
// through the cgroup freezer, and the guest kernel did not report the
// cgroup frozen while its processes were dying: the freeze waited out its
// 10 s timeout, in about one race of six. Each round must finish well
// within that (the container is in a pod, so that delete does not tear the
// VM down and only the removal is timed).
func TestForceDeleteRacingGuards(t *testing.T) {
	accel, _ := qemu.DetectAccelerator()
	limit := 500 * time.Millisecond * time.Duration(accel.TimeoutScale())
	annotate := func(typ string) map[string]string {
		return map[string]string{
			"io.kubernetes.cri.container-type": typ,
			"io.kubernetes.cri.sandbox-id":     "rmpod",
		}
	}
	infra := baseSpec(t, "sleep", "600")
	infra.Annotations = annotate("sandbox")
	mustRT(t, "create", "--bundle", writeBundle(t, infra), "rmpod")
	defer forceDelete(t, "rmpod")
	mustRT(t, "start", "rmpod")
	app := baseSpec(t, "sleep", "600")
	app.Annotations = annotate("container")
	bundle := writeBundle(t, app)

	const rounds = 12
	for i := range rounds {
		id := fmt.Sprintf("rm%d", i)
		mustRT(t, "create", "--bundle", bundle, id)
		mustRT(t, "start", id)
		shims := []int{stateOf(t, id).Pid}
		for j := range 2 {
			pidFile := filepath.Join(t.TempDir(), fmt.Sprintf("exec%d.pid", j))
			mustRT(t, "exec", "--detach", "--pid-file", pidFile, id, "sleep", "600")
			shims = append(shims, readPid(t, pidFile))
		}
		cmd, res := command(t, cmdOpts{}, e.runtime, rtArgs("delete", "--force", id)...)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Vary the lead of the removal over the guards.
		time.Sleep(time.Duration(i%4) * 5 * time.Millisecond)
		for _, pid := range shims {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
				t.Fatalf("killing shim %d: %v", pid, err)
			}
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(commandTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
		took := time.Since(start)
		for _, pid := range shims {
			reap(t, pid)
		}
		if r := res(); r.code != 0 {
			t.Fatalf("round %d: delete --force: %v", i, r)
		}
		t.Logf("round %d: delete --force took %v", i, took.Round(time.Millisecond))
		if took > limit {
			t.Errorf("round %d: delete --force with the shims killed took %v, want at most %v", i, took.Round(time.Millisecond), limit)
		}
		if r := rt(t, "state", id); r.code == 0 {
			t.Errorf("round %d: %s still exists after delete: %v", i, id, r.stdout)
		}
	}
}
