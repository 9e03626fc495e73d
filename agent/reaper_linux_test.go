package agent

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// The reaper tests reap the test process's own children; no other test in
// this package starts processes.

func startReaper(t *testing.T) *Reaper {
	t.Helper()
	r := NewReaper(testLog(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func waitExit(t *testing.T, ch <-chan ExitStatus) ExitStatus {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status")
	}
	return ExitStatus{}
}

func TestReaperDeliversExitStatus(t *testing.T) {
	r := startReaper(t)
	tests := map[string]struct {
		script string
		want   int
	}{
		"success":   {script: "exit 0", want: 0},
		"exit code": {script: "exit 3", want: 3},
		"signal":    {script: "kill -KILL $$", want: 128 + int(unix.SIGKILL)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var pid int
			ch, err := r.Start(func() (int, error) {
				cmd := exec.Command("sh", "-c", tt.script)
				if err := cmd.Start(); err != nil {
					return 0, err
				}
				pid = cmd.Process.Pid
				return pid, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, ch)
			if e.Pid != pid || e.ExitCode() != tt.want {
				t.Errorf("exit = pid %d code %d, want pid %d code %d", e.Pid, e.ExitCode(), pid, tt.want)
			}
		})
	}
}

func TestReaperLetsStartWaitForItsOwnChildren(t *testing.T) {
	// What libcontainer does while starting a container: start helper
	// processes and wait for them itself. The reaper must not take their
	// exit statuses (the wait would fail with ECHILD).
	r := startReaper(t)
	ch, err := r.Start(func() (int, error) {
		for range 5 {
			if err := exec.Command("true").Run(); err != nil {
				return 0, err
			}
		}
		cmd := exec.Command("sh", "-c", "exit 7")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		time.Sleep(50 * time.Millisecond) // the child exits before it is registered
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if e := waitExit(t, ch); e.ExitCode() != 7 {
		t.Errorf("exit code %d, want 7", e.ExitCode())
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	// Become a subreaper, as PID 1 is, so that grandchildren whose parent
	// exits become our children.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })

	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := NewReaper(logrus.NewEntry(logger))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	// sh starts a background sleep and exits: the sleep is orphaned.
	ch, err := r.Start(func() (int, error) {
		cmd := exec.Command("sh", "-c", "sleep 0.2 & exit 0")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitExit(t, ch)
	poll(t, 10*time.Second, "the orphan to be reaped", func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "reaped orphan" {
				return true
			}
		}
		return false
	})
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("children left unreaped: wait4 = %d, %v", pid, err)
	}
}

func TestReaperStartError(t *testing.T) {
	r := startReaper(t)
	if _, err := r.Start(func() (int, error) { return 0, context.Canceled }); err != context.Canceled {
		t.Errorf("Start error = %v", err)
	}
	if _, err := r.Start(func() (int, error) { return 0, nil }); err == nil {
		t.Error("Start accepted pid 0")
	}
}
