// Package relaytest provides a fake sandbox for tests of cocoon-relay: the fake
// agent of clienttest behind the real cocoon-proxy, serving a unix socket as
// a real sandbox does. The test plays the process: it receives the stdio
// streams the relay attaches and the signals and resizes it sends, and
// answers WaitProcess.
package relaytest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/proxy"
)

// Sandbox is a fake sandbox reached through Sock, as a relay reaches a real
// one through its proxy.sock.
type Sandbox struct {
	// Sock is the proxy socket to pass to the relay.
	Sock string
	// Streams receives every stdio stream the relay attaches.
	Streams chan Stream
	// Signals and Resizes receive the relay's SignalProcess and ResizeTty.
	Signals chan *api.SignalProcessRequest
	Resizes chan *api.ResizeTtyRequest
	// Exit answers the pending WaitProcess with an exit status.
	Exit chan int32
	// Kill stops the agent, as the VM's death would.
	Kill func()
}

// Stream is one stdio stream the relay attached.
type Stream struct {
	Header api.StreamHeader
	Conn   net.Conn
}

// NewSandbox starts a fake sandbox that the test's cleanup stops.
func NewSandbox(t testing.TB) *Sandbox {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	proxyEnd, agentEnd := fileConn(t, fds[0]), fileConn(t, fds[1])
	dir, err := os.MkdirTemp("", "ccn-relay")
	if err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{
		Sock:    filepath.Join(dir, "proxy.sock"),
		Streams: make(chan Stream, 16),
		Signals: make(chan *api.SignalProcessRequest, 16),
		Resizes: make(chan *api.ResizeTtyRequest, 16),
		Exit:    make(chan int32, 1),
	}
	l, err := net.Listen("unix", sb.Sock)
	if err != nil {
		t.Fatal(err)
	}
	proxyCtx, stopProxy := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		proxy.Serve(proxyCtx, proxyEnd, l, proxy.Options{})
	}()

	killed := make(chan struct{})
	agent := &clienttest.Agent{
		StdioFunc: func(h api.StreamHeader, c net.Conn) { sb.Streams <- Stream{h, c} },
		SignalProcessFunc: func(_ context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
			sb.Signals <- req
			return &api.Empty{}, nil
		},
		ResizeTtyFunc: func(_ context.Context, req *api.ResizeTtyRequest) (*api.Empty, error) {
			sb.Resizes <- req
			return &api.Empty{}, nil
		},
		WaitProcessFunc: func(ctx context.Context, _ *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			select {
			case st := <-sb.Exit:
				return &api.WaitProcessResponse{ExitStatus: st}, nil
			case <-killed:
				return nil, status.Error(codes.Unavailable, "agent going away")
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
	agentCtx, stopAgent := context.WithCancel(context.Background())
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		clienttest.ServeConn(agentCtx, agentEnd, agent)
	}()
	sb.Kill = sync.OnceFunc(func() {
		close(killed)
		stopAgent()
		<-agentDone
		agentEnd.Close()
	})
	t.Cleanup(func() {
		sb.Kill()
		stopProxy()
		<-served
		for len(sb.Streams) > 0 {
			(<-sb.Streams).Conn.Close()
		}
		os.RemoveAll(dir)
	})
	return sb
}

func fileConn(t testing.TB, fd int) net.Conn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
