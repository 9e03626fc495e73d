// Package proxy multiplexes the agent channel of one sandbox. The guest's
// agent runs a yamux server on a virtio-serial port whose host end is a unix
// socket served by the VMM; the proxy holds the yamux client session on it and
// turns every connection accepted on its own listener into one yamux stream,
// copied both ways unchanged. The stream header (api.StreamHeader) is written
// by the client itself: the proxy never parses what it relays.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"
)

const (
	// DefaultWindowSize is the receive window of every stream: how much the
	// agent may send on one stream before the host has read it. The window
	// is reopened when half of it has been consumed, so the agent keeps
	// sending as long as the window update (host -> QEMU -> guest -> agent)
	// comes back before the other half is used up. At the 200 MB/s stdio
	// target, 4 MiB (half of 8 MiB) lasts 20 ms: ample for that round trip
	// even under TCG, where the guest's vCPU thread also does the device
	// work. The window is also the most a stalled reader can leave buffered
	// in the proxy per stream, so larger is not free.
	DefaultWindowSize = 8 << 20

	// DefaultBufferSize is the size of the copy buffer of each direction of
	// each relayed connection. yamux sends at most one frame per write, so
	// large buffers mean large frames and few syscalls on the agent channel.
	DefaultBufferSize = 256 << 10

	// acceptBacklog bounds the streams waiting for the agent's accept, and
	// on our side the streams opened but not yet acknowledged by the agent
	// (OpenStream blocks beyond it). yamux assumes both sides use the same
	// value; 256 is yamux's default.
	acceptBacklog = 256

	// foreverish stands in for "no timeout" where yamux wants a duration.
	foreverish = 100 * 365 * 24 * time.Hour
)

// Options tunes Serve. The zero value is usable.
type Options struct {
	// Log receives the proxy's and yamux's messages; nil discards them.
	Log *logrus.Entry
	// WindowSize is the per-stream receive window in bytes; zero means
	// DefaultWindowSize. Values below yamux's 256 KiB minimum are raised.
	WindowSize uint32
	// BufferSize is the copy buffer of each direction of each connection;
	// zero means DefaultBufferSize.
	BufferSize int
}

// Serve multiplexes agent, the host end of the agent channel, onto the
// connections accepted from l until the agent channel closes (the VM went
// away: Serve returns nil), ctx is cancelled (Serve returns ctx.Err()) or l
// fails. Serve owns agent and l: it closes both, and every connection it
// accepted, before it returns, and leaves no goroutine behind.
//
// Streams may be opened before the guest's agent runs: what the host writes
// waits in the VMM's socket until the guest opens its port.
func Serve(ctx context.Context, agent io.ReadWriteCloser, l net.Listener, opts Options) error {
	log := opts.Log
	if log == nil {
		discard := logrus.New()
		discard.SetOutput(io.Discard)
		log = logrus.NewEntry(discard)
	}
	bufSize := opts.BufferSize
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	sess, err := yamux.Client(agent, sessionConfig(log, opts.WindowSize))
	if err != nil {
		agent.Close()
		l.Close()
		return fmt.Errorf("starting yamux session: %w", err)
	}
	s := &server{
		log:   log,
		sess:  sess,
		conns: make(map[net.Conn]struct{}),
		bufs:  sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }},
	}

	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.acceptLoop(l) }()

	var result error
	acceptDone := false
	select {
	case <-sess.CloseChan():
		log.Info("agent channel closed")
	case <-ctx.Done():
		log.Info("shutting down")
		result = ctx.Err()
	case result = <-acceptErr:
		acceptDone = true
		log.WithError(result).Error("listener failed")
	}

	s.shutdown()
	l.Close()
	sess.Close() // closes agent, ends every stream
	if !acceptDone {
		<-acceptErr
	}
	s.wg.Wait()
	return result
}

// sessionConfig returns the yamux configuration of the host side.
func sessionConfig(log *logrus.Entry, window uint32) *yamux.Config {
	if window == 0 {
		window = DefaultWindowSize
	}
	cfg := yamux.DefaultConfig()
	cfg.AcceptBacklog = acceptBacklog
	// The VM's exit closes the agent socket; that, not pings, is how the
	// agent's death is noticed. Pings would also fail while the VM is paused.
	cfg.EnableKeepAlive = false
	// A paused or slow guest stalls writes; the clients' own deadlines
	// decide when that is too long, not a session-wide timeout that would
	// tear down every stream of the sandbox.
	cfg.ConnectionWriteTimeout = foreverish
	// Streams opened while the guest boots are acknowledged only once the
	// agent runs, which under TCG can take longer than yamux's 75 s default,
	// after which yamux would close the whole session.
	cfg.StreamOpenTimeout = 0
	// A half-closed stream (stdin closed, output still flowing) may live as
	// long as its process: yamux must not reset it after a timeout.
	cfg.StreamCloseTimeout = 0
	cfg.MaxStreamWindowSize = max(window, 256<<10)
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{log: log}
	return cfg
}

// server is the state of one Serve call.
type server struct {
	log  *logrus.Entry
	sess *yamux.Session
	bufs sync.Pool // *[]byte copy buffers

	// openMu serializes OpenStream: yamux picks a stream's ID before it
	// queues the stream's SYN, so concurrent opens can send SYNs out of ID
	// order, and the agent takes a SYN for an ID at or below one it has
	// seen for the first frame of a new host (agent/port.go).
	openMu sync.Mutex

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // one per relayed connection
}

// acceptLoop accepts client connections until l fails or is closed.
func (s *server) acceptLoop(l net.Listener) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			if transientAcceptError(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.WithError(err).Warnf("accepting client, retrying in %v", delay)
				select {
				case <-time.After(delay):
				case <-s.sess.CloseChan():
					return nil
				}
				continue
			}
			return fmt.Errorf("accepting client: %w", err)
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		go s.handle(c)
	}
}

// transientAcceptError tells whether Accept may succeed if retried later.
func transientAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// track registers c so that shutdown closes it; it reports false, and
// registers nothing, once shutdown has begun.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack forgets c once its relay has ended.
func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// shutdown closes every client connection and stops tracking new ones.
func (s *server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.conns {
		c.Close()
	}
}

// handle relays one client connection over a new stream.
func (s *server) handle(c net.Conn) {
	defer s.untrack(c)
	defer c.Close()
	// OpenStream does not wait for the agent: it only blocks when
	// acceptBacklog streams are already waiting for it, and returns when
	// the session closes.
	s.openMu.Lock()
	st, err := s.sess.OpenStream()
	s.openMu.Unlock()
	if err != nil {
		s.log.WithError(err).Warn("opening stream to the agent")
		return
	}
	log := s.log.WithField("stream", st.StreamID())
	log.Debug("relaying client")
	up, down := s.relay(c, st)
	log.WithFields(logrus.Fields{"up": up, "down": down}).Debug("client done")
}
