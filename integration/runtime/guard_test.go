//go:build integration

package runtime_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// guardsOf returns the PIDs of the guards of container id's init relay.
func guardsOf(id string) []int {
	var pids []int
	for _, p := range testutil.ProcessesOf("--guard-fd") {
		pid, cmd, _ := strings.Cut(p, ": ")
		if strings.Contains(cmd, "--container "+id+" ") && !strings.Contains(cmd, "--exec ") {
			n, _ := strconv.Atoi(pid)
			pids = append(pids, n)
		}
	}
	return pids
}

// TestGuardKilledFirst kills one of a container's two guards, then its
// relay (the container PID), both with SIGKILL: the other guard replaces
// the first, so the second kill still ends the process in the guest, as a
// SIGKILL of runc's container PID would. The process appends to a volume
// once every 100 ms; the file stops growing.
func TestGuardKilledFirst(t *testing.T) {
	const id = "guarded"
	vol := t.TempDir()
	s := baseSpec(t, "sh", "-c", "while :; do echo x >> /vol/ticks; sleep 0.1; done")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	mustRT(t, "run", "--detach", "--bundle", writeBundle(t, s), id)
	defer forceDelete(t, id)
	relay := stateOf(t, id).Pid
	// The process must have started writing, or a kill before its first
	// tick would pass for a kill that stopped it.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(filepath.Join(vol, "ticks")); err == nil && fi.Size() > 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the process never wrote to the volume")
		}
	}
	guards := guardsOf(id)
	if len(guards) != 2 {
		t.Fatalf("guards of %s: %v, want 2: %v", id, guards, testutil.ProcessesOf("--guard-fd"))
	}
	first := guards[0]
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g := guardsOf(id); len(g) != 2 || slices.Contains(g, first); g = guardsOf(id) {
		if time.Now().After(deadline) {
			t.Fatalf("the guard killed first was not replaced: %v", testutil.ProcessesOf("--guard-fd"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(relay, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ticks := filepath.Join(vol, "ticks")
	size := func() int64 {
		fi, err := os.Stat(ticks)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	// The guards kill the process through the agent.
	time.Sleep(3 * time.Second)
	before := size()
	time.Sleep(2 * time.Second)
	if after := size(); after != before || before == 0 {
		t.Errorf("the process still runs after its relay was killed (%d bytes, then %d)", before, after)
	}
	waitStatus(t, id, "stopped")
}
