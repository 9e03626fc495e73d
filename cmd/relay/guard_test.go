package main

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
)

// TestGuard: a relay that is SIGKILLed (conmon's exec-sync timeout) has its
// guard SIGKILL the process in the guest, an exec'd one or the container's
// init; a relay that exits with its process leaves the process alone.
func TestGuard(t *testing.T) {
	for _, execID := range []string{"e", ""} {
		t.Run("ShimKilled/exec="+execID, func(t *testing.T) {
			sb := newSandbox(t)
			var args []string
			if execID != "" {
				args = []string{"--exec", execID}
			}
			cmd := sb.relayCmd(args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out // stdin: /dev/null
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sb.attached(t, 2)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			select {
			case req := <-sb.Signals:
				if req.ContainerId != "c" || req.ExecId != execID || req.Signal != uint32(unix.SIGKILL) {
					t.Errorf("the guard sent %+v, want SIGKILL to c/%s", req, execID)
				}
			case <-time.After(waitTimeout):
				t.Fatal("the guard did not kill the process of its SIGKILLed relay")
			}
		})
	}
	t.Run("ProcessExited", func(t *testing.T) {
		sb := newSandbox(t)
		cmd := sb.relayCmd("--exec", "e")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out // stdin: /dev/null
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
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
	})
}
