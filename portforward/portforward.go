// Package portforward serves CRI port forwarding (kubectl port-forward) for
// a sandbox whose pod has a network namespace on the host. containerd and
// CRI-O enter that namespace and dial localhost:PORT in it, as they do for
// runc; under cocoon the pod's services listen in the guest. So a listener
// on the namespace's loopback receives every such connection (package
// network redirects them to it), recovers the port it was made to, and
// asks the guest's agent, over one api.StreamPortForward stream, to dial
// that port on the guest's loopback; the bytes are then copied both ways.
// A port the guest refuses resets the host connection, so the caller sees
// an error, as it would from a refused dial under runc.
package portforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/network"
)

// DefaultConnectTimeout bounds opening the stream to the agent and waiting
// for its answer (the agent's own dial is bounded in the guest).
const DefaultConnectTimeout = 30 * time.Second

// Server forwards the connections accepted on its listeners to the agent.
type Server struct {
	// Dialer opens streams to the sandbox's agent.
	Dialer agentclient.Dialer
	// ConnectTimeout bounds the connection to the guest's port: zero
	// means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Log receives the server's messages.
	Log *logrus.Entry

	wg sync.WaitGroup // one per connection
}

// Serve accepts connections on ls (from network.ListenLoopback) and
// forwards each to the port it was made to, until ctx ends (Serve returns
// nil) or a listener fails. It closes the listeners and every connection
// before it returns, and leaves no goroutine behind.
func (s *Server) Serve(ctx context.Context, ls ...*net.TCPListener) error {
	parent := ctx
	// Cancelled on the way out: it ends the connections still being made.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- s.accept(ctx, l) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel() // closes every connection
	for _, l := range ls {
		l.Close()
	}
	for range ls {
		if e := <-errc; err == nil {
			err = e
		}
	}
	s.wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return err
}

// accept accepts connections on l until it fails or is closed.
func (s *Server) accept(ctx context.Context, l *net.TCPListener) error {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting port forward connections: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.forward(ctx, c)
		}()
	}
}

// forward connects c to the guest's port that c was made to. The end of
// ctx closes both connections.
func (s *Server) forward(ctx context.Context, c *net.TCPConn) {
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()
	port, err := network.OriginalPort(c)
	if err != nil {
		s.Log.WithError(err).Warn("port forward")
		return
	}
	log := s.Log.WithField("port", port)
	st, err := s.connect(ctx, port)
	if err != nil {
		log.WithError(err).Info("port forward refused")
		// A reset, not a clean end: the caller (containerd, CRI-O)
		// reports an error instead of an empty connection.
		_ = c.SetLinger(0)
		return
	}
	defer st.Close()
	defer context.AfterFunc(ctx, func() { st.Close() })()
	in, out := splice(c, st)
	log.WithFields(logrus.Fields{"in": in, "out": out}).Debug("port forward done")
}

// connect opens a stream to the agent that it connected to port of the
// guest's loopback.
func (s *Server) connect(ctx context.Context, port uint16) (agentclient.Conn, error) {
	timeout := s.ConnectTimeout
	if timeout == 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := agentclient.OpenStream(ctx, s.Dialer, api.StreamHeader{Kind: api.StreamPortForward, Port: port})
	if err != nil {
		return nil, fmt.Errorf("connecting to port %d in the guest: %w", port, err)
	}
	deadline, _ := ctx.Deadline()
	_ = st.SetReadDeadline(deadline)
	var status [1]byte
	if _, err := io.ReadFull(st, status[:]); err != nil {
		st.Close()
		return nil, fmt.Errorf("connecting to port %d in the guest: no answer from the agent: %w", port, err)
	}
	_ = st.SetReadDeadline(time.Time{})
	switch api.PortForwardStatus(status[0]) {
	case api.PortForwardConnected:
		return st, nil
	case api.PortForwardRefused:
		st.Close()
		return nil, fmt.Errorf("connecting to port %d in the guest: connection refused", port)
	default:
		st.Close()
		return nil, fmt.Errorf("connecting to port %d in the guest: the agent could not dial it (status %d)", port, status[0])
	}
}

// halfCloser is a connection whose write side closes alone.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// splice copies a to b and b to a until both directions have ended,
// passing each end of file on as a half close, and returns the byte counts.
// An error in one direction closes both, which ends the other.
func splice(a, b halfCloser) (aToB, bToA int64) {
	done := make(chan int64, 1)
	go func() { done <- copyHalf(b, a) }()
	bToA = copyHalf(a, b)
	return <-done, bToA
}

func copyHalf(dst, src halfCloser) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		dst.Close()
		src.Close()
		return n
	}
	dst.CloseWrite()
	return n
}
