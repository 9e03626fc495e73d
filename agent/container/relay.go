package container

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Buffer sizes of the relays. Output reads start small and grow to
// maxOutputBuffer once a read fills the buffer: a busy stream moves 1 MiB
// per read and write (what the serial port needs to reach its throughput),
// an idle one costs 64 KiB.
const (
	minOutputBuffer = 64 << 10
	maxOutputBuffer = 1 << 20
	inputBuffer     = 256 << 10
	// pipeSize is what the pipes are resized to (F_SETPIPE_SZ): a 1 MiB
	// pipe lets the relay move 1 MiB per read.
	pipeSize = 1 << 20
)

// Conn is a stream the host attached: a yamux stream, a vsock connection.
// Closing it ends the stream; when it has a CloseWrite method, that method
// ends only our direction (yamux's Close already does just that).
type Conn = io.ReadWriteCloser

// closeWrite ends our direction of c.
func closeWrite(c Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// outputRelay copies what a process writes (the read end of a stdout or
// stderr pipe, or a pty master) to the stream the host attaches.
//
// It keeps the read end until EOF, so nothing is lost when the host attaches
// late or the process exits at once. drained is closed as soon as everything
// the process wrote before it exited has been written to the stream: at EOF,
// or, when something else (a background child) still holds the pipe open,
// at the first moment after the exit when the pipe is empty. Copying goes on
// until EOF either way.
type outputRelay struct {
	name string
	f    *os.File // nonblocking, in the runtime's poller
	log  *logrus.Entry

	mu       sync.Mutex
	conn     Conn // nil until attached
	closed   bool
	exited   atomic.Bool
	exitOnce sync.Once

	drainOnce sync.Once
	drained   chan struct{}
	done      chan struct{} // closed when the copy loop has returned
}

func newOutputRelay(name string, f *os.File, log *logrus.Entry) *outputRelay {
	return &outputRelay{
		name:    name,
		f:       f,
		log:     log.WithField("stream", name),
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// attach starts copying to conn. Only one stream may attach.
func (r *outputRelay) attach(conn Conn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return preconditionf("%s is closed", r.name)
	}
	if r.conn != nil {
		return errorf(ErrAlreadyExists, "%s is already attached", r.name)
	}
	r.conn = conn
	go r.copy(conn)
	return nil
}

// processExited tells the relay that the process has exited: from now on an
// empty pipe means drained. A copy loop waiting for data is woken by a read
// deadline in the past.
func (r *outputRelay) processExited() {
	r.exitOnce.Do(func() {
		r.exited.Store(true)
		_ = r.f.SetReadDeadline(time.Now())
	})
}

func (r *outputRelay) markDrained() { r.drainOnce.Do(func() { close(r.drained) }) }

// copy moves data from the pipe to conn until EOF. If conn fails (the host
// went away), the rest is read and dropped, so the process never blocks on
// a full pipe.
func (r *outputRelay) copy(conn Conn) {
	defer close(r.done)
	defer r.markDrained()
	rc, err := r.f.SyscallConn()
	if err != nil {
		r.log.WithError(err).Error("relaying output")
		return
	}
	buf := make([]byte, minOutputBuffer)
	var (
		broken      bool // conn failed: drop what follows
		sawExitDrop bool // the empty-after-exit check already happened
	)
	for {
		var (
			n     int
			rerr  error
			empty bool
		)
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, rerr = unix.Read(int(fd), buf)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				if r.exited.Load() && !sawExitDrop {
					empty = true
					return true
				}
				return false // wait for data
			}
			return true
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// processExited woke us: look at the pipe again, now
			// knowing that an empty pipe means drained.
			_ = r.f.SetReadDeadline(time.Time{})
			continue
		case err != nil:
			// The pipe was closed under us (the container was removed).
			r.finish(conn, broken)
			return
		case empty:
			sawExitDrop = true
			r.markDrained()
			continue
		case rerr == unix.EIO && n <= 0:
			// A pty master whose slave is closed: the terminal's EOF.
			r.finish(conn, broken)
			return
		case rerr != nil:
			r.log.WithError(rerr).Warn("reading process output")
			r.finish(conn, broken)
			return
		case n == 0:
			r.finish(conn, broken)
			return
		}
		if !broken {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				r.log.WithError(werr).Debug("output stream failed; dropping the rest")
				broken = true
			}
		}
		if n == len(buf) && len(buf) < maxOutputBuffer {
			buf = make([]byte, maxOutputBuffer)
		}
	}
}

// finish runs at EOF: it closes our end of the pipe and our direction of the
// stream, then waits for the host to close its direction (or for close) to
// release the stream.
func (r *outputRelay) finish(conn Conn, broken bool) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	_ = r.f.Close()
	r.markDrained()
	if broken {
		_ = conn.Close()
		return
	}
	if err := closeWrite(conn); err != nil {
		r.log.WithError(err).Debug("closing the output stream")
	}
	go func() {
		_, _ = io.Copy(io.Discard, conn)
		_ = conn.Close()
	}()
}

// close releases the pipe and the stream, ending a copy in progress.
func (r *outputRelay) close() {
	r.mu.Lock()
	r.closed = true
	conn := r.conn
	r.mu.Unlock()
	_ = r.f.Close()
	if conn != nil {
		_ = conn.Close()
	}
	r.markDrained()
}

// drainAndClose reads conn to its end, then closes it.
func drainAndClose(conn Conn) {
	_, _ = io.Copy(io.Discard, conn)
	_ = conn.Close()
}
