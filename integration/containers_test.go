//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// TestContainers boots one sandbox and runs many containers in it, end to
// end through the proxy and the real agent: stdio, exit statuses, ttys,
// exec, signals, ps, stats, pause, the spec's identity, limits and mounts.
// After it, nothing is left: no mounts under the sandbox root, no QEMU, no
// proxy.
func TestContainers(t *testing.T) {
	e := testEnv(t)
	root := t.TempDir()
	m := newManager(t, e, root)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	s := &suite{rootfs: buildRootfs(t, t.TempDir())}
	start := time.Now()
	sb, err := m.Create(ctx, "containers")
	if err != nil {
		t.Fatal(err)
	}
	st := sb.State()
	defer func() {
		if t.Failed() {
			logTail(t, "guest console", sb.ConsoleLog(), 30)
		}
		if err := sb.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
		if mps := mountsUnder(root); len(mps) > 0 {
			t.Errorf("mounts left under %s after destroy: %v", root, mps)
		}
		for _, pid := range []int{st.VM.PID, st.ProxyPID} {
			if pid > 0 && proc.Alive(pid) {
				t.Errorf("process %d still running after destroy", pid)
			}
		}
		if entries, _ := os.ReadDir(root); len(entries) != 0 {
			t.Errorf("sandbox root not empty after destroy: %v", entries)
		}
	}()
	if err := sb.Attach(ctx, sandbox.AttachConfig{Hostname: "cocoon-sandbox"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox booted and attached in %.2fs", time.Since(start).Seconds())
	s.sb = sb

	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"ExitStatusAndSeparateStreams", testExitStatusAndStreams},
		{"StdinUntilEOF", testStdin},
		{"StdoutThroughput", testStdoutThroughput},
		{"Terminal", testTerminal},
		{"ExecSignalPsStats", testExecSignalPsStats},
		{"PauseResume", testPauseResume},
		{"ReadOnlyRootfs", testReadOnlyRootfs},
		{"Volumes", testVolumes},
		{"Identity", testIdentity},
		{"RlimitNofile", testRlimit},
		{"MemoryLimitOOM", testMemoryLimit},
	} {
		ok := t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			tc.fn(t, s)
			t.Logf("%s took %.2fs", tc.name, time.Since(start).Seconds())
		})
		if !ok {
			// A broken agent channel would make every later case wait
			// for its timeout: stop, and let the deferred Destroy clean.
			if err := checkAgent(ctx, sb); err != nil {
				t.Fatalf("sandbox unusable after %s: %v", tc.name, err)
			}
		}
	}
}

// logTail logs the last lines of a log file.
func logTail(t *testing.T, what, path string, lines int) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s: %v", what, err)
		return
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	t.Logf("%s (%s), last %d lines:\n%s", what, path, lines, strings.Join(all[max(0, len(all)-lines):], "\n"))
}

// checkAgent calls Check both on the sandbox's shared connection and on a
// new one.
func checkAgent(ctx context.Context, sb *sandbox.Sandbox) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	shared, err := sb.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := shared.Check(ctx, &api.CheckRequest{}); err != nil {
		return fmt.Errorf("shared connection: %w", err)
	}
	fresh, err := sb.Agent(ctx)
	if err != nil {
		return err
	}
	defer fresh.Close()
	if _, err := fresh.Check(ctx, &api.CheckRequest{}); err != nil {
		return fmt.Errorf("new connection: %w", err)
	}
	return nil
}

func testExitStatusAndStreams(t *testing.T, s *suite) {
	r := s.run(t, s.spec("sh", "-c", "echo out; echo err >&2; exit 3"), nil)
	if r.stdout != "out\n" || r.stderr != "err\n" || r.status != 3 {
		t.Errorf("stdout %q, stderr %q, status %d; want out, err, 3", r.stdout, r.stderr, r.status)
	}
}

func testStdin(t *testing.T, s *suite) {
	in := "hello\nworld\n" + strings.Repeat("x", 100<<10) + "\n"
	r := s.run(t, s.spec("cat"), strings.NewReader(in))
	if r.stdout != in || r.status != 0 {
		t.Errorf("cat echoed %d bytes (want %d), stderr %q, status %d", len(r.stdout), len(in), r.stderr, r.status)
	}
}

// countingHash counts and hashes what is written to it, and notes when
// the first byte came.
type countingHash struct {
	n     int64
	h     hash.Hash
	first time.Time
}

func (c *countingHash) Write(p []byte) (int, error) {
	if c.n == 0 {
		c.first = time.Now()
	}
	c.n += int64(len(p))
	return c.h.Write(p)
}

func testStdoutThroughput(t *testing.T, s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	out := &countingHash{h: sha256.New()}
	var stderr bytes.Buffer
	// busybox dd with 1 MiB blocks: busybox's cat or head would loop on
	// tiny buffers and measure themselves instead of the stdio path.
	c := s.create(ctx, t, s.spec("dd", "if=/data", "bs=1M"), agentclient.IO{Stdout: out, Stderr: &stderr})
	start := time.Now()
	c.start(ctx, t)
	if err := c.att.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	w := c.wait(ctx, t, "", nil)
	if w.ExitStatus != 0 {
		t.Errorf("dd exited with %d: %s", w.ExitStatus, stderr.String())
	}
	if out.n != dataSize {
		t.Fatalf("stdout carried %d bytes, want %d", out.n, dataSize)
	}
	if [sha256.Size]byte(out.h.Sum(nil)) != s.rootfs.dataSum {
		t.Fatal("stdout content differs from /data")
	}
	// The rate counts from StartContainer's call to EOF: the whole cost of
	// getting a process's output to the host, start included.
	mbps := float64(dataSize) / 1e6 / elapsed.Seconds()
	streaming := float64(dataSize) / 1e6 / time.Since(out.first).Seconds()
	t.Logf("stdout throughput: %.0f MB/s (%d MiB in %.2fs from start to EOF; %.0f MB/s from the first byte)",
		mbps, dataSize>>20, elapsed.Seconds(), streaming)
	fmt.Printf("stdout throughput: %.0f MB/s\n", mbps)
}

func testTerminal(t *testing.T, s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	spec := s.spec("sh", "-c", "tty; stty size; read line; stty size")
	spec.Process.Terminal = true
	spec.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	var out syncBuffer
	in, typed := io.Pipe()
	defer typed.Close()
	c := s.create(ctx, t, spec, agentclient.IO{Terminal: true, Stdin: in, Stdout: &out})
	c.start(ctx, t)
	poll(ctx, t, "the first stty size", func() bool { return strings.Contains(out.String(), "24 80") })
	if _, err := c.ag.ResizeTty(ctx, &api.ResizeTtyRequest{ContainerId: c.id, Rows: 33, Cols: 111}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(typed, "go\r"); err != nil {
		t.Fatal(err)
	}
	w := c.wait(ctx, t, "", c.att)
	got := out.String()
	t.Logf("terminal showed %q", got)
	if w.ExitStatus != 0 || !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "33 111") {
		t.Errorf("terminal showed %q, status %d; want a /dev/pts name, 24 80, then 33 111", got, w.ExitStatus)
	}
	if strings.Contains(got, "not a tty") {
		t.Errorf("process has no terminal: %q", got)
	}
}

func testExecSignalPsStats(t *testing.T, s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	c := s.create(ctx, t, s.spec("sleep", "1000"), agentclient.IO{})
	c.start(ctx, t)

	var stdout syncBuffer
	a := c.exec(ctx, t, "hello", &specs.Process{Args: []string{"sh", "-c", "echo hello from exec; cat /proc/1/cmdline | tr '\\0' ' '"}, Cwd: "/", Env: []string{"PATH=/bin"}}, agentclient.IO{Stdout: &stdout})
	if w := c.wait(ctx, t, "hello", a); w.ExitStatus != 0 || stdout.String() != "hello from exec\nsleep 1000 " {
		t.Errorf("exec printed %q, status %d", stdout.String(), w.ExitStatus)
	}

	c.exec(ctx, t, "sleeper", &specs.Process{Args: []string{"sleep", "999"}, Cwd: "/", Env: []string{"PATH=/bin"}}, agentclient.IO{})
	// The exec'd process may still be in runc's init when ExecProcess
	// returns: poll until it runs sleep.
	var cmdlines []string
	poll(ctx, t, "ps to list sleep 1000 and sleep 999", func() bool {
		ps, err := c.ag.ListProcesses(ctx, &api.ContainerRequest{ContainerId: c.id})
		if err != nil {
			t.Fatal(err)
		}
		cmdlines = cmdlines[:0]
		for _, p := range ps.Processes {
			cmdlines = append(cmdlines, strings.TrimSpace(p.Cmdline))
		}
		return slices.Contains(cmdlines, "sleep 1000") && slices.Contains(cmdlines, "sleep 999")
	})
	t.Logf("ps: %q", cmdlines)

	stats, err := c.ag.StatsContainer(ctx, &api.ContainerRequest{ContainerId: c.id})
	if err != nil {
		t.Fatal(err)
	}
	var data struct {
		Memory struct {
			Usage struct {
				Usage uint64 `json:"usage"`
			} `json:"usage"`
		} `json:"memory"`
	}
	if err := json.Unmarshal(stats.StatsJson, &data); err != nil {
		t.Fatalf("stats %s: %v", stats.StatsJson, err)
	}
	if data.Memory.Usage.Usage == 0 {
		t.Errorf("stats report no memory use: %s", stats.StatsJson)
	}

	c.signal(ctx, t, "sleeper", int(syscall.SIGTERM))
	if w := c.wait(ctx, t, "sleeper", nil); w.ExitStatus != 143 {
		t.Errorf("exec'd sleep after SIGTERM: status %d, want 143", w.ExitStatus)
	}
	// The container's init ignores TERM (PID 1 without a handler): KILL.
	c.signal(ctx, t, "", int(syscall.SIGKILL))
	if w := c.wait(ctx, t, "", nil); w.ExitStatus != 137 {
		t.Errorf("init after SIGKILL: status %d, want 137", w.ExitStatus)
	}
}

func testPauseResume(t *testing.T, s *suite) {
	ctx, cancel := context.WithTimeout(context.Background(), containerTimeout)
	defer cancel()
	c := s.create(ctx, t, s.spec("sh", "-c", "while :; do :; done"), agentclient.IO{})
	c.start(ctx, t)
	cpu := func() uint64 {
		ps, err := c.ag.ListProcesses(ctx, &api.ContainerRequest{ContainerId: c.id})
		if err != nil {
			t.Fatal(err)
		}
		var ticks uint64
		for _, p := range ps.Processes {
			ticks += p.CpuTimeTicks
		}
		return ticks
	}
	before := cpu()
	poll(ctx, t, "the loop to use CPU", func() bool { return cpu() > before+10 })
	if _, err := c.ag.PauseContainer(ctx, &api.ContainerRequest{ContainerId: c.id}); err != nil {
		t.Fatal(err)
	}
	frozen := cpu()
	time.Sleep(time.Second)
	if after := cpu(); after != frozen {
		t.Errorf("paused loop used %d ticks in a second", after-frozen)
	}
	if _, err := c.ag.ResumeContainer(ctx, &api.ContainerRequest{ContainerId: c.id}); err != nil {
		t.Fatal(err)
	}
	poll(ctx, t, "the resumed loop to use CPU", func() bool { return cpu() > frozen+10 })
	c.signal(ctx, t, "", int(syscall.SIGKILL))
	if w := c.wait(ctx, t, "", nil); w.ExitStatus != 137 {
		t.Errorf("loop after SIGKILL: status %d, want 137", w.ExitStatus)
	}
}

func testReadOnlyRootfs(t *testing.T, s *suite) {
	spec := s.spec("sh", "-c", "touch /written-by-container; echo status $?")
	spec.Root.Readonly = true
	r := s.run(t, spec, nil)
	if !strings.Contains(r.stderr, "Read-only file system") || !strings.Contains(r.stdout, "status 1") {
		t.Errorf("write to a read-only rootfs: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(s.rootfs.dir, "written-by-container")); !os.IsNotExist(err) {
		t.Errorf("the write reached the host: %v", err)
	}
}

func testVolumes(t *testing.T, s *suite) {
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in.txt"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := s.spec("sh", "-c", "cat /vol/in.txt; echo from guest > /vol/out.txt; cat /etc/resolv.conf; echo x > /etc/resolv.conf && echo wrote-ro")
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}},
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"rbind", "ro"}},
	)
	r := s.run(t, spec, nil)
	if r.stdout != "from host\nnameserver 192.0.2.53\n" {
		t.Errorf("container read %q (stderr %q)", r.stdout, r.stderr)
	}
	if got, err := os.ReadFile(filepath.Join(vol, "out.txt")); err != nil || string(got) != "from guest\n" {
		t.Errorf("host sees %q, %v in the volume", got, err)
	}
	if got, _ := os.ReadFile(resolv); string(got) != "nameserver 192.0.2.53\n" {
		t.Errorf("read-only file changed: %q", got)
	}
}

func testIdentity(t *testing.T, s *suite) {
	spec := s.spec("sh", "-c", "hostname; id -u; id -g; id -G")
	spec.Hostname = "box-identity"
	spec.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 100}}
	r := s.run(t, spec, nil)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.status != 0 || len(lines) != 4 {
		t.Fatalf("stdout %q, stderr %q, status %d", r.stdout, r.stderr, r.status)
	}
	if lines[0] != "box-identity" || lines[1] != "1000" || lines[2] != "1000" {
		t.Errorf("hostname, uid, gid = %q", lines[:3])
	}
	groups := strings.Fields(lines[3])
	slices.Sort(groups)
	if strings.Join(groups, " ") != "10 100 1000" {
		t.Errorf("groups %q, want 1000 10 100", lines[3])
	}
}

func testRlimit(t *testing.T, s *suite) {
	spec := s.spec("sh", "-c", "ulimit -n; ulimit -Hn")
	spec.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 654}}
	r := s.run(t, spec, nil)
	if r.stdout != "321\n654\n" || r.status != 0 {
		t.Errorf("nofile limits %q (stderr %q, status %d), want 321 and 654", r.stdout, r.stderr, r.status)
	}
}

func testMemoryLimit(t *testing.T, s *suite) {
	// dd's 64 MiB buffer, filled from /dev/zero, does not fit in 32 MiB.
	spec := s.spec("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	limit := int64(32 << 20)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	r := s.run(t, spec, nil)
	if r.status != 137 || !r.oomKilled {
		t.Errorf("status %d, oom killed %v (stderr %q); want 137 and true", r.status, r.oomKilled, r.stderr)
	}
}
