package agentclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
)

func connect(t *testing.T, a *clienttest.Agent) (*agentclient.Client, func()) {
	t.Helper()
	d, stop := clienttest.NewDialer(t, a)
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, stop
}

// TestStatusErrors checks the one place where the agent's status codes
// become sentinel errors: errors.Is works, and the text is the agent's
// message with the call as context.
func TestStatusErrors(t *testing.T) {
	tests := map[string]struct {
		err      error
		sentinel error
		want     string
	}{
		"not found":     {status.Errorf(codes.NotFound, "container %q does not exist", "c1"), agentclient.ErrNotFound, `agent start container: container "c1" does not exist`},
		"exists":        {status.Error(codes.AlreadyExists, "container c1 exists"), agentclient.ErrAlreadyExists, "agent start container: container c1 exists"},
		"invalid":       {status.Error(codes.InvalidArgument, "bad spec"), agentclient.ErrInvalidArgument, "agent start container: bad spec"},
		"precondition":  {status.Error(codes.FailedPrecondition, "container is running"), agentclient.ErrFailedPrecondition, "agent start container: container is running"},
		"unavailable":   {status.Error(codes.Unavailable, "shutting down"), agentclient.ErrUnavailable, "agent start container: shutting down"},
		"empty message": {status.Error(codes.NotFound, ""), agentclient.ErrNotFound, "agent start container: not found"},
		"unknown":       {errors.New("disk on fire"), nil, "agent start container: rpc error: code = Unknown desc = disk on fire"},
	}
	sentinels := []error{agentclient.ErrNotFound, agentclient.ErrAlreadyExists, agentclient.ErrInvalidArgument, agentclient.ErrFailedPrecondition, agentclient.ErrUnavailable}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, _ := connect(t, &clienttest.Agent{
				StartContainerFunc: func(context.Context, *api.ContainerRequest) (*api.Empty, error) { return nil, tc.err },
			})
			_, err := c.StartContainer(context.Background(), &api.ContainerRequest{ContainerId: "c1"})
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tc.sentinel; got != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got, want)
				}
			}
			if tc.sentinel != nil && status.Code(errors.Unwrap(err)) != status.Code(tc.err) {
				t.Errorf("status code lost: %v", status.Code(errors.Unwrap(err)))
			}
		})
	}
}

func TestAgentGoneIsUnavailable(t *testing.T) {
	c, stop := connect(t, &clienttest.Agent{})
	stop()
	<-c.Done()
	_, err := c.PauseContainer(context.Background(), &api.ContainerRequest{ContainerId: "c1"})
	if !errors.Is(err, agentclient.ErrUnavailable) || !errors.Is(err, ttrpc.ErrClosed) {
		t.Errorf("call after the agent went away: %v, want ErrUnavailable", err)
	}
}

// TestContainerCalls checks that every call of the container API reaches
// the agent with its request and returns the agent's response.
func TestContainerCalls(t *testing.T) {
	var got []string
	record := func(s string) { got = append(got, s) }
	a := &clienttest.Agent{
		CreateSandboxFunc: func(_ context.Context, r *api.CreateSandboxRequest) (*api.Empty, error) {
			record("create-sandbox " + r.Hostname + " " + r.SharedMountTag)
			return &api.Empty{}, nil
		},
		SetGuestTimeFunc: func(_ context.Context, r *api.SetGuestTimeRequest) (*api.Empty, error) {
			record(fmt.Sprint("time ", r.UnixNanos))
			return &api.Empty{}, nil
		},
		CreateContainerFunc: func(_ context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
			record("create " + r.ContainerId + " " + string(r.SpecJson))
			return &api.CreateContainerResponse{Pid: 42}, nil
		},
		StartContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("start " + r.ContainerId)
			return &api.Empty{}, nil
		},
		ExecProcessFunc: func(_ context.Context, r *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
			record("exec " + r.ContainerId + "/" + r.ExecId)
			return &api.ExecProcessResponse{Pid: 43}, nil
		},
		SignalProcessFunc: func(_ context.Context, r *api.SignalProcessRequest) (*api.Empty, error) {
			record(fmt.Sprint("signal ", r.ContainerId, "/", r.ExecId, " ", r.Signal, " ", r.All))
			return &api.Empty{}, nil
		},
		WaitProcessFunc: func(_ context.Context, r *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			record("wait " + r.ContainerId + "/" + r.ExecId)
			return &api.WaitProcessResponse{ExitStatus: 137, OomKilled: true}, nil
		},
		CloseStdinFunc: func(_ context.Context, r *api.ProcessRequest) (*api.Empty, error) {
			record("close-stdin " + r.ContainerId)
			return &api.Empty{}, nil
		},
		ResizeTtyFunc: func(_ context.Context, r *api.ResizeTtyRequest) (*api.Empty, error) {
			record(fmt.Sprint("resize ", r.Rows, "x", r.Cols))
			return &api.Empty{}, nil
		},
		ListProcessesFunc: func(_ context.Context, r *api.ContainerRequest) (*api.ListProcessesResponse, error) {
			record("ps " + r.ContainerId)
			return &api.ListProcessesResponse{Processes: []*api.ProcessInfo{{Pid: 1, Cmdline: "sleep 10"}}}, nil
		},
		StatsContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.StatsContainerResponse, error) {
			record("stats " + r.ContainerId)
			return &api.StatsContainerResponse{StatsJson: []byte(`{}`)}, nil
		},
		PauseContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("pause " + r.ContainerId)
			return &api.Empty{}, nil
		},
		ResumeContainerFunc: func(_ context.Context, r *api.ContainerRequest) (*api.Empty, error) {
			record("resume " + r.ContainerId)
			return &api.Empty{}, nil
		},
		UpdateContainerFunc: func(_ context.Context, r *api.UpdateContainerRequest) (*api.Empty, error) {
			record("update " + string(r.ResourcesJson))
			return &api.Empty{}, nil
		},
		RemoveContainerFunc: func(_ context.Context, r *api.RemoveContainerRequest) (*api.Empty, error) {
			record(fmt.Sprint("remove ", r.ContainerId, " ", r.Force))
			return &api.Empty{}, nil
		},
	}
	c, _ := connect(t, a)
	ctx := context.Background()
	cr := &api.ContainerRequest{ContainerId: "c1"}
	pr := &api.ProcessRequest{ContainerId: "c1", ExecId: "e1"}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.CreateSandbox(ctx, &api.CreateSandboxRequest{Hostname: "h", SharedMountTag: "tag"}))
	must(c.SetGuestTime(ctx, &api.SetGuestTimeRequest{UnixNanos: 7}))
	created, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "c1", SpecJson: []byte(`{"x":1}`)})
	if err != nil || created.Pid != 42 {
		t.Fatalf("CreateContainer: %v, %v", created, err)
	}
	must(c.StartContainer(ctx, cr))
	execd, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "c1", ExecId: "e1"})
	if err != nil || execd.Pid != 43 {
		t.Fatalf("ExecProcess: %v, %v", execd, err)
	}
	must(c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: 15, All: true}))
	w, err := c.WaitProcess(ctx, pr)
	if err != nil || w.ExitStatus != 137 || !w.OomKilled {
		t.Fatalf("WaitProcess: %v, %v", w, err)
	}
	must(c.CloseStdin(ctx, pr))
	must(c.ResizeTty(ctx, &api.ResizeTtyRequest{Rows: 24, Cols: 80}))
	ps, err := c.ListProcesses(ctx, cr)
	if err != nil || len(ps.Processes) != 1 || ps.Processes[0].Cmdline != "sleep 10" {
		t.Fatalf("ListProcesses: %v, %v", ps, err)
	}
	must(c.StatsContainer(ctx, cr))
	must(c.PauseContainer(ctx, cr))
	must(c.ResumeContainer(ctx, cr))
	must(c.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: "c1", ResourcesJson: []byte(`{"pids":{"limit":5}}`)}))
	must(c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "c1", Force: true}))
	want := []string{
		"create-sandbox h tag", "time 7", `create c1 {"x":1}`, "start c1", "exec c1/e1",
		"signal c1/e1 15 true", "wait c1/e1", "close-stdin c1", "resize 24x80", "ps c1",
		"stats c1", "pause c1", "resume c1", `update {"pids":{"limit":5}}`, "remove c1 true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("agent saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWaitProcessHasNoDefaultTimeout: a process may run far longer than
// the call timeout.
func TestWaitProcessHasNoDefaultTimeout(t *testing.T) {
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		WaitProcessFunc: func(ctx context.Context, _ *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			select {
			case <-time.After(300 * time.Millisecond):
				return &api.WaitProcessResponse{ExitStatus: 3}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	})
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{CallTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.WaitProcess(context.Background(), &api.ProcessRequest{ContainerId: "c1"})
	if err != nil || w.ExitStatus != 3 {
		t.Fatalf("WaitProcess: %v, %v", w, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.WaitProcess(ctx, &api.ProcessRequest{ContainerId: "c1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitProcess with a short deadline: %v", err)
	}
}

// fakeProcess is the guest side of one process's stdio for tests of
// Attach: streams arrive on StdioFunc and are handed to the test.
type fakeProcess struct {
	streams chan stream
}

type stream struct {
	h    api.StreamHeader
	conn net.Conn
}

func newFakeProcess() *fakeProcess { return &fakeProcess{streams: make(chan stream, 4)} }

func (p *fakeProcess) stdio(h api.StreamHeader, c net.Conn) { p.streams <- stream{h, c} }

func (p *fakeProcess) next(t *testing.T) stream {
	t.Helper()
	select {
	case s := <-p.streams:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no stream attached")
	}
	return stream{}
}

func TestAttachSeparateStreams(t *testing.T) {
	p := newFakeProcess()
	c, _ := connect(t, &clienttest.Agent{StdioFunc: p.stdio})
	var stdout, stderr bytes.Buffer
	o := agentclient.IO{Stdin: strings.NewReader("input"), Stdout: &stdout, Stderr: &stderr}
	if cfg := o.Config(); !cfg.Stdin || !cfg.Stdout || !cfg.Stderr {
		t.Errorf("Config() = %v", cfg)
	}
	a, err := c.Attach(context.Background(), "c1", "e1", o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	byKind := map[api.Stdio]net.Conn{}
	for range 3 {
		s := p.next(t)
		if s.h.ContainerID != "c1" || s.h.ExecID != "e1" {
			t.Errorf("stream header %+v", s.h)
		}
		byKind[s.h.Stdio] = s.conn
	}
	// The "process" echoes stdin, upper-cased, to stdout once stdin ends.
	in, err := io.ReadAll(byKind[api.Stdin])
	if err != nil || string(in) != "input" {
		t.Fatalf("stdin: %q, %v", in, err)
	}
	fmt.Fprint(byKind[api.Stdout], strings.ToUpper(string(in)))
	fmt.Fprint(byKind[api.Stderr], "warning")
	select {
	case <-a.Done():
		t.Fatal("done before the output streams closed")
	case <-time.After(20 * time.Millisecond):
	}
	byKind[api.Stdout].Close()
	byKind[api.Stderr].Close()
	byKind[api.Stdin].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "INPUT" || stderr.String() != "warning" {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

func TestAttachTerminal(t *testing.T) {
	p := newFakeProcess()
	c, _ := connect(t, &clienttest.Agent{StdioFunc: p.stdio})
	var out bytes.Buffer
	pr, pw := io.Pipe()
	defer pw.Close()
	o := agentclient.IO{Terminal: true, Stdin: pr, Stdout: &out}
	if cfg := o.Config(); !cfg.Stdin || !cfg.Stdout || cfg.Stderr {
		t.Errorf("Config() = %v", cfg)
	}
	a, err := c.Attach(context.Background(), "c1", "", o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	s := p.next(t)
	if s.h.Stdio != api.Terminal || s.h.ExecID != "" {
		t.Errorf("stream header %+v", s.h)
	}
	go fmt.Fprint(pw, "ls\r")
	buf := make([]byte, 3)
	if _, err := io.ReadFull(s.conn, buf); err != nil || string(buf) != "ls\r" {
		t.Fatalf("terminal input %q, %v", buf, err)
	}
	fmt.Fprint(s.conn, "ls\r\nfile\r\n")
	s.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ls\r\nfile\r\n" {
		t.Errorf("terminal output %q", out.String())
	}
}

func TestAttachWaitContext(t *testing.T) {
	p := newFakeProcess()
	c, _ := connect(t, &clienttest.Agent{StdioFunc: p.stdio})
	a, err := c.Attach(context.Background(), "c1", "", agentclient.IO{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	s := p.next(t)
	defer s.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait: %v, want a deadline error", err)
	}
	a.Close()
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Error("copies still running after Close")
	}
}
