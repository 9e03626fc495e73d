package relay

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
)

// open opens the streams that cfg attaches: the terminal, or each of stdin,
// stdout and stderr that is set.
func (s *session) open(ctx context.Context) error {
	var err error
	openOne := func(conn *agentclient.Conn, which api.Stdio) {
		if err == nil {
			*conn, err = s.agent.AttachStdio(ctx, s.cfg.ContainerID, s.cfg.ExecID, which)
		}
	}
	if s.cfg.Console != nil {
		openOne(&s.terminal, api.Terminal)
		return err
	}
	if s.cfg.Stdin != nil {
		openOne(&s.stdin, api.Stdin)
	}
	if s.cfg.Stdout != nil {
		openOne(&s.stdout, api.Stdout)
	}
	if s.cfg.Stderr != nil {
		openOne(&s.stderr, api.Stderr)
	}
	return err
}

// closeStreams closes every open stream.
func (s *session) closeStreams() {
	for _, c := range []agentclient.Conn{s.stdin, s.stdout, s.stderr, s.terminal} {
		if c != nil {
			c.Close()
		}
	}
}

// startRelays starts copying every attached stream, and returns a channel
// closed once every output stream (stdout, stderr, or the terminal's output)
// has ended.
func (s *session) startRelays() <-chan struct{} {
	var outputs []<-chan struct{}
	if s.terminal != nil {
		var out io.Writer = s.cfg.Console
		if s.cfg.Stdout != nil {
			out = s.cfg.Stdout
		}
		go s.relayIn("terminal", s.terminal, s.cfg.Console, false /* closeWrite */)
		outputs = append(outputs, s.relayOut("terminal", out, s.terminal))
	}
	if s.stdin != nil {
		go s.relayIn("stdin", s.stdin, s.cfg.Stdin, true /* closeWrite */)
	}
	if s.stdout != nil {
		outputs = append(outputs, s.relayOut("stdout", s.cfg.Stdout, s.stdout))
	}
	if s.stderr != nil {
		outputs = append(outputs, s.relayOut("stderr", s.cfg.Stderr, s.stderr))
	}
	all := make(chan struct{})
	go func() {
		defer close(all)
		for _, c := range outputs {
			<-c
		}
	}()
	return all
}

// relayIn copies src to the stream conn until src ends. With closeWrite,
// the end of src ends what the process reads (stdin's EOF). A terminal's
// input is not closed: the caller hanging up its end reaches the process as
// the SIGHUP the relay receives and forwards.
func (s *session) relayIn(name string, conn agentclient.Conn, src io.Reader, closeWrite bool) {
	n, rerr, werr := copyStream(conn, src, make([]byte, s.cfg.bufferSize()), nil)
	log := s.log.WithField("stream", name).WithField("bytes", n)
	switch {
	case werr != nil:
		// The process closed its stdin, or exited: nothing more to do.
		log.WithError(werr).Debug("input stream closed")
	case rerr != nil:
		log.WithError(rerr).Debug("reading input failed")
	default:
		log.Debug("input ended")
	}
	if closeWrite && werr == nil {
		if err := conn.CloseWrite(); err != nil {
			log.WithError(err).Debug("closing input")
		}
	}
}

// relayOut starts copying the stream conn to dst until the stream ends, and
// returns a channel closed then. If dst fails (its reader went away), the
// stream is closed, so that the process's writes fail as they would on a
// broken pipe.
func (s *session) relayOut(name string, dst io.Writer, conn agentclient.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, rerr, werr := copyStream(dst, conn, make([]byte, s.cfg.bufferSize()), s.act)
		log := s.log.WithField("stream", name).WithField("bytes", n)
		switch {
		case werr != nil:
			log.WithError(werr).Warn("writing output failed: closing the stream")
			conn.Close()
		case rerr != nil:
			log.WithError(rerr).Debug("output stream failed")
		default:
			log.Debug("output ended")
		}
	}()
	return done
}

// copyStream copies src to dst through buf until src ends, and says which
// side failed: rerr for src (not io.EOF), werr for dst. Unlike io.CopyBuffer
// it always uses buf (an *os.File destination would otherwise read with
// its own 32 KiB buffer), and it stamps act after every chunk.
func copyStream(dst io.Writer, src io.Reader, buf []byte, act *activity) (n int64, rerr, werr error) {
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			nw, err := dst.Write(buf[:nr])
			n += int64(nw)
			if err == nil && nw != nr {
				err = io.ErrShortWrite
			}
			if err != nil {
				return n, nil, err
			}
			act.touch()
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// activity records when output last moved.
type activity struct {
	last atomic.Int64 // unix nanoseconds
}

func newActivity() *activity {
	a := &activity{}
	a.touch()
	return a
}

// touch records that output moved now; a nil activity ignores it.
func (a *activity) touch() {
	if a != nil {
		a.last.Store(time.Now().UnixNano())
	}
}

// idle is how long output has not moved.
func (a *activity) idle() time.Duration {
	return time.Since(time.Unix(0, a.last.Load()))
}

// drain waits for done as long as output keeps moving: it gives up, and
// returns false, once no output has moved for idleTimeout, or after
// maxWait in any case (something in the guest that outlived the process
// may write forever).
func (a *activity) drain(done <-chan struct{}, idleTimeout, maxWait time.Duration) bool {
	a.touch() // the exit counts as progress: the agent has just flushed
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-done:
			return true
		case <-deadline.C:
			return false
		case <-idle.C:
			d := a.idle()
			if d >= idleTimeout {
				return false
			}
			idle.Reset(idleTimeout - d)
		}
	}
}
