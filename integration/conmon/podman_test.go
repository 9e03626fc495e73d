//go:build integration

package conmon_test

import (
	"strings"
	"testing"
)

// TestPodmanExecAttach runs an exec the way Podman does through conmon
// (API version 1, --exec-attach): the runtime sees the same `exec --detach`
// as under CRI-O, while its stdin and output go through conmon's attach
// socket and its status comes back on the sync pipe.
func TestPodmanExecAttach(t *testing.T) {
	s := baseSpec(t, "sleep", "600")
	c := newContainer(t, "podman-exec", s)
	create(t, c)
	mustRun(t, "start", c.ID)

	ex, err := e.rt.ExecAttach(ctx(t), c, t.TempDir(), s.Process,
		[]string{"sh", "-c", `read line; echo "got $line"; echo err >&2; exit 8`}, true)
	if err != nil {
		t.Fatal(err)
	}
	// The process waits for its stdin: its shim is the PID conmon got.
	if cl := cmdline(ex.Pid); !strings.Contains(cl, "cocoon-relay") {
		t.Errorf("exec pid %d is %q, want its cocoon-relay", ex.Pid, cl)
	}
	if _, err := ex.Conn.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	if err := ex.Conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := ex.Output()
	if err != nil {
		t.Fatal(err)
	}
	code, err := ex.Wait(ctx(t))
	if err != nil || code != 8 {
		t.Errorf("exit status %d, %v; want 8", code, err)
	}
	if string(stdout) != "got typed\n" || string(stderr) != "err\n" {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
}
