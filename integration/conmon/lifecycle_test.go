//go:build integration

package conmon_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/conmontest"
)

// TestExitCode runs a container that writes to stdout and stderr and exits
// 3: conmon's create with the sync and start pipes gives the shim's PID,
// start runs it, the k8s-file log holds both streams, the exit directory
// the status; then KILL finds it not running, and delete --force leaves
// nothing (no VM, no conmon). Once with CRI-O's cgroupfs manager, once
// with its systemd one (conmon -s, runtime --systemd-cgroup).
func TestExitCode(t *testing.T) {
	t.Run("cgroupfs", func(t *testing.T) { testExitCode(t, e.rt) })
	t.Run("systemd", func(t *testing.T) {
		rt := *e.rt
		rt.SystemdCgroup = true
		testExitCode(t, &rt)
	})
}

// testExitCode runs TestExitCode with rt as the suite's runtime (the
// helpers use e.rt; create's cleanup keeps the runtime it created with).
func testExitCode(t *testing.T, rt *conmontest.Runtime) {
	saved := e.rt
	e.rt = rt
	defer func() { e.rt = saved }()
	id := "exitcode-cgroupfs"
	if rt.SystemdCgroup {
		id = "exitcode-systemd"
	}
	c := newContainer(t, id, baseSpec(t, "sh", "-c", "echo out; echo err >&2; exit 3"))
	pid := create(t, c)
	if st := status(t, c.ID); st.Status != "created" || st.Pid != pid {
		t.Errorf("after create: %+v, conmon said pid %d", st, pid)
	}
	if cl := cmdline(pid); !strings.Contains(cl, "cocoon-relay") {
		t.Errorf("container pid %d is %q, want its cocoon-relay", pid, cl)
	}
	if qemuCount() != 1 {
		t.Errorf("%d QEMU processes after create, want 1", qemuCount())
	}
	restored(t)
	mustRun(t, "start", c.ID)
	if code := exitCode(t, c.ID); code != 3 {
		t.Errorf("exit file: %d, want 3", code)
	}
	stdout, stderr := readLog(t, c)
	if stdout != "out\n" || stderr != "err\n" {
		t.Errorf("log: stdout %q, stderr %q", stdout, stderr)
	}
	if st := status(t, c.ID); st.Status != "stopped" {
		t.Errorf("after exit: %+v", st)
	}
	_, err := e.rt.Run(ctx(t), nil, "kill", c.ID, "KILL")
	notRunning(t, "kill KILL of an exited container", err)
	remove(t, c)
	if _, err := e.rt.State(ctx(t), c.ID); err == nil {
		t.Errorf("state after delete --force succeeded")
	}
	if n := qemuCount(); n != 0 {
		t.Errorf("%d QEMU processes after delete, want 0", n)
	}
}

// TestRunning drives a running container as CRI-O does: exec-sync
// through conmon --exec (and one that times out), streaming exec in the
// foreground with and without a terminal, update --resources -, pause and
// resume, then the stop loop (kill 15, kill KILL of the stopped
// container). Its VM was restored from the suite's template.
func TestRunning(t *testing.T) {
	s := baseSpec(t, "sh", "-c", `trap "echo term; exit 7" TERM; echo ready; while :; do sleep 0.2; done`)
	c := newContainer(t, "running", s)
	create(t, c)
	mustRun(t, "start", c.ID)
	waitLog(t, c, "ready\n")
	restored(t)

	t.Run("ExecSync", func(t *testing.T) {
		// No cgroup namespace: the container's cgroup is under the
		// guest's /sys/fs/cgroup at its path.
		res, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"sh", "-c", "echo hi; echo oops >&2; exit 4"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 4 || string(res.Stdout) != "hi\n" || string(res.Stderr) != "oops\n" {
			t.Errorf("exec-sync: exit %d, stdout %q, stderr %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		res, err = e.rt.ExecSync(ctx(t), c, s.Process, []string{"true"}, 0)
		if err != nil || res.ExitCode != 0 {
			t.Errorf("exec-sync of true: %+v, %v", res, err)
		}
	})
	t.Run("ExecSyncTimeout", func(t *testing.T) {
		// A Kubernetes exec probe with a timeout: conmon -T SIGKILLs the
		// exec's PID (its shim), and the process in the guest must die
		// with it, as it would with runc.
		res, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"sleep", "77"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != -1 || !strings.Contains(string(res.Stderr), "timed out") {
			t.Errorf("exec-sync -T 2 of sleep 77: exit %d, stderr %q; want -1, timed out", res.ExitCode, res.Stderr)
		}
		// Well before sleep's own end.
		deadline := time.Now().Add(killedWithin)
		for {
			ps, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"ps", "-o", "args"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(ps.Stdout), "sleep 77") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the timed-out exec still runs in the guest:\n%s", ps.Stdout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	t.Run("ExecStreaming", func(t *testing.T) {
		pf, err := conmontest.WriteProcess(t.TempDir(), s.Process, []string{"sh", "-c", "cat; echo done >&2; exit 5"}, false)
		if err != nil {
			t.Fatal(err)
		}
		cmd := e.rt.ExecCommand(ctx(t), c.ID, pf)
		var stdout, stderr bytes.Buffer
		cmd.Stdin = strings.NewReader("from stdin\n")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 5 || stdout.String() != "from stdin\n" || stderr.String() != "done\n" {
			t.Errorf("exec: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
	})
	t.Run("ExecTerminal", func(t *testing.T) {
		pf, err := conmontest.WriteProcess(t.TempDir(), s.Process, []string{"sh", "-c",
			`tty; stty size; stty -echo; read line; stty size; echo "got $line"; exit 6`}, true)
		if err != nil {
			t.Fatal(err)
		}
		cmd := e.rt.ExecCommand(ctx(t), c.ID, pf)
		// As CRI-O's ttyCmd: the runtime runs on a pty's slave, and a
		// resize is a TIOCSWINSZ on the master.
		master, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer master.Close()
		term := newPtyReader(master)
		term.waitFor(t, "30 100")
		if err := pty.Setsize(master, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		// Let the resize reach the guest before the process reads it.
		time.Sleep(500 * time.Millisecond)
		if _, err := master.Write([]byte("typed\r")); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		got := term.end(t)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 6 {
			t.Errorf("exec -t: %v, want exit 6 (output %q)", err, got)
		}
		if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "40 120") || !strings.Contains(got, "got typed") {
			t.Errorf("exec -t output %q: want a tty name, the new size 40 120 and the typed line", got)
		}
	})
	t.Run("UpdateResources", func(t *testing.T) {
		limit := int64(80 << 20)
		if err := e.rt.Update(ctx(t), c.ID, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
			t.Fatal(err)
		}
		// No cgroup namespace: the container's cgroup is under the
		// guest's /sys/fs/cgroup at its path.
		res, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"sh", "-c",
			"cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max"}, 0)
		if err != nil || res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "83886080" {
			t.Errorf("memory limit in the guest after update: %+v, %v", res, err)
		}
	})

	t.Run("PauseResume", func(t *testing.T) {
		mustRun(t, "pause", c.ID)
		if st := status(t, c.ID); st.Status != "paused" {
			t.Errorf("after pause: %+v", st)
		}
		mustRun(t, "resume", c.ID)
		if st := status(t, c.ID); st.Status != "running" {
			t.Errorf("after resume: %+v", st)
		}
		res, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"true"}, 0)
		if err != nil || res.ExitCode != 0 {
			t.Errorf("exec-sync after resume: %+v, %v", res, err)
		}
	})

	// CRI-O's stop loop: the stop signal (by number, as SignalContainer
	// sends it), then KILL until the runtime says "not running".
	mustRun(t, "kill", c.ID, "15")
	if code := exitCode(t, c.ID); code != 7 {
		t.Errorf("exit file after kill 15: %d, want 7 (the trap's)", code)
	}
	waitLog(t, c, "term\n")
	_, err := e.rt.Run(ctx(t), nil, "kill", c.ID, "KILL")
	notRunning(t, "kill KILL of a stopped container", err)
}

// TestStdin creates a container with stdin (conmon -i, stdin once, as
// kubectl run -i): what a client attached to conmon's socket writes reaches
// the process in the VM, and its end of input ends the process's stdin.
func TestStdin(t *testing.T) {
	s := baseSpec(t, "sh", "-c", `while read line; do echo "got $line"; done; echo eof; exit 9`)
	c := newContainer(t, "stdin", s)
	c.Stdin, c.StdinOnce = true, true
	create(t, c)
	conn, err := e.rt.Attach(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mustRun(t, "start", c.ID)
	if _, err := conn.Write([]byte("one\ntwo\n")); err != nil {
		t.Fatal(err)
	}
	waitLog(t, c, "got one\ngot two\n")
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, c.ID); code != 9 {
		t.Errorf("exit file: %d, want 9", code)
	}
	if stdout, _ := readLog(t, c); stdout != "got one\ngot two\neof\n" {
		t.Errorf("log: %q", stdout)
	}
}

// TestTerminal creates a container with a terminal (conmon -t: the
// runtime sends the pty master to conmon's console socket) and runs an
// exec-sync in it, which then has a terminal too.
func TestTerminal(t *testing.T) {
	s := baseSpec(t, "sh", "-c", "tty; echo ready; exec sleep 600")
	s.Process.Terminal = true
	c := newContainer(t, "terminal", s)
	create(t, c)
	mustRun(t, "start", c.ID)
	waitLog(t, c, "ready")
	if stdout, _ := readLog(t, c); !strings.Contains(stdout, "/dev/pts/") {
		t.Errorf("log of a terminal container: %q", stdout)
	}
	res, err := e.rt.ExecSync(ctx(t), c, s.Process, []string{"tty"}, 0)
	if err != nil || res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "/dev/pts/") {
		t.Errorf("exec-sync with a terminal: %+v, %v", res, err)
	}
	// By name this time; sleep is PID 1 and ignores TERM, not KILL.
	mustRun(t, "kill", c.ID, "KILL")
	if code := exitCode(t, c.ID); code != 137 {
		t.Errorf("exit file after kill KILL: %d, want 137", code)
	}
}

// killedWithin bounds how long a process whose shim was SIGKILLed may
// live on in the guest (its shim's guard kills it at once).
const killedWithin = 20 * time.Second

// TestShimKilled SIGKILLs a container's PID (its shim), as conmon -T or
// the host's OOM killer would: as with runc the container dies (it stops
// writing its heartbeat into a host directory), conmon records 137, and
// the runtime calls it stopped.
func TestShimKilled(t *testing.T) {
	hb := t.TempDir()
	s := baseSpec(t, "sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /hb/beat; sleep 0.1; done")
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hb", Type: "bind", Source: hb, Options: []string{"rbind", "rw"}})
	c := newContainer(t, "shimkilled", s)
	pid := create(t, c)
	mustRun(t, "start", c.ID)
	beat := func() string {
		data, _ := os.ReadFile(filepath.Join(hb, "beat"))
		return string(data)
	}
	deadline := time.Now().Add(commandTimeout)
	for first := beat(); first == "" || beat() == first; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat from the container")
		}
		if first == "" {
			first = beat()
		}
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, c.ID); code != 137 {
		t.Errorf("exit file after SIGKILL of the container pid: %d, want 137", code)
	}
	// The guest container dies: the heartbeat stops.
	deadline = time.Now().Add(killedWithin)
	var last string
	for stable := 0; stable < 10; time.Sleep(200 * time.Millisecond) {
		if b := beat(); b == last {
			stable++
		} else {
			last, stable = b, 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the container still runs in the guest after its shim was SIGKILLed")
		}
	}
	if st := status(t, c.ID); st.Status != "stopped" {
		t.Errorf("state after SIGKILL: %+v", st)
	}
}

// TestCreateFails: a bundle without its root file system fails in create;
// conmon reports the runtime's error on the sync pipe, and nothing is
// left.
func TestCreateFails(t *testing.T) {
	s := baseSpec(t, "true")
	s.Root.Path = filepath.Join(t.TempDir(), "missing")
	c := newContainer(t, "badbundle", s)
	_, err := e.rt.Create(ctx(t), c)
	if err == nil {
		remove(t, c)
		t.Fatal("create of a bundle without rootfs succeeded")
	}
	t.Logf("create: %v", err)
	if !strings.Contains(err.Error(), "rootfs") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("create error %q does not name the problem", err)
	}
	if _, err := os.Stat(filepath.Join(e.rt.Root, c.ID)); !os.IsNotExist(err) {
		t.Errorf("state of the failed container: %v", err)
	}
	if cpid, err := e.rt.ConmonPid(c); err == nil {
		waitGone(t, cpid)
	}
}

// ptyReader collects what a pty master reads.
type ptyReader struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func newPtyReader(master io.Reader) *ptyReader {
	r := &ptyReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			r.mu.Lock()
			r.buf.Write(b[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *ptyReader) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// waitFor waits until the output contains want.
func (r *ptyReader) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for !strings.Contains(r.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal output %q without %q", r.String(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// end waits for the master's end of file (the slave's last holder gone)
// and returns the whole output.
func (r *ptyReader) end(t *testing.T) string {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the pty did not reach its end after the exec exited")
	}
	return r.String()
}
