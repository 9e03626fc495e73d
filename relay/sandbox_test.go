package relay_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cocoon-containers/cocoon/relay/relaytest"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/relay"
	"golang.org/x/sys/unix"
)

// waitTimeout bounds every wait of the tests for the relay or the fake.
const waitTimeout = 10 * time.Second

// sandbox is relaytest's fake sandbox, with this file's helpers.
type sandbox struct{ *relaytest.Sandbox }

func newSandbox(t *testing.T) *sandbox { return &sandbox{relaytest.NewSandbox(t)} }

// connect returns an agent client through the sandbox's proxy.
func (sb *sandbox) connect(t *testing.T) *agentclient.Client {
	t.Helper()
	c, err := relay.Connect(context.Background(), agentclient.ProxyDialer{Path: sb.Sock}, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// attached waits for the relay to attach n streams, and returns them by
// name; it checks that they name process cid/eid.
func (sb *sandbox) attached(t *testing.T, n int, cid, eid string) map[api.Stdio]net.Conn {
	t.Helper()
	got := map[api.Stdio]net.Conn{}
	for range n {
		select {
		case s := <-sb.Streams:
			t.Cleanup(func() { s.Conn.Close() })
			if s.Header.ContainerID != cid || s.Header.ExecID != eid {
				t.Errorf("stream %s for %q/%q, want %q/%q", s.Header.Stdio, s.Header.ContainerID, s.Header.ExecID, cid, eid)
			}
			if got[s.Header.Stdio] != nil {
				t.Fatalf("%s attached twice", s.Header.Stdio)
			}
			got[s.Header.Stdio] = s.Conn
		case <-time.After(waitTimeout):
			t.Fatalf("%d of %d streams attached", len(got), n)
		}
	}
	return got
}

// noMoreStreams checks that the relay attached nothing more.
func (sb *sandbox) noMoreStreams(t *testing.T) {
	t.Helper()
	select {
	case s := <-sb.Streams:
		t.Errorf("unexpected %s stream", s.Header.Stdio)
	default:
	}
}

// signal waits for the next forwarded signal.
func (sb *sandbox) signal(t *testing.T) *api.SignalProcessRequest {
	t.Helper()
	select {
	case req := <-sb.Signals:
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
	case req := <-sb.Resizes:
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

// start runs relay.Run in the background.
func start(a relay.Agent, cfg relay.Config) <-chan result {
	done := make(chan result, 1)
	go func() {
		st, err := relay.Run(context.Background(), a, cfg)
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
	m, sl, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); sl.Close() })
	return m, sl
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
