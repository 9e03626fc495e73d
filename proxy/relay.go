package proxy

import (
	"io"
	"net"

	"github.com/hashicorp/yamux"
)

// closeWriter is a connection whose write side can be closed alone, as
// *net.UnixConn's can.
type closeWriter interface {
	CloseWrite() error
}

// readerOnly and writerOnly hide ReaderFrom and WriterTo, so that io.CopyBuffer
// uses our large buffer instead of a 32 KiB one of its own (*net.UnixConn
// implements ReaderFrom with a generic fallback).
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// relay copies c to st and st to c until both directions are done and
// returns the byte counts (up: client to agent, down: agent to client).
//
// Half-closes travel through: when the client shuts down its write side, the
// stream is closed, which in yamux sends FIN and keeps reading; when the
// agent closes the stream, c's write side is shut down and the client reads
// EOF. If the client goes away while the agent still writes, the rest of the
// stream is read and dropped so the agent never blocks on a full window.
func (s *server) relay(c net.Conn, st *yamux.Stream) (up, down int64) {
	upDone := make(chan int64, 1)
	go func() {
		buf := s.bufs.Get().(*[]byte)
		defer s.bufs.Put(buf)
		n, err := io.CopyBuffer(writerOnly{st}, readerOnly{c}, *buf)
		if err != nil {
			s.log.WithError(err).WithField("stream", st.StreamID()).Debug("client to agent")
		}
		// Whether the client closed its write side or broke, the agent
		// receives nothing more: tell it.
		st.Close()
		upDone <- n
	}()

	buf := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(buf)
	down, err := io.CopyBuffer(writerOnly{c}, readerOnly{st}, *buf)
	if err == nil {
		if cw, ok := c.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			c.Close()
		}
	} else {
		s.log.WithError(err).WithField("stream", st.StreamID()).Debug("agent to client")
		c.Close() // ends the other direction too
		n, _ := io.CopyBuffer(io.Discard, readerOnly{st}, *buf)
		down += n
	}
	up = <-upDone
	c.Close()
	st.Close()
	return up, down
}
