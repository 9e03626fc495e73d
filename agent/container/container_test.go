package container

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestRunStdoutStderrStatus(t *testing.T) {
	m := newManager(t)
	stdout, stderr, st := run(t, m, "outerr", testSpec("sh", "-c", "echo out; echo err >&2; exit 3"))
	if stdout != "out\n" || stderr != "err\n" || st.Code != 3 || st.OOMKilled {
		t.Errorf("stdout %q, stderr %q, status %+v; want out, err, 3", stdout, stderr, st)
	}
	if st.At.IsZero() || time.Since(st.At) > time.Minute {
		t.Errorf("exit time %v", st.At)
	}
}

func TestStdinEOF(t *testing.T) {
	// cat echoes stdin until the host closes its side of the stream.
	m := newManager(t)
	c, err := m.Create(ctxT(t, 20*time.Second), "cat", testSpec("cat"), StdioConfig{Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	in := attachInput(t, c.Init())
	out := attachOutput(t, c.Init(), Stdout)
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	const text = "hello\nworld\n"
	if _, err := in.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if err := in.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Init().Wait(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(t, out); got != text || st.Code != 0 {
		t.Errorf("cat printed %q, status %d; want %q, 0", got, st.Code, text)
	}
}

func TestCloseStdin(t *testing.T) {
	// CloseStdin ends stdin as closing the stream does, with the stream
	// still open.
	m := newManager(t)
	c, err := m.Create(ctxT(t, 20*time.Second), "closestdin", testSpec("cat"), StdioConfig{Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	in := attachInput(t, c.Init())
	out := attachOutput(t, c.Init(), Stdout)
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	// Let the relay pass the bytes on before closing.
	time.Sleep(50 * time.Millisecond)
	c.Init().CloseStdin()
	st, err := c.Init().Wait(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(t, out); got != "abc" || st.Code != 0 {
		t.Errorf("cat printed %q, status %d; want abc, 0", got, st.Code)
	}
}

// writeData puts size random bytes at /name in the shared rootfs and
// returns their SHA-256.
func writeData(t *testing.T, name string, size int) [32]byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(env.rootfs, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return sha256.Sum256(data)
}

func TestLargeOutput(t *testing.T) {
	// 64 MiB written by a process that exits as soon as it has written
	// it all arrives complete, and before the exit status.
	const size = 64 << 20
	sum := writeData(t, "data-64m", size)
	m := newManager(t)
	c, err := m.Create(ctxT(t, 20*time.Second), "large", testSpec("dd", "if=/data-64m", "bs=1M"), StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	agent, host := streamPair(t)
	if err := c.Init().Attach(Stdout, agent); err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		h := sha256.New()
		n, err := io.CopyBuffer(h, host, make([]byte, 1<<20))
		var r result
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}()
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st, err := c.Init().Wait(ctxT(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	elapsed := time.Since(start)
	if r.err != nil || r.n != size || r.sum != sum || st.Code != 0 {
		t.Fatalf("got %d bytes (err %v, sum match %v), status %d; want %d bytes, 0", r.n, r.err, r.sum == sum, st.Code, size)
	}
	t.Logf("64 MiB of stdout in %v: %.0f MB/s", elapsed, float64(size)/elapsed.Seconds()/1e6)
}

func TestOutputAttachedAfterExit(t *testing.T) {
	// The process writes less than the pipe holds and exits before the
	// host attaches: nothing is lost, and Wait waits for the stream.
	const size = 768 << 10
	sum := writeData(t, "data-768k", size)
	m := newManager(t)
	c, err := m.Create(ctxT(t, 20*time.Second), "late", testSpec("dd", "if=/data-768k", "bs=256k"), StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "the process to exit", func() bool { _, done := c.Init().Exited(); return done })
	waited := make(chan error, 1)
	go func() { _, err := c.Init().Wait(ctxT(t, 20*time.Second)); waited <- err }()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned before the stdout stream was attached: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	out := attachOutput(t, c.Init(), Stdout)
	got := recv(t, out)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if len(got) != size || sha256.Sum256([]byte(got)) != sum {
		t.Errorf("got %d bytes (sum match %v), want %d", len(got), sha256.Sum256([]byte(got)) == sum, size)
	}
}

func TestWaitDoesNotWaitForBackgroundHolders(t *testing.T) {
	// A background child keeps stdout open after the process exits: Wait
	// returns once what the process wrote is through, and the stream
	// carries the child's output until it exits too.
	m := newManager(t)
	spec := testSpec("sleep", "1000")
	c := startContainer(t, m, "holders", spec)
	p, err := c.Exec(ctxT(t, 10*time.Second), "bg", process("sh", "-c", "echo first; (sleep 0.5; echo second) & exit 4"), StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	out := attachOutput(t, p, Stdout)
	start := time.Now()
	st, err := p.Wait(ctxT(t, 10*time.Second))
	if err != nil || st.Code != 4 {
		t.Fatalf("Wait = %+v, %v; want 4", st, err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("Wait took %v: it waited for the background child", d)
	}
	if got := recv(t, out); got != "first\nsecond\n" {
		t.Errorf("stdout %q", got)
	}
}

// termReader collects what the host reads from a terminal stream.
type termReader struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func readTerminal(r io.Reader) *termReader {
	tr := &termReader{done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			tr.mu.Lock()
			tr.buf.Write(b[:n])
			tr.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tr
}

func (tr *termReader) String() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.buf.String()
}

func TestTerminal(t *testing.T) {
	m := newManager(t)
	spec := testSpec("sh", "-c", "tty; read line; stty size")
	spec.Process.Terminal = true
	c, err := m.Create(ctxT(t, 20*time.Second), "tty", spec, StdioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	agent, host := streamPair(t)
	if err := c.Init().Attach(Terminal, agent); err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(host)
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "tty's output", func() bool { return strings.Contains(tr.String(), "\n") })
	if err := c.Init().Resize(30, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	st, err := c.Init().Wait(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	<-tr.done
	// The terminal echoes the input line; output lines end in \r\n.
	if got, want := tr.String(), "/dev/pts/0\r\ngo\r\n30 100\r\n"; got != want || st.Code != 0 {
		t.Errorf("terminal %q, status %d; want %q, 0", got, st.Code, want)
	}
}

func TestTerminalResizeSendsSIGWINCH(t *testing.T) {
	m := newManager(t)
	spec := testSpec("sh", "-c", `trap 'stty size; exit 0' WINCH; tty; while :; do sleep 0.02; done`)
	spec.Process.Terminal = true
	c, err := m.Create(ctxT(t, 20*time.Second), "winch", spec, StdioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	agent, host := streamPair(t)
	if err := c.Init().Attach(Terminal, agent); err != nil {
		t.Fatal(err)
	}
	tr := readTerminal(host)
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "tty's output", func() bool { return strings.Contains(tr.String(), "\n") })
	if err := c.Init().Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	st, err := c.Init().Wait(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	<-tr.done
	if got, want := tr.String(), "/dev/pts/0\r\n40 120\r\n"; got != want || st.Code != 0 {
		t.Errorf("terminal %q, status %d; want %q, 0", got, st.Code, want)
	}
}

// startContainer creates and starts a container without stdio.
func startContainer(t *testing.T, m *Manager, id string, spec *specs.Spec) *Container {
	t.Helper()
	c, err := m.Create(ctxT(t, 20*time.Second), id, spec, StdioConfig{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := c.Start(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// process returns an OCI process running args as root in /.
func process(args ...string) *specs.Process {
	return &specs.Process{
		Args: args,
		Cwd:  "/",
		Env:  []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
	}
}

func TestExecSignalPsStats(t *testing.T) {
	m := newManager(t)
	c := startContainer(t, m, "exec", testSpec("sleep", "1000"))
	ctx := ctxT(t, 20*time.Second)

	p, err := c.Exec(ctx, "hello", process("sh", "-c", "echo hello from exec; id -u"), StdioConfig{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	out := attachOutput(t, p, Stdout)
	st, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := recv(t, out); got != "hello from exec\n0\n" || st.Code != 0 {
		t.Errorf("exec printed %q, status %d", got, st.Code)
	}

	sleeper, err := c.Exec(ctx, "sleeper", process("sleep", "999"), StdioConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Exec returns once runc init runs in the container; it then execs
	// the program.
	var ps []ProcessInfo
	poll(t, 10*time.Second, "the exec'd sleep in the process list", func() bool {
		if ps, err = c.Processes(ctx); err != nil {
			t.Fatal(err)
		}
		var cmdlines []string
		for _, pi := range ps {
			cmdlines = append(cmdlines, pi.Cmdline)
		}
		if strings.Join(cmdlines, ",") != "sleep 1000,sleep 999" {
			return false
		}
		for _, pi := range ps {
			if pi.Pid == sleeper.Pid() && pi.State == "S" && pi.RSSBytes > 0 {
				return true
			}
		}
		return false
	})
	for _, pi := range ps {
		if pi.UID != 0 || pi.Ppid == 0 || pi.StartTicks == 0 {
			t.Errorf("process info %+v", pi)
		}
	}

	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Memory.Usage.Usage == 0 || stats.Pids.Current != 2 {
		t.Errorf("stats: memory usage %d, pids %d; want > 0, 2", stats.Memory.Usage.Usage, stats.Pids.Current)
	}

	if err := sleeper.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := sleeper.Wait(ctx); err != nil || st.Code != 143 {
		t.Errorf("sleep after SIGTERM: %+v, %v; want 143", st, err)
	}
	if err := sleeper.Signal(unix.SIGTERM); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("signalling an exited process: %v, want ErrFailedPrecondition", err)
	}
	if _, err := c.Exec(ctx, "sleeper", process("true"), StdioConfig{}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("exec with a used ID: %v, want ErrAlreadyExists", err)
	}
	if _, err := c.Process("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown exec ID: %v, want ErrNotFound", err)
	}
}

func TestPauseResume(t *testing.T) {
	m := newManager(t)
	counter := filepath.Join(env.rootfs, "tmp", "counter-pause")
	t.Cleanup(func() { os.Remove(counter) })
	c := startContainer(t, m, "pause", testSpec("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter-pause; done"))
	read := func() string { b, _ := os.ReadFile(counter); return string(b) }
	changing := func() bool {
		a := read()
		time.Sleep(30 * time.Millisecond)
		return a != read()
	}
	poll(t, 10*time.Second, "the counter to run", changing)
	ctx := ctxT(t, 10*time.Second)
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Status(); s != libcontainer.Paused {
		t.Errorf("status %s after Pause", s)
	}
	time.Sleep(20 * time.Millisecond)
	if changing() || changing() {
		t.Error("the counter runs while paused")
	}
	if err := c.Pause(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("pausing a paused container: %v, want ErrFailedPrecondition", err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "the counter to run again", changing)
	if err := c.Resume(ctx); !errors.Is(err, ErrFailedPrecondition) {
		t.Errorf("resuming a running container: %v, want ErrFailedPrecondition", err)
	}
}

func TestReadonlyRootfs(t *testing.T) {
	spec := testSpec("touch", "/x")
	spec.Root.Readonly = true
	stdout, stderr, st := run(t, newManager(t), "readonly", spec)
	if stdout != "" || stderr != "touch: /x: Read-only file system\n" || st.Code != 1 {
		t.Errorf("stdout %q, stderr %q, status %d", stdout, stderr, st.Code)
	}
}

func TestBindMount(t *testing.T) {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in"), []byte("input\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := testSpec("sh", "-c", "cat /vol/in; echo written > /vol/out")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	stdout, stderr, st := run(t, newManager(t), "bind", spec)
	if stdout != "input\n" || stderr != "" || st.Code != 0 {
		t.Errorf("stdout %q, stderr %q, status %d", stdout, stderr, st.Code)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("volume file %q, %v", b, err)
	}
}

func TestHostnameAndUser(t *testing.T) {
	spec := testSpec("sh", "-c", "hostname; id")
	spec.Hostname = "cocoon-test"
	spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}}
	stdout, stderr, st := run(t, newManager(t), "user", spec)
	want := "cocoon-test\nuid=1000(user) gid=1000(user) groups=2000(extra),3000(more)\n"
	if stdout != want || stderr != "" || st.Code != 0 {
		t.Errorf("stdout %q, stderr %q, status %d; want %q", stdout, stderr, st.Code, want)
	}
}

func TestRlimitNofile(t *testing.T) {
	spec := testSpec("sh", "-c", "ulimit -n")
	spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4321, Soft: 4321}}
	stdout, _, st := run(t, newManager(t), "rlimit", spec)
	if stdout != "4321\n" || st.Code != 0 {
		t.Errorf("ulimit -n printed %q, status %d", stdout, st.Code)
	}
}

func TestMemoryLimitOOMKill(t *testing.T) {
	spec := testSpec("dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	limit := int64(64 << 20) // room for runc init, even race-instrumented
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	_, _, st := run(t, newManager(t), "oom", spec)
	if st.Code != 137 || !st.OOMKilled {
		t.Errorf("status %+v, want 137 and OOM-killed", st)
	}
}
