package container

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// These tests check the rlimits of containers' processes (issue 23): what
// the spec sets, and what it leaves out, which must be the agent's limits
// as it started, not what the agent's Go runtime or its libraries made of
// them since.

// limitsScript prints the soft and hard RLIMIT_CORE, RLIMIT_NOFILE and
// RLIMIT_MEMLOCK of the process, one line each.
const limitsScript = "grep -E '^Max (core file size|open files|locked memory) ' /proc/self/limits | tr -s ' '"

// limitLines is what limitsScript prints for these limits.
func limitLines(core, nofile, memlock unix.Rlimit) string {
	v := func(n uint64) string {
		if n == unix.RLIM_INFINITY {
			return "unlimited"
		}
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("Max core file size %s %s bytes \nMax open files %s %s files \nMax locked memory %s %s bytes \n",
		v(core.Cur), v(core.Max), v(nofile.Cur), v(nofile.Max), v(memlock.Cur), v(memlock.Max))
}

func getrlimit(t *testing.T, resource int) unix.Rlimit {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Getrlimit(resource, &rl); err != nil {
		t.Fatal(err)
	}
	return rl
}

// execOutput runs pr in c and returns its stdout once it has exited 0.
func execOutput(t *testing.T, c *Container, execID string, pr *specs.Process) string {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	p, err := c.Exec(ctx, execID, pr, StdioConfig{Stdout: true})
	if err != nil {
		t.Fatalf("exec %s: %v", execID, err)
	}
	out := attachOutput(t, p, Stdout)
	st, err := p.Wait(ctx)
	if err != nil {
		t.Fatalf("exec %s: %v", execID, err)
	}
	if st.Code != 0 {
		t.Errorf("exec %s: status %d", execID, st.Code)
	}
	return recv(t, out)
}

// TestRlimitsLeftOutAreTheAgents changes the agent's RLIMIT_MEMLOCK once
// the manager exists, as the cgroup v2 device filter loader does when a
// container is created (it raises it to unlimited; the test lowers it,
// which needs no CAP_SYS_RESOURCE: root lacks it on some hosts). The
// containers' processes must keep the limit the agent started with: the
// init process, exec'd processes with and without rlimits of their own,
// while the limits the specs set hold.
func TestRlimitsLeftOutAreTheAgents(t *testing.T) {
	m := newManager(t)
	memlock, core := getrlimit(t, unix.RLIMIT_MEMLOCK), getrlimit(t, unix.RLIMIT_CORE)
	if memlock.Cur < 2 {
		t.Fatalf("RLIMIT_MEMLOCK %+v: too low to lower", memlock)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: memlock.Cur / 2, Max: memlock.Max}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &memlock); err != nil {
			t.Errorf("restoring RLIMIT_MEMLOCK: %v", err)
		}
	})

	spec := testSpec("sh", "-c", limitsScript)
	spec.Process.Rlimits = []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 3000, Hard: 3999},
		{Type: "RLIMIT_CORE", Soft: 1000, Hard: 2000},
	}
	containerCore, containerNofile := unix.Rlimit{Cur: 1000, Max: 2000}, unix.Rlimit{Cur: 3000, Max: 3999}
	stdout, stderr, st := run(t, m, "rlimits-init", spec)
	if want := limitLines(containerCore, containerNofile, memlock); stdout != want || stderr != "" || st.Code != 0 {
		t.Errorf("init: stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
	}

	spec.Process.Args = []string{"sleep", "100"}
	c := startContainer(t, m, "rlimits-exec", spec)
	// Without rlimits of its own, an exec'd process gets the container's.
	if got, want := execOutput(t, c, "container", process("sh", "-c", limitsScript)), limitLines(containerCore, containerNofile, memlock); got != want {
		t.Errorf("exec with the container's rlimits: %q, want %q", got, want)
	}
	// With its own, it gets those, and the agent's for the others, as
	// runc exec gets runc's caller's.
	own := process("sh", "-c", limitsScript)
	own.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200}}
	if got, want := execOutput(t, c, "own", own), limitLines(core, unix.Rlimit{Cur: 100, Max: 200}, memlock); got != want {
		t.Errorf("exec with rlimits of its own: %q, want %q", got, want)
	}
}

// TestNofileLeftOutIsTheAgentsOriginal checks that a container whose spec
// sets no RLIMIT_NOFILE gets the soft limit the agent started with, not the
// one its Go runtime raised it to. The test process's own soft limit is
// not raised (it starts at its hard limit here), so the test runs itself
// again under prlimit with a soft limit below the hard one, as the guest
// kernel starts the agent (1024 and 4096).
func TestNofileLeftOutIsTheAgentsOriginal(t *testing.T) {
	const child = "COCOON_TEST_NOFILE_CHILD"
	if os.Getenv(child) == "" {
		prlimit, err := exec.LookPath("prlimit")
		if err != nil {
			t.Fatalf("prlimit (util-linux) is needed to start the test with a low soft RLIMIT_NOFILE: %v", err)
		}
		cmd := exec.Command(prlimit, "--nofile=1024:4096", "--", os.Args[0], "-test.run=^TestNofileLeftOutIsTheAgentsOriginal$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), child+"=1")
		out, code := runReaped(t, cmd)
		if code != 0 || !strings.Contains(out, "--- PASS: TestNofileLeftOutIsTheAgentsOriginal") {
			t.Fatalf("the test under prlimit: status %d\n%s", code, out)
		}
		t.Logf("under prlimit --nofile=1024:4096:\n%s", out)
		return
	}
	// Go raised the soft limit at start-up (to the hard limit less one).
	if own := getrlimit(t, unix.RLIMIT_NOFILE); own.Cur == 1024 || own.Max != 4096 {
		t.Fatalf("RLIMIT_NOFILE %+v: the Go runtime did not raise the soft limit from 1024", own)
	}
	m := newManager(t)
	spec := testSpec("sh", "-c", "ulimit -Sn; ulimit -Hn")
	spec.Process.Rlimits = nil
	stdout, stderr, st := run(t, m, "nofile-init", spec)
	if stdout != "1024\n4096\n" || stderr != "" || st.Code != 0 {
		t.Errorf("init: stdout %q, stderr %q, status %d; want 1024 and 4096", stdout, stderr, st.Code)
	}
	spec.Process.Args = []string{"sleep", "100"}
	c := startContainer(t, m, "nofile-exec", spec)
	if got := execOutput(t, c, "exec", process("sh", "-c", "ulimit -Sn; ulimit -Hn")); got != "1024\n4096\n" {
		t.Errorf("exec: %q, want 1024 and 4096", got)
	}
}

// runReaped runs cmd to its end and returns its output and exit status.
// The test's reaper collects every child (as the agent's does), so the
// exit status comes from it, not from exec.Cmd's Wait, and the output
// goes through a file, which needs no copying goroutine to wait for.
func runReaped(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "output")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	exits, err := env.reaper.Start(func() (int, error) {
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case e := <-exits:
		code = e.ExitCode()
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("%v did not finish", cmd.Args)
	}
	out, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestWithInherited(t *testing.T) {
	inherited := []configs.Rlimit{
		{Type: unix.RLIMIT_CORE, Soft: 0, Hard: 10},
		{Type: unix.RLIMIT_MEMLOCK, Soft: 20, Hard: 30},
	}
	for name, tc := range map[string]struct {
		in, want []configs.Rlimit
	}{
		"none":     {nil, inherited},
		"other":    {[]configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 1, Hard: 2}}, append([]configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 1, Hard: 2}}, inherited...)},
		"override": {[]configs.Rlimit{{Type: unix.RLIMIT_MEMLOCK, Soft: 1, Hard: 2}}, []configs.Rlimit{{Type: unix.RLIMIT_MEMLOCK, Soft: 1, Hard: 2}, inherited[0]}},
	} {
		in := append([]configs.Rlimit(nil), tc.in...)
		if got := withInherited(tc.in, inherited); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
		if fmt.Sprint(in) != fmt.Sprint(tc.in) {
			t.Errorf("%s: the input was modified", name)
		}
	}
}

func TestOwnRlimits(t *testing.T) {
	rls, err := ownRlimits()
	if err != nil {
		t.Fatal(err)
	}
	if len(rls) != len(rlimitTypes)-2 {
		t.Errorf("%d limits, want every resource but RLIMIT_NOFILE and RLIMIT_AS: %v", len(rls), rls)
	}
	memlock := getrlimit(t, unix.RLIMIT_MEMLOCK)
	for i, rl := range rls {
		if rl.Type == unix.RLIMIT_NOFILE || rl.Type == unix.RLIMIT_AS {
			t.Errorf("resource %d listed", rl.Type)
		}
		if i > 0 && rls[i-1].Type >= rl.Type {
			t.Errorf("not in resource order: %v", rls)
		}
		if rl.Type == unix.RLIMIT_MEMLOCK && (rl.Soft != memlock.Cur || rl.Hard != memlock.Max) {
			t.Errorf("RLIMIT_MEMLOCK %d/%d, the process has %+v", rl.Soft, rl.Hard, memlock)
		}
	}
}
