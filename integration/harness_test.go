//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/oci"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// containerTimeout bounds one container's life in a test, under TCG: each
// takes well under a second, and the whole suite must end long before go
// test's own timeout, whose panic would leave the VM behind.
const containerTimeout = time.Minute

// removeTimeout bounds a container's removal, which the host completes
// even when the agent does not answer.
const removeTimeout = 20 * time.Second

// suite is one booted sandbox in which the tests run their containers.
type suite struct {
	sb     *sandbox.Sandbox
	rootfs testRootfs
	mu     sync.Mutex
	n      int
}

// newID returns a container ID unique in the suite, named after the test.
func (s *suite) newID(t *testing.T) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, filepath.Base(t.Name()))
	return fmt.Sprintf("c%d-%s", s.n, strings.ToLower(name))
}

// spec returns a spec like runc's default (runc spec) for args, on the
// suite's rootfs.
func (s *suite) spec(args ...string) *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args,
			Cwd:  "/",
			Env:  []string{"PATH=/bin", "TERM=xterm"},
		},
		Root:     &specs.Root{Path: s.rootfs.dir},
		Hostname: "cocoon",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
}

// bundle writes spec as a bundle's config.json and loads it, as the
// runtime does.
func bundle(t *testing.T, spec *specs.Spec) *oci.Bundle {
	t.Helper()
	dir := t.TempDir()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, oci.ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := oci.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// container is a container created in the suite's sandbox.
type container struct {
	s   *suite
	id  string
	ag  *agentclient.Client
	pid int
	att *agentclient.Attached
}

// create creates a container from spec with o attached to its init
// process, and registers its removal (checking that its mounts are gone).
func (s *suite) create(ctx context.Context, t *testing.T, spec *specs.Spec, o agentclient.IO) *container {
	t.Helper()
	id := s.newID(t)
	b := bundle(t, spec)
	pid, err := s.sb.CreateContainer(ctx, id, b, o.Config())
	if err != nil {
		t.Fatalf("creating %s: %v", id, err)
	}
	c := &container{s: s, id: id, pid: pid}
	t.Cleanup(func() { c.remove(t) })
	if c.ag, err = s.sb.Client(ctx); err != nil {
		t.Fatal(err)
	}
	if c.att, err = c.ag.Attach(ctx, id, "", o); err != nil {
		t.Fatalf("attaching to %s: %v", id, err)
	}
	return c
}

// remove force-removes the container and checks that the host has nothing
// left of it.
func (c *container) remove(t *testing.T) {
	t.Helper()
	if c.att != nil {
		c.att.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := c.s.sb.RemoveContainer(ctx, c.id, true); err != nil {
		t.Errorf("removing %s: %v", c.id, err)
	}
	dir := c.s.sb.Share().ContainerDir(c.id)
	if mps := mountsUnder(dir); len(mps) > 0 {
		t.Errorf("mounts left after removing %s: %v", c.id, mps)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left after removing %s (%v)", dir, c.id, err)
	}
}

func (c *container) start(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := c.ag.StartContainer(ctx, &api.ContainerRequest{ContainerId: c.id}); err != nil {
		t.Fatalf("starting %s: %v", c.id, err)
	}
}

// wait waits for process execID ("" for init) and for its output.
func (c *container) wait(ctx context.Context, t *testing.T, execID string, att *agentclient.Attached) *api.WaitProcessResponse {
	t.Helper()
	w, err := c.ag.WaitProcess(ctx, &api.ProcessRequest{ContainerId: c.id, ExecId: execID})
	if err != nil {
		t.Fatalf("waiting for %s/%s: %v", c.id, execID, err)
	}
	if att != nil {
		if err := att.Wait(ctx); err != nil {
			t.Fatalf("output of %s/%s: %v", c.id, execID, err)
		}
	}
	return w
}

// exec starts another process in the container with o attached.
func (c *container) exec(ctx context.Context, t *testing.T, execID string, p *specs.Process, o agentclient.IO) *agentclient.Attached {
	t.Helper()
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ag.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: c.id, ExecId: execID, ProcessJson: data, Stdio: o.Config(),
	}); err != nil {
		t.Fatalf("exec %s in %s: %v", execID, c.id, err)
	}
	a, err := c.ag.Attach(ctx, c.id, execID, o)
	if err != nil {
		t.Fatalf("attaching to %s/%s: %v", c.id, execID, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func (c *container) signal(ctx context.Context, t *testing.T, execID string, sig int) {
	t.Helper()
	if _, err := c.ag.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: c.id, ExecId: execID, Signal: uint32(sig)}); err != nil {
		t.Fatalf("signalling %s/%s: %v", c.id, execID, err)
	}
}

// result is what a finished process left.
type result struct {
	stdout, stderr string
	status         int32
	oomKilled      bool
}

// run creates, starts and waits for a container running spec, with stdin
// attached when given, and returns its output and exit status.
func (s *suite) run(t *testing.T, spec *specs.Spec, stdin io.Reader) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	c := s.create(ctx, t, spec, agentclient.IO{Stdin: stdin, Stdout: &stdout, Stderr: &stderr})
	c.start(ctx, t)
	w := c.wait(ctx, t, "", c.att)
	return result{stdout: stdout.String(), stderr: stderr.String(), status: w.ExitStatus, oomKilled: w.OomKilled}
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// poll calls cond until it is true or ctx ends.
func poll(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mountsUnder lists the mount points at or under dir in
// /proc/self/mountinfo.
func mountsUnder(dir string) []string {
	mps, err := testutil.MountsUnder(dir)
	if err != nil {
		return []string{"reading mountinfo: " + err.Error()}
	}
	return mps
}
