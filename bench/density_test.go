package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDensityCheckpoints(t *testing.T) {
	var got []int
	for n := 1; n <= 35; n++ {
		if densityCheckpoint(n, 35) {
			got = append(got, n)
		}
	}
	want := []int{1, 10, 20, 30, 35}
	if len(got) != len(want) {
		t.Fatalf("checkpoints %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("checkpoints %v, want %v", got, want)
		}
	}
}

// The leftover check must find a process that names a mark, and stop
// finding it once it has gone (the shell stays: a command follows sleep).
func TestDensityLeftovers(t *testing.T) {
	mark := filepath.Join(t.TempDir(), "density-root")
	cmd := exec.Command("sh", "-c", "sleep 30; true", mark)
	// Its own process group, so that killing it takes sleep along.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer kill()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := densityLeftovers([]string{mark})
		if len(left) == 1 && strings.Contains(left[0], "left running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leftovers %q, want the shell", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
	kill()
	_ = cmd.Wait()
	if left := densityLeftovers([]string{mark}); len(left) != 0 {
		t.Errorf("leftovers %q after the process exited", left)
	}
}

func TestCPUTicks(t *testing.T) {
	start := time.Now()
	for time.Since(start) < 100*time.Millisecond {
	}
	if n := cpuTicks([]int{os.Getpid()}); n <= 0 {
		t.Errorf("cpu ticks of a busy process: %d", n)
	}
	if n := cpuTicks([]int{1 << 30}); n != 0 {
		t.Errorf("cpu ticks of no process: %d", n)
	}
	if d := descendants(os.Getpid()); len(d) < 1 || d[0] != os.Getpid() {
		t.Errorf("descendants %v", d)
	}
}
