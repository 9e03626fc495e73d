package shimv2

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/sandbox/sandboxtest"
)

// recorder is a shim.Publisher that records the topics.
type recorder struct {
	mu     sync.Mutex
	topics []string
	closed bool
}

func (r *recorder) Publish(_ context.Context, topic string, _ events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// TestTaskLifecycle drives the task service as containerd does, against a
// fake agent: create (stdout to a FIFO), start, kill, wait, state, delete,
// shutdown; the VM goes with the last container.
func TestTaskLifecycle(t *testing.T) {
	testutil.RequireRoot(t)
	exited := make(chan struct{})
	var once sync.Once
	a := &clienttest.Agent{
		CreateContainerFunc: func(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			return &api.CreateContainerResponse{Pid: 1}, nil
		},
		StdioFunc: func(h api.StreamHeader, c net.Conn) {
			defer c.Close()
			if h.Stdio == api.Stdout {
				_, _ = c.Write([]byte("hello\n"))
				<-exited
			}
		},
		SignalProcessFunc: func(_ context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
			if r.Signal == uint32(syscall.SIGKILL) {
				once.Do(func() { close(exited) })
			}
			return &api.Empty{}, nil
		},
		WaitProcessFunc: func(ctx context.Context, _ *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			select {
			case <-exited:
				return &api.WaitProcessResponse{ExitStatus: 137, ExitedAtUnixNanos: time.Now().UnixNano()}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	pub := &recorder{}
	shutdown := make(chan struct{})
	s := &Service{ctx: ctx, id: "c1", publisher: pub, events: true, shutdown: func() { close(shutdown) },
		tasks: map[string]*task{}}
	fakes := sandboxtest.New(t, a)
	s.manager = fakes.Manager

	bundle := t.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(&specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"true"}, Cwd: "/"},
		Root: &specs.Root{Path: "rootfs"}, Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace}}}})
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(stdout, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()

	cr, err := s.Create(ctx, &taskAPI.CreateTaskRequest{ID: "c1", Bundle: bundle, Stdout: stdout})
	if err != nil {
		t.Fatal(err)
	}
	if pids := fakes.PIDs(); len(pids) != 1 || int(cr.Pid) != pids[0] {
		t.Errorf("create: pid %d, want the VM's (%v)", cr.Pid, pids)
	}
	if _, err := s.Start(ctx, &taskAPI.StartRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if st, err := s.State(ctx, &taskAPI.StateRequest{ID: "c1"}); err != nil || st.Status != tasktypes.Status_RUNNING {
		t.Fatalf("state %v, %v; want running", st, err)
	}
	if _, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"}); err == nil {
		t.Error("deleting a running task: no error")
	}
	if _, err := s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL)}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := s.Wait(wctx, &taskAPI.WaitRequest{ID: "c1"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("wait: %v, %v; want 137", w, err)
	}
	if err := syscall.SetNonblock(int(out.Fd()), false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); string(buf[:n]) != "hello\n" {
		t.Errorf("stdout FIFO got %q", buf[:n])
	}
	if st, err := s.State(ctx, &taskAPI.StateRequest{ID: "c1"}); err != nil || st.Status != tasktypes.Status_STOPPED || st.ExitStatus != 137 {
		t.Fatalf("state %v, %v; want stopped with 137", st, err)
	}
	// containerd's CRI stops a pod whose container just exited: the kill
	// of a finished process is not found, nothing else.
	if _, err := s.Kill(ctx, &taskAPI.KillRequest{ID: "c1", Signal: uint32(syscall.SIGKILL)}); status.Code(err) != codes.NotFound {
		t.Errorf("kill of a stopped task: %v (code %v), want not found", err, status.Code(err))
	}
	if _, err := s.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-shutdown:
		t.Fatal("shut down while serving a container")
	default:
	}
	d, err := s.Delete(ctx, &taskAPI.DeleteRequest{ID: "c1"})
	if err != nil || d.ExitStatus != 137 {
		t.Fatalf("delete: %v, %v", d, err)
	}
	if entries, _ := os.ReadDir(s.manager.Root); len(entries) != 0 {
		t.Errorf("sandboxes left: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(bundle, oomFile)); !os.IsNotExist(err) {
		t.Errorf("an exit without an OOM kill left the oom file: %v", err)
	}
	if _, err := s.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	<-shutdown
	pub.mu.Lock()
	defer pub.mu.Unlock()
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	if len(pub.topics) != len(want) || !pub.closed {
		t.Fatalf("events %v (publisher closed %v), want %v", pub.topics, pub.closed, want)
	}
	for i := range want {
		if pub.topics[i] != want[i] {
			t.Errorf("event %d: %s, want %s", i, pub.topics[i], want[i])
		}
	}
}

// TestEventsNeedAnAddress: a shim whose caller gave it no TTRPC address
// (CRI-O) publishes nothing; one started by containerd does.
func TestEventsNeedAnAddress(t *testing.T) {
	for _, tc := range []struct {
		name, address string
		want          int
	}{{"CRI-O", "", 0}, {"containerd", "/run/containerd/containerd.sock.ttrpc", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(ttrpcAddressEnv, tc.address)
			pub := &recorder{}
			s, err := New(context.Background(), pub, func() {})
			if err != nil {
				t.Fatal(err)
			}
			s.publish("/tasks/exit", &eventstypes.TaskExit{ID: "c1"})
			if len(pub.topics) != tc.want {
				t.Errorf("published %v, want %d event(s)", pub.topics, tc.want)
			}
		})
	}
}

// TestMarkOOM: an init killed by the guest's OOM killer leaves the oom
// file in its bundle, where CRI-O's vm runtime type looks (it reads no OOM
// event); an unknown container is no error.
func TestMarkOOM(t *testing.T) {
	bundle := t.TempDir()
	s := &Service{ctx: context.Background(), tasks: map[string]*task{"c1": {bundle: bundle}}}
	s.markOOM("c1")
	if _, err := os.Stat(filepath.Join(bundle, oomFile)); err != nil {
		t.Errorf("no oom file in the bundle: %v", err)
	}
	s.markOOM("gone")
}
