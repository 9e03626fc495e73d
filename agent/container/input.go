package container

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
)

// inputRelay copies what the host sends on the stdin stream to the write end
// of the process's stdin pipe, or to a pty master.
//
// For a pipe (pipe set), the relay owns the pipe's write end and the
// stream: the stream's EOF closes the pipe, so the process reads EOF. For a
// terminal, the output relay owns both the master and the stream they share;
// the stream's EOF only ends the input (closing the master would hang the
// terminal up).
type inputRelay struct {
	name string
	f    *os.File
	pipe bool
	log  *logrus.Entry

	mu     sync.Mutex
	conn   Conn
	closed bool // f is closed (CloseStdin, EOF or remove)
}

func newInputRelay(name string, f *os.File, pipe bool, log *logrus.Entry) *inputRelay {
	return &inputRelay{name: name, f: f, pipe: pipe, log: log.WithField("stream", name)}
}

func (r *inputRelay) attach(conn Conn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		return errorf(ErrAlreadyExists, "%s is already attached", r.name)
	}
	r.conn = conn
	if r.closed && r.pipe {
		// Stdin was closed before the host attached: nothing will be
		// read, but take the stream so that the host's writes do not
		// block forever.
		go drainAndClose(conn)
		return nil
	}
	go r.copy(conn)
	return nil
}

func (r *inputRelay) copy(conn Conn) {
	buf := make([]byte, inputBuffer)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := r.f.Write(buf[:n]); werr != nil {
				if !errors.Is(werr, os.ErrClosed) && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.EIO) {
					r.log.WithError(werr).Debug("writing process input")
				}
				if r.pipe {
					drainAndClose(conn)
				}
				return
			}
		}
		if err != nil {
			if r.pipe {
				r.closeFile()
				_ = conn.Close()
			}
			return
		}
	}
}

// closeStdin closes the process's end: it reads EOF once the pipe is empty.
// A terminal ignores it: closing the master would hang the terminal up.
func (r *inputRelay) closeStdin() {
	if r.pipe {
		r.closeFile()
	}
}

func (r *inputRelay) closeFile() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed && r.pipe {
		r.closed = true
		_ = r.f.Close()
	}
}

// close releases the pipe and the stream (a terminal's belong to the
// output relay).
func (r *inputRelay) close() {
	if !r.pipe {
		return
	}
	r.closeFile()
	r.mu.Lock()
	conn := r.conn
	r.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
}
