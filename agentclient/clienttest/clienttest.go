// Package clienttest provides a fake cocoon agent for tests of code that uses
// agentclient: it speaks the real protocol (yamux, stream headers, ttrpc)
// over an in-memory pipe, and answers with functions the test chooses.
package clienttest

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"
)

// Agent is a fake agent service: each method calls its function field when
// set, and otherwise answers as a healthy agent would. Tests that need a
// stateful agent keep the state in their functions' closures.
type Agent struct {
	CheckFunc          func(context.Context, *api.CheckRequest) (*api.CheckResponse, error)
	VersionFunc        func(context.Context, *api.VersionRequest) (*api.VersionResponse, error)
	DestroySandboxFunc func(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error)
	// The container API: a nil function answers success with an empty
	// response (WaitProcess: exit status 0).
	CreateSandboxFunc   func(context.Context, *api.CreateSandboxRequest) (*api.Empty, error)
	SetGuestTimeFunc    func(context.Context, *api.SetGuestTimeRequest) (*api.Empty, error)
	RestoredFunc        func(context.Context, *api.RestoredRequest) (*api.Empty, error)
	CreateContainerFunc func(context.Context, *api.CreateContainerRequest) (*api.CreateContainerResponse, error)
	StartContainerFunc  func(context.Context, *api.ContainerRequest) (*api.Empty, error)
	ExecProcessFunc     func(context.Context, *api.ExecProcessRequest) (*api.ExecProcessResponse, error)
	SignalProcessFunc   func(context.Context, *api.SignalProcessRequest) (*api.Empty, error)
	WaitProcessFunc     func(context.Context, *api.ProcessRequest) (*api.WaitProcessResponse, error)
	CloseStdinFunc      func(context.Context, *api.ProcessRequest) (*api.Empty, error)
	ResizeTtyFunc       func(context.Context, *api.ResizeTtyRequest) (*api.Empty, error)
	ListProcessesFunc   func(context.Context, *api.ContainerRequest) (*api.ListProcessesResponse, error)
	StatsContainerFunc  func(context.Context, *api.ContainerRequest) (*api.StatsContainerResponse, error)
	PauseContainerFunc  func(context.Context, *api.ContainerRequest) (*api.Empty, error)
	ResumeContainerFunc func(context.Context, *api.ContainerRequest) (*api.Empty, error)
	UpdateContainerFunc func(context.Context, *api.UpdateContainerRequest) (*api.Empty, error)
	RemoveContainerFunc func(context.Context, *api.RemoveContainerRequest) (*api.Empty, error)
	// The network API: a nil function answers success.
	UpdateInterfacesFunc func(context.Context, *api.UpdateInterfacesRequest) (*api.Empty, error)
	UpdateRoutesFunc     func(context.Context, *api.UpdateRoutesRequest) (*api.Empty, error)
	// StdioFunc receives every stdio stream, and owns it; when nil, stdio
	// streams are closed at once.
	StdioFunc func(api.StreamHeader, net.Conn)
}

var _ api.AgentService = (*Agent)(nil)

// Check calls CheckFunc, or answers that the agent serves.
func (a *Agent) Check(ctx context.Context, req *api.CheckRequest) (*api.CheckResponse, error) {
	if a.CheckFunc != nil {
		return a.CheckFunc(ctx, req)
	}
	return &api.CheckResponse{Serving: true}, nil
}

// Version calls VersionFunc, or answers a fixed version.
func (a *Agent) Version(ctx context.Context, req *api.VersionRequest) (*api.VersionResponse, error) {
	if a.VersionFunc != nil {
		return a.VersionFunc(ctx, req)
	}
	return &api.VersionResponse{AgentVersion: "clienttest", KernelRelease: "6.1.0-fake", ApiVersion: api.APIVersion}, nil
}

// DestroySandbox calls DestroySandboxFunc, or answers success.
func (a *Agent) DestroySandbox(ctx context.Context, req *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
	if a.DestroySandboxFunc != nil {
		return a.DestroySandboxFunc(ctx, req)
	}
	return &api.DestroySandboxResponse{}, nil
}

// CreateSandbox calls CreateSandboxFunc, or answers success.
func (a *Agent) CreateSandbox(ctx context.Context, req *api.CreateSandboxRequest) (*api.Empty, error) {
	if a.CreateSandboxFunc != nil {
		return a.CreateSandboxFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// UpdateInterfaces calls UpdateInterfacesFunc, or answers success.
func (a *Agent) UpdateInterfaces(ctx context.Context, req *api.UpdateInterfacesRequest) (*api.Empty, error) {
	if a.UpdateInterfacesFunc != nil {
		return a.UpdateInterfacesFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// UpdateRoutes calls UpdateRoutesFunc, or answers success.
func (a *Agent) UpdateRoutes(ctx context.Context, req *api.UpdateRoutesRequest) (*api.Empty, error) {
	if a.UpdateRoutesFunc != nil {
		return a.UpdateRoutesFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// Restored calls RestoredFunc, or answers success.
func (a *Agent) Restored(ctx context.Context, req *api.RestoredRequest) (*api.Empty, error) {
	if a.RestoredFunc != nil {
		return a.RestoredFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// SetGuestTime calls SetGuestTimeFunc, or answers success.
func (a *Agent) SetGuestTime(ctx context.Context, req *api.SetGuestTimeRequest) (*api.Empty, error) {
	if a.SetGuestTimeFunc != nil {
		return a.SetGuestTimeFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// CreateContainer calls CreateContainerFunc, or answers success.
func (a *Agent) CreateContainer(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	if a.CreateContainerFunc != nil {
		return a.CreateContainerFunc(ctx, req)
	}
	return &api.CreateContainerResponse{}, nil
}

// StartContainer calls StartContainerFunc, or answers success.
func (a *Agent) StartContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	if a.StartContainerFunc != nil {
		return a.StartContainerFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// ExecProcess calls ExecProcessFunc, or answers success.
func (a *Agent) ExecProcess(ctx context.Context, req *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
	if a.ExecProcessFunc != nil {
		return a.ExecProcessFunc(ctx, req)
	}
	return &api.ExecProcessResponse{}, nil
}

// SignalProcess calls SignalProcessFunc, or answers success.
func (a *Agent) SignalProcess(ctx context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
	if a.SignalProcessFunc != nil {
		return a.SignalProcessFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// WaitProcess calls WaitProcessFunc, or answers success.
func (a *Agent) WaitProcess(ctx context.Context, req *api.ProcessRequest) (*api.WaitProcessResponse, error) {
	if a.WaitProcessFunc != nil {
		return a.WaitProcessFunc(ctx, req)
	}
	return &api.WaitProcessResponse{}, nil
}

// CloseStdin calls CloseStdinFunc, or answers success.
func (a *Agent) CloseStdin(ctx context.Context, req *api.ProcessRequest) (*api.Empty, error) {
	if a.CloseStdinFunc != nil {
		return a.CloseStdinFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// ResizeTty calls ResizeTtyFunc, or answers success.
func (a *Agent) ResizeTty(ctx context.Context, req *api.ResizeTtyRequest) (*api.Empty, error) {
	if a.ResizeTtyFunc != nil {
		return a.ResizeTtyFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// ListProcesses calls ListProcessesFunc, or answers success.
func (a *Agent) ListProcesses(ctx context.Context, req *api.ContainerRequest) (*api.ListProcessesResponse, error) {
	if a.ListProcessesFunc != nil {
		return a.ListProcessesFunc(ctx, req)
	}
	return &api.ListProcessesResponse{}, nil
}

// StatsContainer calls StatsContainerFunc, or answers success.
func (a *Agent) StatsContainer(ctx context.Context, req *api.ContainerRequest) (*api.StatsContainerResponse, error) {
	if a.StatsContainerFunc != nil {
		return a.StatsContainerFunc(ctx, req)
	}
	return &api.StatsContainerResponse{}, nil
}

// PauseContainer calls PauseContainerFunc, or answers success.
func (a *Agent) PauseContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	if a.PauseContainerFunc != nil {
		return a.PauseContainerFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// ResumeContainer calls ResumeContainerFunc, or answers success.
func (a *Agent) ResumeContainer(ctx context.Context, req *api.ContainerRequest) (*api.Empty, error) {
	if a.ResumeContainerFunc != nil {
		return a.ResumeContainerFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// UpdateContainer calls UpdateContainerFunc, or answers success.
func (a *Agent) UpdateContainer(ctx context.Context, req *api.UpdateContainerRequest) (*api.Empty, error) {
	if a.UpdateContainerFunc != nil {
		return a.UpdateContainerFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// RemoveContainer calls RemoveContainerFunc, or answers success.
func (a *Agent) RemoveContainer(ctx context.Context, req *api.RemoveContainerRequest) (*api.Empty, error) {
	if a.RemoveContainerFunc != nil {
		return a.RemoveContainerFunc(ctx, req)
	}
	return &api.Empty{}, nil
}

// ServeConn runs a on conn as cocoon-agent runs on its port: a yamux server
// session whose every stream starts with an api.StreamHeader; RPC streams
// are served with ttrpc, stdio streams go to a.StdioFunc. It returns when
// conn closes or ctx is done, once every stream handler has returned.
func ServeConn(ctx context.Context, conn io.ReadWriteCloser, a *Agent) error {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	cfg.StreamCloseTimeout = 0
	sess, err := yamux.Server(conn, cfg)
	if err != nil {
		return fmt.Errorf("starting yamux server: %w", err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("starting ttrpc server: %w", err)
	}
	api.RegisterAgentService(srv, a)
	rpcConns := newChanListener()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ctx, rpcConns)
	}()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := api.ReadStreamHeader(st)
			if err != nil {
				st.Close()
				return
			}
			c := halfCloser{st}
			switch {
			case h.Kind == api.StreamRPC:
				rpcConns.push(c)
			case a.StdioFunc != nil:
				a.StdioFunc(h, c)
			default:
				c.Close()
			}
		}()
	}
	sess.Close()
	srv.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// NewDialer starts a fake agent serving a and returns a dialer whose every
// Dial opens one yamux stream to it, as a connection to cocoon-proxy does.
// The fake stops at tb's cleanup; the returned stop function stops it
// earlier, as the VM's death would.
func NewDialer(tb testing.TB, a *Agent) (d agentclient.Dialer, stop func()) {
	hostEnd, agentEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		ServeConn(ctx, agentEnd, a)
	}()
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	cfg.StreamCloseTimeout = 0
	sess, err := yamux.Client(hostEnd, cfg)
	if err != nil {
		tb.Fatalf("starting yamux client: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			sess.Close()
			<-served
		})
	}
	tb.Cleanup(stop)
	return agentclient.DialerFunc(func(ctx context.Context) (agentclient.Conn, error) {
		st, err := sess.OpenStream()
		if err != nil {
			return nil, fmt.Errorf("opening fake agent stream: %w", err)
		}
		return &hostConn{halfCloser: halfCloser{st}}, nil
	}), stop
}

// halfCloser is a yamux stream as a agentclient.Conn: yamux's Close is already a
// half-close (FIN, then the stream still reads).
type halfCloser struct{ *yamux.Stream }

// CloseWrite sends FIN.
func (h halfCloser) CloseWrite() error { return h.Stream.Close() }

// hostConn is the host's end of a stream, which behaves as a connection
// to cocoon-proxy does: Close ends both directions (reads in progress fail
// with net.ErrClosed), CloseWrite only the host's.
type hostConn struct {
	halfCloser
	closed atomic.Bool
}

// Read reads from the stream; after Close it fails with net.ErrClosed.
func (h *hostConn) Read(b []byte) (int, error) {
	n, err := h.Stream.Read(b)
	if err != nil && h.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

// Close sends FIN and interrupts reads.
func (h *hostConn) Close() error {
	h.closed.Store(true)
	_ = h.Stream.SetReadDeadline(time.Unix(1, 0))
	return h.Stream.Close()
}

// chanListener is a net.Listener fed by push.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return fakeAddr{} }

type fakeAddr struct{}

func (fakeAddr) Network() string { return "fake" }
func (fakeAddr) String() string  { return "fake-agent" }
