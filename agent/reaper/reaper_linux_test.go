package reaper

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// The reaper tests reap the test process's own children; no other test in
// this package starts processes.

func testLog(t *testing.T) *logrus.Entry {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l).WithField("test", t.Name())
}

// poll waits for cond, failing the test after timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// becomeSubreaper makes the test process adopt orphaned grandchildren, as
// PID 1 does in the guest.
func becomeSubreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("becoming a child subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

func startReaper(t *testing.T) *Reaper {
	t.Helper()
	r := New(testLog(t))
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
	becomeSubreaper(t)

	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := New(logrus.NewEntry(logger))
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

func TestReaperRegisteredChildrenAndOrphans(t *testing.T) {
	// Everything at once, as in a busy guest: several goroutines start
	// children through Start, each also running helpers it waits for itself
	// inside Start (as libcontainer does with runc init's stages), while
	// the children leave orphans behind. Every registered child gets its
	// own status, no inner wait fails with ECHILD, and no zombie is left.
	becomeSubreaper(t)
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	r := New(logrus.NewEntry(logger))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const workers, orphansEach = 8, 2
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := r.Start(func() (int, error) {
				if err := exec.Command("true").Run(); err != nil {
					return 0, fmt.Errorf("inner wait: %w", err)
				}
				cmd := exec.Command("sh", "-c", fmt.Sprintf("sleep 0.05 & sleep 0.1 & exit %d", i+1))
				if err := cmd.Start(); err != nil {
					return 0, err
				}
				return cmd.Process.Pid, nil
			})
			if err != nil {
				errs <- err
				return
			}
			select {
			case e := <-ch:
				if e.ExitCode() != i+1 {
					errs <- fmt.Errorf("worker %d: exit code %d", i, e.ExitCode())
				}
			case <-time.After(10 * time.Second):
				errs <- fmt.Errorf("worker %d: no exit status", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	poll(t, 10*time.Second, "the orphans to be reaped", func() bool {
		n := 0
		for _, e := range hook.AllEntries() {
			if e.Message == "reaped orphan" {
				n++
			}
		}
		return n == workers*orphansEach
	})
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("children left unreaped: wait4 = %d, %v", pid, err)
	}
}

// TestReaperIgnoresTraceStops checks that the ptrace stop of a child the
// process traces (which wait reports without WUNTRACED) is not taken for
// its exit: the agent traces a container's init process to its exec.
func TestReaperIgnoresTraceStops(t *testing.T) {
	r := startReaper(t)
	var pid int
	ch, err := r.Start(func() (int, error) {
		cmd := exec.Command("sleep", "100")
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		pid = cmd.Process.Pid
		return pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread() // ptrace requests come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		t.Fatal(err)
	}
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_INTERRUPT, uintptr(pid), 0, 0, 0, 0); e != 0 {
		t.Fatal(e)
	}
	poll(t, 10*time.Second, "the trace stop", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return strings.Contains(string(b), ") t ")
	})
	time.Sleep(100 * time.Millisecond) // the reaper runs on the SIGCHLD
	select {
	case e := <-ch:
		t.Fatalf("a trace stop was delivered as an exit: %+v", e)
	default:
	}
	if err := unix.PtraceDetach(pid); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, ch); e.Pid != pid || e.ExitCode() != 128+int(unix.SIGKILL) {
		t.Errorf("exit = pid %d code %d, want pid %d killed", e.Pid, e.ExitCode(), pid)
	}
}
