package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestStartPlaced: place sees the child stopped at its exec (the new
// program loaded, none of it run yet), and the child then runs to its end
// untraced; a failing place kills the child before it runs.
func TestStartPlaced(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("/bin/sh", "-c", `grep TracerPid /proc/$$/status > "$0"`, out)
	var st byte
	var exe string
	err := StartPlaced(cmd, func(pid int) error {
		st = state(pid)
		exe, _ = os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if st != 't' {
		t.Errorf("the child's state while placed: %q, want t (stopped by its tracer)", st)
	}
	if real, _ := filepath.EvalSymlinks("/bin/sh"); exe != real {
		t.Errorf("the child's program while placed: %q, want %q (stopped after its exec)", exe, real)
	}
	got, err := os.ReadFile(out)
	if err != nil || strings.Fields(string(got))[1] != "0" {
		t.Errorf("the child ran with %q (%v), want TracerPid 0", got, err)
	}

	marker := filepath.Join(t.TempDir(), "ran")
	cmd = exec.Command("/bin/sh", "-c", `touch "$0"`, marker)
	boom := errors.New("no such cgroup")
	if err := StartPlaced(cmd, func(int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("StartPlaced with a failing place: %v", err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the child of a failed placement ran: %v", err)
	}
	if cmd.ProcessState == nil {
		t.Error("the child of a failed placement was not reaped")
	}
}
