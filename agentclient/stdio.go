package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/cocoon-containers/cocoon/api"
)

// copyBufferSize is the buffer of each stdio copy: large, because bulk
// output crosses the agent channel in as few writes as possible.
const copyBufferSize = 256 << 10

// AttachStdio opens one stdio stream of a process: execID is empty for the
// container's init process. Stdout and Stderr streams are read, Stdin is
// written (CloseWrite delivers EOF), a Terminal stream is both.
func (c *Client) AttachStdio(ctx context.Context, containerID, execID string, s api.Stdio) (Conn, error) {
	conn, err := c.OpenStream(ctx, api.StreamHeader{
		Kind: api.StreamStdio, ContainerID: containerID, ExecID: execID, Stdio: s,
	})
	if err != nil {
		return nil, fmt.Errorf("attaching %s of %s: %w", s, processName(containerID, execID), err)
	}
	return conn, nil
}

func processName(containerID, execID string) string {
	if execID == "" {
		return "container " + containerID
	}
	return fmt.Sprintf("exec %s of container %s", execID, containerID)
}

// IO says where a process's stdio goes on the host. A nil field is not
// attached: the agent connects it to /dev/null.
type IO struct {
	// Stdin is copied to the process; its EOF closes the process's stdin
	// (not in Terminal mode, where the terminal stays open).
	Stdin io.Reader
	// Stdout and Stderr receive the process's output.
	Stdout io.Writer
	Stderr io.Writer
	// Terminal attaches one terminal stream instead: Stdin is typed into
	// it, and Stdout receives what the terminal shows. Stderr is unused.
	Terminal bool
}

// Config returns the StdioConfig that announces these streams to the agent
// in CreateContainer or ExecProcess. A terminal process always has its
// output attached.
func (o IO) Config() *api.StdioConfig {
	if o.Terminal {
		return &api.StdioConfig{Stdin: o.Stdin != nil, Stdout: true}
	}
	return &api.StdioConfig{Stdin: o.Stdin != nil, Stdout: o.Stdout != nil, Stderr: o.Stderr != nil}
}

// Attached is a process's stdio attached by Attach, copied in the
// background between the streams and the IO.
type Attached struct {
	conns  []Conn
	output sync.WaitGroup // the copies of stdout, stderr, terminal
	input  sync.WaitGroup // the copy of stdin
	done   chan struct{}  // closed when output is done

	mu     sync.Mutex
	err    error
	closed bool
}

// Attach opens the streams that o asks for and starts copying: output
// until the agent closes the stream (the process exited and its output was
// flushed), input until o.Stdin ends. Attach the init process's streams
// between CreateContainer and StartContainer, an exec's right after
// ExecProcess.
func (c *Client) Attach(ctx context.Context, containerID, execID string, o IO) (_ *Attached, retErr error) {
	a := &Attached{done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			a.Close()
		}
	}()
	open := func(s api.Stdio) (Conn, error) {
		conn, err := c.AttachStdio(ctx, containerID, execID, s)
		if err != nil {
			return nil, err
		}
		a.conns = append(a.conns, conn)
		return conn, nil
	}
	if o.Terminal {
		conn, err := open(api.Terminal)
		if err != nil {
			return nil, err
		}
		out := o.Stdout
		if out == nil {
			out = io.Discard
		}
		a.copyOut(conn, out, api.Terminal)
		if o.Stdin != nil {
			a.copyIn(conn, o.Stdin, false /* closeWrite */)
		}
	} else {
		if o.Stdin != nil {
			conn, err := open(api.Stdin)
			if err != nil {
				return nil, err
			}
			a.copyIn(conn, o.Stdin, true /* closeWrite */)
		}
		for _, s := range []struct {
			w     io.Writer
			stdio api.Stdio
		}{{o.Stdout, api.Stdout}, {o.Stderr, api.Stderr}} {
			if s.w == nil {
				continue
			}
			conn, err := open(s.stdio)
			if err != nil {
				return nil, err
			}
			a.copyOut(conn, s.w, s.stdio)
		}
	}
	go func() {
		a.output.Wait()
		close(a.done)
	}()
	return a, nil
}

func (a *Attached) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil && !a.closed {
		a.err = err
	}
}

// copyOut copies a stream of the process to w until the agent closes it.
func (a *Attached) copyOut(conn Conn, w io.Writer, s api.Stdio) {
	a.output.Add(1)
	go func() {
		defer a.output.Done()
		buf := make([]byte, copyBufferSize)
		if _, err := io.CopyBuffer(w, onlyReader{conn}, buf); err != nil && !errors.Is(err, net.ErrClosed) {
			a.setErr(fmt.Errorf("copying %s: %w", s, err))
		}
	}()
}

// copyIn copies r to the process; at r's EOF it closes the stream's write
// side when closeWrite is set. Failures are not reported: the process may
// exit without reading its input.
func (a *Attached) copyIn(conn Conn, r io.Reader, closeWrite bool) {
	a.input.Add(1)
	go func() {
		defer a.input.Done()
		buf := make([]byte, copyBufferSize)
		if _, err := io.CopyBuffer(onlyWriter{conn}, r, buf); err != nil {
			return
		}
		if closeWrite {
			_ = conn.CloseWrite()
		}
	}()
}

// Done is closed once every output stream has reached EOF.
func (a *Attached) Done() <-chan struct{} {
	return a.done
}

// Wait returns once every output stream has reached EOF, with the first
// error of the copies, or ctx's error when ctx ends first (the copies go
// on until Close).
func (a *Attached) Wait(ctx context.Context) error {
	select {
	case <-a.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for process output: %w", ctx.Err())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Close closes every stream, which ends the copies; input still being read
// from IO.Stdin is abandoned. It does not wait for the copies.
func (a *Attached) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	var errs []error
	for _, c := range a.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// onlyReader and onlyWriter hide the other methods of a Conn from io.Copy,
// so that it uses the given buffer instead of the Conn's ReadFrom or
// WriteTo (a *net.UnixConn's would copy through a small buffer).
type onlyReader struct{ io.Reader }

type onlyWriter struct{ io.Writer }
