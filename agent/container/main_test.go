package container

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runc init's namespace setup
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agent/container/containertest"
	"github.com/cocoon-containers/cocoon/agent/reaper"
)

// These tests run containers on the host the tests run on, directly with
// this package: they need root and cgroups (v1 or v2; libcontainer handles
// both) and Debian's busybox-static at /bin/busybox, from which TestMain
// builds the rootfs. Like the agent, the test binary is its own "runc init":
// libcontainer re-executes it with the argument "init".

// testEnv is what TestMain sets up once for all tests.
type testEnv struct {
	rootfs       string // busybox rootfs, shared (tests write under /tmp only in their own files)
	reaper       *reaper.Reaper
	cgroupParent string
}

var env testEnv // set by TestMain only, read by tests

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // does not return
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "container tests need root: they run containers on this host")
		return 1
	}
	dir, err := os.MkdirTemp("", "cocoon-container-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Built before the reaper runs: exec.Cmd waits for busybox itself.
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BuildRootfs(rootfs); err != nil {
		fmt.Fprintln(os.Stderr, "building the busybox rootfs:", err)
		return 1
	}
	// As PID 1 of the guest, adopt orphans, and reap everything.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "becoming a subreaper:", err)
		return 1
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	r := reaper.New(logrus.NewEntry(log))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	env = testEnv{rootfs: rootfs, reaper: r, cgroupParent: fmt.Sprintf("/cocoon-test-%d", os.Getpid())}
	defer removeCgroupParent(env.cgroupParent)
	return m.Run()
}

// removeCgroupParent removes the test's parent cgroup in every hierarchy.
func removeCgroupParent(parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	dirs = append(dirs, "/sys/fs/cgroup"+parent)
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

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

// newManager returns a manager whose containers are all removed at the end
// of the test.
func newManager(t *testing.T) *Manager {
	t.Helper()
	m, err := NewManager(Config{
		Root:         t.TempDir(),
		CgroupParent: env.cgroupParent,
		MountDir:     searchableDir(t),
		Reaper:       env.reaper,
		Log:          testLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutting the manager down: %v", err)
		}
	})
	return m
}

// searchableDir returns a new directory that every user can search (a
// test's TempDir is not): the agent's MountDir, or a root file system's
// parent, which the root of a user namespace must reach.
func searchableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cocoon-container-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testSpec is runc's default spec for the busybox rootfs, running args.
func testSpec(args ...string) *specs.Spec {
	return containertest.Spec(env.rootfs, args...)
}

// ctxT returns a context that ends after d.
func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// streamPair returns the two ends of a connected stream: the agent's, to
// attach, and the host's. Both are *net.UnixConn, with CloseWrite.
func streamPair(t *testing.T) (agent, host *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "stream")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	agent, host = conn(fds[0]), conn(fds[1])
	t.Cleanup(func() { agent.Close(); host.Close() })
	return agent, host
}

// attachOutput attaches stream s of p and returns a channel that delivers
// everything read from it, once the agent closes it.
func attachOutput(t *testing.T, p *Process, s Stream) <-chan []byte {
	t.Helper()
	agent, host := streamPair(t)
	if err := p.Attach(s, agent); err != nil {
		t.Fatalf("attaching %s: %v", s, err)
	}
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(host)
		ch <- b
	}()
	return ch
}

// attachInput attaches p's stdin and returns the host's end.
func attachInput(t *testing.T, p *Process) *net.UnixConn {
	t.Helper()
	agent, host := streamPair(t)
	if err := p.Attach(Stdin, agent); err != nil {
		t.Fatalf("attaching stdin: %v", err)
	}
	return host
}

func recv(t *testing.T, ch <-chan []byte) string {
	t.Helper()
	select {
	case b := <-ch:
		return string(b)
	case <-time.After(20 * time.Second):
		t.Fatal("no output")
	}
	return ""
}

// run creates and starts a container from spec with stdout and stderr
// attached, waits for it, and returns its output and exit status.
func run(t *testing.T, m *Manager, id string, spec *specs.Spec) (stdout, stderr string, st ExitStatus) {
	t.Helper()
	c, err := m.Create(ctxT(t, 20*time.Second), id, spec, StdioConfig{Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	out, errOut := attachOutput(t, c.Init(), Stdout), attachOutput(t, c.Init(), Stderr)
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err = c.Init().Wait(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return recv(t, out), recv(t, errOut), st
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
