package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
)

// DefaultHeaderTimeout bounds the wait for a stream's header: the host writes
// it right after opening the stream, so a stream that stays silent is a bug
// or a stray connection, and must not hold a goroutine forever.
const DefaultHeaderTimeout = 10 * time.Second

// StdioHandler serves one raw stdio stream the host opened: h names the
// process and which of its streams this is. The handler owns conn and must
// close it. ctx ends when the server stops.
type StdioHandler func(ctx context.Context, h api.StreamHeader, conn net.Conn)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Service serves the ttrpc Agent API on RPC streams.
	Service api.AgentService
	// Stdio serves stdio streams. When nil, they are refused (closed).
	Stdio StdioHandler
	// PortForward serves port forward streams. When nil, they are refused
	// (closed).
	PortForward PortForwardHandler
	// HeaderTimeout bounds the wait for a stream's header; zero means
	// DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// Log receives the server's messages, and ttrpc's.
	Log *logrus.Entry
}

// Server reads the header of every stream a Transport yields and dispatches
// the stream: RPC streams to a ttrpc server, stdio streams to the Stdio
// handler, port forward streams to the PortForward handler.
type Server struct {
	cfg ServerConfig
}

// NewServer returns a server; it serves nothing until Serve is called.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("creating agent server: no service")
	}
	if cfg.Log == nil {
		return nil, errors.New("creating agent server: no logger")
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	return &Server{cfg: cfg}, nil
}

// Serve accepts streams from l until ctx is done or l fails, and closes l
// before returning. It returns nil when ctx ends it.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	ctx = log.WithLogger(ctx, s.cfg.Log.WithField("component", "ttrpc"))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	rpc, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("creating ttrpc server: %w", err)
	}
	api.RegisterAgentService(rpc, s.cfg.Service)
	rpcStreams := newConnListener(l.Addr())

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := rpc.Serve(ctx, rpcStreams); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.cfg.Log.WithError(err).Error("ttrpc server stopped")
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		l.Close()
	}()
	defer func() {
		cancel()
		rpc.Close()
		rpcStreams.Close()
		wg.Wait()
	}()

	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting agent streams: %w", err)
		}
		go s.dispatch(ctx, conn, rpcStreams)
	}
}

// dispatch reads conn's header and passes conn to whoever serves its kind.
func (s *Server) dispatch(ctx context.Context, conn net.Conn, rpcStreams *connListener) {
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	h, err := api.ReadStreamHeader(conn)
	if err != nil {
		s.cfg.Log.WithError(err).Warn("refusing stream")
		conn.Close()
		return
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		s.cfg.Log.WithError(err).Warn("refusing stream: clearing its deadline")
		conn.Close()
		return
	}
	switch h.Kind {
	case api.StreamRPC:
		if err := rpcStreams.deliver(ctx, conn); err != nil {
			conn.Close()
		}
	case api.StreamStdio:
		if s.cfg.Stdio == nil {
			s.cfg.Log.WithFields(logrus.Fields{
				"container": h.ContainerID, "exec": h.ExecID, "stdio": h.Stdio,
			}).Warn("refusing stdio stream: not supported yet")
			conn.Close()
			return
		}
		s.cfg.Stdio(ctx, h, conn)
	case api.StreamPortForward:
		if s.cfg.PortForward == nil {
			s.cfg.Log.WithField("port", h.Port).Warn("refusing port forward stream: not supported")
			conn.Close()
			return
		}
		s.cfg.PortForward(ctx, h.Port, conn)
	}
}

// connListener is a net.Listener fed from a channel: the Server accepts
// streams from the transport and passes the RPC ones to ttrpc through it.
type connListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to the next Accept.
func (l *connListener) deliver(ctx context.Context, c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept returns the next delivered connection.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and deliver fail from now on.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address of the transport the connections come from.
func (l *connListener) Addr() net.Addr { return l.addr }
