package main

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/relay"
)

// guardedRelay starts a relay with --alive-fd and its two guards, as
// cocoon-runtime does; the guards are reaped at the end of the test.
func (sb *sandbox) guardedRelay(t *testing.T, execID string) *exec.Cmd {
	t.Helper()
	alive, aliveW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	var args []string
	if execID != "" {
		args = []string{"--exec", execID}
	}
	cmd := sb.relayCmd(append(args, "--alive-fd", "3")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // stdin: /dev/null
	cmd.ExtraFiles = []*os.File{aliveW}
	err = cmd.Start()
	aliveW.Close()
	if err != nil {
		t.Fatal(err)
	}
	a, b, err := relay.NewLifelines()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	gargs := append([]string{"cocoon-relay", "--guard-fd", "3", "--container", "c", "--proxy-socket", sb.Sock}, args...)
	for _, l := range []relay.Lifeline{a, b} {
		g, err := relay.StartGuard(relayBinary, gargs, alive, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Process.Kill(); _ = g.Wait() })
	}
	return cmd
}

// guards returns the PIDs of the live guards of sb's relays.
func (sb *sandbox) guards() []int {
	var pids []int
	for _, p := range testutil.ProcessesOf("--guard-fd") {
		pid, cmd, _ := strings.Cut(p, ": ")
		if n, err := strconv.Atoi(pid); err == nil && strings.Contains(cmd, sb.Sock) {
			pids = append(pids, n)
		}
	}
	return pids
}

// killed waits for a SIGKILL to c/execID from a guard.
func (sb *sandbox) killed(t *testing.T, execID string) {
	t.Helper()
	select {
	case req := <-sb.Signals:
		if req.ContainerId != "c" || req.ExecId != execID || req.Signal != uint32(unix.SIGKILL) {
			t.Errorf("the guard sent %+v, want SIGKILL to c/%s", req, execID)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the guards did not kill the process of their SIGKILLed relay")
	}
}

// TestGuard: a relay that is SIGKILLed (conmon's exec-sync timeout) has its
// guards SIGKILL the process in the guest, an exec'd one or the container's
// init, even after both of the guards it started were SIGKILLed one after
// the other (each one's partner replaces it); a relay that exits with its
// process leaves the process alone.
func TestGuard(t *testing.T) {
	for _, execID := range []string{"e", ""} {
		t.Run("ShimKilled/exec="+execID, func(t *testing.T) {
			sb := newSandbox(t)
			cmd := sb.guardedRelay(t, execID)
			sb.attached(t, 2)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			sb.killed(t, execID)
		})
	}
	t.Run("GuardsKilledFirst", func(t *testing.T) {
		sb := newSandbox(t)
		cmd := sb.guardedRelay(t, "e")
		sb.attached(t, 2)
		first := sb.guards()
		if len(first) != 2 {
			t.Fatalf("guards %v, want 2", first)
		}
		for _, g := range first {
			if err := syscall.Kill(g, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Its partner replaces it.
			deadline := time.Now().Add(waitTimeout)
			for {
				now := sb.guards()
				if len(now) == 2 && !slices.Contains(now, g) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("guard %d killed: guards %v, want another two", g, now)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		sb.killed(t, "e")
		// The replacements, which no test cleanup reaps, exit.
		deadline := time.Now().Add(waitTimeout)
		for len(sb.guards()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("guards left: %v", sb.guards())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("ProcessExited", func(t *testing.T) {
		sb := newSandbox(t)
		cmd := sb.guardedRelay(t, "e")
		s := sb.attached(t, 2)
		closeWrite(t, s[api.Stdout])
		closeWrite(t, s[api.Stderr])
		sb.Exit <- 4
		if got := exitCode(t, cmd); got != 4 {
			t.Fatalf("exit code %d, want 4", got)
		}
		select {
		case req := <-sb.Signals:
			t.Errorf("signal %+v after the process exited by itself", req)
		case <-time.After(500 * time.Millisecond):
		}
		deadline := time.Now().Add(waitTimeout)
		for len(sb.guards()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("guards left after their relay exited: %v", sb.guards())
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
