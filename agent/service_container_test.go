package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/opencontainers/runc/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agent/container"
	"github.com/cocoon-containers/cocoon/agent/container/containertest"
	"github.com/cocoon-containers/cocoon/agent/reaper"
	"github.com/cocoon-containers/cocoon/api"
)

// containerAgent serves an agent with a real container manager over
// net.Pipe, as cmd/agent does over the port, and returns the host's yamux
// session and client, and the busybox rootfs. Containers run on this host:
// the test needs root and cgroups.
func containerAgent(t *testing.T) (*yamux.Session, api.AgentService, string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := containertest.BuildRootfs(rootfs); err != nil { // before the reaper runs
		t.Fatal(err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	log := testLog(t)
	rp := reaper.New(log)
	ctx, cancel := context.WithCancel(context.Background())
	reaped := make(chan struct{})
	go func() { rp.Run(ctx); close(reaped) }()
	cgroupParent := fmt.Sprintf("/cocoon-agent-test-%d", os.Getpid())
	m, err := container.NewManager(container.Config{
		Root: t.TempDir(), CgroupParent: cgroupParent, Reaper: rp, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := m.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		<-reaped
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
		for _, d := range append(dirs, "/sys/fs/cgroup"+cgroupParent) {
			_ = os.Remove(d)
		}
	})
	svc := NewService(ServiceConfig{Containers: m, Log: log})
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{Service: svc, Stdio: svc.Stdio})
	sess := hostSession(t, host)
	return sess, agentClient(t, sess), rootfs
}

func specJSON(t *testing.T, s *specs.Spec) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if st, _ := status.FromError(err); st.Code() != code {
		t.Errorf("%s: %v, want code %s", what, err, code)
	}
}

// readAll reads a host stream to its end, in the background.
func readAll(st net.Conn) <-chan string {
	ch := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(st)
		ch <- string(b)
	}()
	return ch
}

func TestContainerStdioOverServer(t *testing.T) {
	sess, client, rootfs := containerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	spec := containertest.Spec(rootfs, "sh", "-c", "cat; echo err >&2; exit 3")
	_, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "c1", SpecJson: specJSON(t, spec),
		Stdio: &api.StdioConfig{Stdin: true, Stdout: true, Stderr: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(s api.Stdio) api.StreamHeader {
		return api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c1", Stdio: s}
	}
	stdin := openStream(t, sess, hdr(api.Stdin))
	stdout := readAll(openStream(t, sess, hdr(api.Stdout)))
	stderr := readAll(openStream(t, sess, hdr(api.Stderr)))
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("hello over yamux\n")); err != nil {
		t.Fatal(err)
	}
	stdin.Close() // yamux: half-close, the process reads EOF
	w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut := <-stdout, <-stderr; out != "hello over yamux\n" || errOut != "err\n" || w.ExitStatus != 3 || w.OomKilled {
		t.Errorf("stdout %q, stderr %q, wait %+v", out, errOut, w)
	}
	if w.ExitedAtUnixNanos == 0 {
		t.Error("no exit time")
	}

	// State errors carry their codes.
	_, err = client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "c1"})
	wantCode(t, "second StartContainer", err, codes.FailedPrecondition)
	_, err = client.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "c1", SpecJson: specJSON(t, spec)})
	wantCode(t, "duplicate CreateContainer", err, codes.AlreadyExists)
	_, err = client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "nope"})
	wantCode(t, "WaitProcess of an unknown container", err, codes.NotFound)
	_, err = client.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "bad", SpecJson: []byte(`{"process":{"frob":1}}`)})
	wantCode(t, "CreateContainer with an unknown field", err, codes.InvalidArgument)
	bad := containertest.Spec(rootfs, "true")
	bad.Process.ApparmorProfile = "docker-default"
	_, err = client.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "bad", SpecJson: specJSON(t, bad)})
	wantCode(t, "CreateContainer with AppArmor", err, codes.InvalidArgument)
	_, err = client.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "c1"})
	if err != nil {
		t.Fatalf("RemoveContainer of a stopped container: %v", err)
	}
}

func TestContainerExecOverServer(t *testing.T) {
	sess, client, rootfs := containerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "c2", SpecJson: specJSON(t, containertest.Spec(rootfs, "sleep", "1000")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "c2"}); err != nil {
		t.Fatal(err)
	}
	proc, _ := json.Marshal(specs.Process{Args: []string{"sh", "-c", "echo execd; exit 5"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	e, err := client.ExecProcess(ctx, &api.ExecProcessRequest{
		ContainerId: "c2", ExecId: "e1", ProcessJson: proc, Stdio: &api.StdioConfig{Stdout: true},
	})
	if err != nil || e.Pid <= 0 {
		t.Fatalf("ExecProcess = %+v, %v", e, err)
	}
	out := readAll(openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c2", ExecID: "e1", Stdio: api.Stdout}))
	w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c2", ExecId: "e1"})
	if err != nil || w.ExitStatus != 5 || <-out != "execd\n" {
		t.Errorf("exec: %+v, %v", w, err)
	}

	ps, err := client.ListProcesses(ctx, &api.ContainerRequest{ContainerId: "c2"})
	if err != nil || len(ps.Processes) != 1 || ps.Processes[0].Cmdline != "sleep 1000" {
		t.Errorf("ListProcesses = %v, %v", ps, err)
	}
	st, err := client.StatsContainer(ctx, &api.ContainerRequest{ContainerId: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	var stats types.Stats
	if err := json.Unmarshal(st.StatsJson, &stats); err != nil || stats.Memory.Usage.Usage == 0 || stats.Pids.Current != 1 {
		t.Errorf("stats %s, %v", st.StatsJson, err)
	}
	if _, err := client.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: "c2", ResourcesJson: []byte(`{"pids":{"limit":10}}`)}); err != nil {
		t.Errorf("UpdateContainer: %v", err)
	}
	if _, err := client.PauseContainer(ctx, &api.ContainerRequest{ContainerId: "c2"}); err != nil {
		t.Errorf("PauseContainer: %v", err)
	}
	if _, err := client.ResumeContainer(ctx, &api.ContainerRequest{ContainerId: "c2"}); err != nil {
		t.Errorf("ResumeContainer: %v", err)
	}
	_, err = client.ResumeContainer(ctx, &api.ContainerRequest{ContainerId: "c2"})
	wantCode(t, "ResumeContainer of a running container", err, codes.FailedPrecondition)
	_, err = client.ResizeTty(ctx, &api.ResizeTtyRequest{ContainerId: "c2", Rows: 1, Cols: 1})
	wantCode(t, "ResizeTty without a terminal", err, codes.FailedPrecondition)
	_, err = client.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c2", Signal: 0})
	wantCode(t, "SignalProcess with signal 0", err, codes.InvalidArgument)
	_, err = client.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "c2"})
	wantCode(t, "RemoveContainer of a running container", err, codes.FailedPrecondition)
	if _, err := client.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c2", Signal: uint32(unix.SIGKILL), All: true}); err != nil {
		t.Fatal(err)
	}
	if w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c2"}); err != nil || w.ExitStatus != 137 {
		t.Errorf("init after SIGKILL to all: %+v, %v", w, err)
	}
	if _, err := client.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "c2"}); err != nil {
		t.Errorf("RemoveContainer: %v", err)
	}
}

func TestStdioStreamRefused(t *testing.T) {
	sess, client, rootfs := containerAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "c3", SpecJson: specJSON(t, containertest.Spec(rootfs, "true")), Stdio: &api.StdioConfig{Stdout: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]api.StreamHeader{
		"unknown container": {Kind: api.StreamStdio, ContainerID: "nope", Stdio: api.Stdout},
		"unknown process":   {Kind: api.StreamStdio, ContainerID: "c3", ExecID: "nope", Stdio: api.Stdout},
		"not requested":     {Kind: api.StreamStdio, ContainerID: "c3", Stdio: api.Stderr},
		"no terminal":       {Kind: api.StreamStdio, ContainerID: "c3", Stdio: api.Terminal},
	} {
		st := openStream(t, sess, h)
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("%s: read = %d, %v; want the stream closed", name, n, err)
		}
	}
	// The stdout stream it was created with still attaches.
	out := readAll(openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c3", Stdio: api.Stdout}))
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "c3"}); err != nil {
		t.Fatal(err)
	}
	if w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c3"}); err != nil || w.ExitStatus != 0 || <-out != "" {
		t.Errorf("wait %+v, %v", w, err)
	}
}

func TestLargeOutputOverServer(t *testing.T) {
	// 64 MiB of stdout through the real server and yamux (over net.Pipe,
	// not the serial port): complete, and before the exit status.
	sess, client, rootfs := containerAgent(t)
	const size = 64 << 20
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := client.CreateContainer(ctx, &api.CreateContainerRequest{
		ContainerId: "big", SpecJson: specJSON(t, containertest.Spec(rootfs, "dd", "if=/data", "bs=1M")),
		Stdio: &api.StdioConfig{Stdout: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "big", Stdio: api.Stdout})
	type result struct {
		n   int64
		sum [32]byte
	}
	got := make(chan result, 1)
	start := time.Now()
	go func() {
		h := sha256.New()
		n, _ := io.CopyBuffer(h, st, make([]byte, 1<<20))
		var r result
		r.n = n
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}()
	if _, err := client.StartContainer(ctx, &api.ContainerRequest{ContainerId: "big"}); err != nil {
		t.Fatal(err)
	}
	w, err := client.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "big"})
	if err != nil || w.ExitStatus != 0 {
		t.Fatalf("WaitProcess = %+v, %v", w, err)
	}
	r := <-got
	elapsed := time.Since(start)
	if r.n != size || r.sum != want {
		t.Fatalf("got %d bytes (sum match %v), want %d", r.n, r.sum == want, size)
	}
	t.Logf("64 MiB over yamux in %v: %.0f MB/s", elapsed, float64(size)/elapsed.Seconds()/1e6)
}
