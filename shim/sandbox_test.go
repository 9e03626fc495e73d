package shim_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/agent/client"
	"github.com/cocoon-containers/cocoon/agent/client/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/proxy"
	"github.com/cocoon-containers/cocoon/shim"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// waitTimeout bounds every wait of the tests for the shim or the fake.
const waitTimeout = 10 * time.Second

// sandbox is a fake sandbox: the fake agent of clienttest behind the real
// cocoon-proxy, serving a unix socket, as a shim finds a real sandbox. The
// test plays the process: it receives the stdio streams the shim attaches,
// the signals and resizes it sends, and answers WaitProcess.
type sandbox struct {
	sock    string
	streams chan stdioStream
	signals chan *api.SignalProcessRequest
	resizes chan *api.ResizeTtyRequest
	// exit answers the pending WaitProcess with an exit status.
	exit chan int32
	// kill stops the agent, as the VM's death would.
	kill func()
}

// stdioStream is one stream the shim attached.
type stdioStream struct {
	h    api.StreamHeader
	conn net.Conn
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	proxyEnd, agentEnd := fileConn(t, fds[0]), fileConn(t, fds[1])
	dir, err := os.MkdirTemp("", "ccn-shim")
	if err != nil {
		t.Fatal(err)
	}
	sb := &sandbox{
		sock:    filepath.Join(dir, "proxy.sock"),
		streams: make(chan stdioStream, 16),
		signals: make(chan *api.SignalProcessRequest, 16),
		resizes: make(chan *api.ResizeTtyRequest, 16),
		exit:    make(chan int32, 1),
	}
	l, err := net.Listen("unix", sb.sock)
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
		StdioFunc: func(h api.StreamHeader, c net.Conn) { sb.streams <- stdioStream{h, c} },
		SignalProcessFunc: func(_ context.Context, req *api.SignalProcessRequest) (*api.Empty, error) {
			sb.signals <- req
			return &api.Empty{}, nil
		},
		ResizeTtyFunc: func(_ context.Context, req *api.ResizeTtyRequest) (*api.Empty, error) {
			sb.resizes <- req
			return &api.Empty{}, nil
		},
		WaitProcessFunc: func(ctx context.Context, req *api.ProcessRequest) (*api.WaitProcessResponse, error) {
			select {
			case st := <-sb.exit:
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
	sb.kill = sync.OnceFunc(func() {
		close(killed)
		stopAgent()
		<-agentDone
		agentEnd.Close()
	})
	t.Cleanup(func() {
		sb.kill()
		stopProxy()
		select {
		case <-served:
		case <-time.After(waitTimeout):
			t.Error("the proxy did not stop")
		}
		for {
			select {
			case s := <-sb.streams:
				s.conn.Close()
				continue
			default:
			}
			break
		}
		os.RemoveAll(dir)
	})
	return sb
}

func fileConn(t *testing.T, fd int) net.Conn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connect returns an agent client through the sandbox's proxy.
func (sb *sandbox) connect(t *testing.T) *client.Client {
	t.Helper()
	c, err := shim.Connect(context.Background(), client.ProxyDialer{Path: sb.sock}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attached waits for the shim to attach n streams, and returns them by
// name; it checks that they name process cid/eid.
func (sb *sandbox) attached(t *testing.T, n int, cid, eid string) map[api.Stdio]net.Conn {
	t.Helper()
	got := map[api.Stdio]net.Conn{}
	for range n {
		select {
		case s := <-sb.streams:
			t.Cleanup(func() { s.conn.Close() })
			if s.h.ContainerID != cid || s.h.ExecID != eid {
				t.Errorf("stream %s for %q/%q, want %q/%q", s.h.Stdio, s.h.ContainerID, s.h.ExecID, cid, eid)
			}
			if got[s.h.Stdio] != nil {
				t.Fatalf("%s attached twice", s.h.Stdio)
			}
			got[s.h.Stdio] = s.conn
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d streams attached", len(got), n)
		}
	}
	return got
}

// noMoreStreams checks that the shim attached nothing more.
func (sb *sandbox) noMoreStreams(t *testing.T) {
	t.Helper()
	select {
	case s := <-sb.streams:
		t.Errorf("unexpected %s stream", s.h.Stdio)
	default:
	}
}

// signal waits for the next forwarded signal.
func (sb *sandbox) signal(t *testing.T) *api.SignalProcessRequest {
	t.Helper()
	select {
	case req := <-sb.signals:
		return req
	case <-time.After(waitTimeout):
		t.Fatal("no signal forwarded")
		return nil
	}
}

// resize waits for the next ResizeTty.
func (sb *sandbox) resize(t *testing.T) *api.ResizeTtyRequest {
	t.Helper()
	select {
	case req := <-sb.resizes:
		return req
	case <-time.After(waitTimeout):
		t.Fatal("no resize")
		return nil
	}
}

// result is what Run returned.
type result struct {
	status int
	err    error
}

// start runs shim.Run in the background.
func start(a shim.Agent, cfg shim.Config) <-chan result {
	done := make(chan result, 1)
	go func() {
		st, err := shim.Run(context.Background(), a, cfg)
		done <- result{st, err}
	}()
	return done
}

// finished waits for Run to return.
func finished(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
		return result{}
	}
}

// closeWrite half-closes a stream of the fake agent, as the agent does
// with an output stream once flushed.
func closeWrite(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// openPty opens a pseudo-terminal pair.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var n int
	if err := ptyControl(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// setWinsize sets the size of a terminal, as the holder of a pty's master
// does.
func setWinsize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	if err := ptyControl(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		t.Fatal(err)
	}
}

func ptyControl(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
