package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"
)

// socketPair returns the two ends of a connected unix stream socket pair: the
// same kind of byte stream as QEMU's agent.sock.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatalf("socketpair: %v", err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatalf("socketpair: %v", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// testLog returns a logger that writes to the test's log when -v is given.
func testLog(tb testing.TB) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l).WithField("test", tb.Name())
}

// harness runs Serve between a unix listener and a fake agent: a yamux
// server on the other end of a socket pair that runs handler on every stream.
type harness struct {
	tb       testing.TB
	sockPath string
	agentEnd net.Conn
	served   chan error
	cancel   context.CancelFunc

	agentWG sync.WaitGroup
	agent   *yamux.Session
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	baseline := runtime.NumGoroutine()
	proxyEnd, agentEnd := socketPair(tb)
	dir, err := os.MkdirTemp("", "cocoon-proxy-test")
	if err != nil {
		tb.Fatal(err)
	}
	sockPath := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", sockPath)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{tb: tb, sockPath: sockPath, agentEnd: agentEnd, served: make(chan error, 1), cancel: cancel}
	go func() { h.served <- Serve(ctx, proxyEnd, l, Options{Log: testLog(tb)}) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-h.served:
		case <-time.After(10 * time.Second):
			tb.Errorf("Serve did not return after cancel")
		}
		agentEnd.Close()
		if h.agent != nil {
			h.agent.Close()
		}
		h.agentWG.Wait()
		os.RemoveAll(dir)
		checkGoroutines(tb, baseline)
	})
	return h
}

// startAgent starts the fake agent: every stream it accepts runs handler,
// which owns the stream.
func (h *harness) startAgent(handler func(net.Conn)) {
	cfg := sessionConfig(testLog(h.tb).WithField("side", "agent"), 0)
	sess, err := yamux.Server(h.agentEnd, cfg)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.agent = sess
	h.agentWG.Add(1)
	go func() {
		defer h.agentWG.Done()
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			h.agentWG.Add(1)
			go func() {
				defer h.agentWG.Done()
				handler(st)
			}()
		}
	}()
}

func (h *harness) dial() *net.UnixConn {
	h.tb.Helper()
	c, err := net.Dial("unix", h.sockPath)
	if err != nil {
		h.tb.Fatalf("dialing proxy: %v", err)
	}
	return c.(*net.UnixConn)
}

// checkGoroutines waits for the goroutine count to settle back to baseline.
func checkGoroutines(tb testing.TB, baseline int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Errorf("goroutine leak: %d running, %d before the test\n%s", runtime.NumGoroutine(), baseline, buf)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echo writes back what it reads, then closes.
func echo(st net.Conn) {
	io.Copy(st, st)
	st.Close()
}

func TestManyConcurrentStreams(t *testing.T) {
	h := newHarness(t)
	h.startAgent(echo)

	const clients = 100
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			errs <- func() error {
				c := h.dial()
				defer c.Close()
				msg := make([]byte, 64<<10+i)
				rand.NewChaCha8([32]byte{byte(i)}).Read(msg)
				go func() {
					c.Write(msg)
					c.CloseWrite()
				}()
				got, err := io.ReadAll(c)
				if err != nil {
					return fmt.Errorf("client %d: reading: %w", i, err)
				}
				if !bytes.Equal(got, msg) {
					return fmt.Errorf("client %d: got %d bytes back, want the %d sent", i, len(got), len(msg))
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestLargeTransfer moves data both ways at once and checks it end to end.
func TestLargeTransfer(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	h := newHarness(t)
	h.startAgent(func(st net.Conn) {
		defer st.Close()
		inHash := make(chan []byte, 1)
		go func() {
			sum := sha256.New()
			io.Copy(sum, st)
			inHash <- sum.Sum(nil)
		}()
		io.Copy(st, io.LimitReader(rand.NewChaCha8([32]byte{2}), size))
		st.Write(<-inHash)
	})

	c := h.dial()
	defer c.Close()
	sentHash := make(chan []byte, 1)
	go func() {
		sum := sha256.New()
		io.Copy(io.MultiWriter(c, sum), io.LimitReader(rand.NewChaCha8([32]byte{1}), size))
		c.CloseWrite()
		sentHash <- sum.Sum(nil)
	}()

	got := sha256.New()
	n, err := io.Copy(got, io.LimitReader(c, size))
	if err != nil || n != size {
		t.Fatalf("reading from agent: %d bytes, %v; want %d", n, err, size)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{2}), size))
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Errorf("agent to client: checksum mismatch")
	}
	tail, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading agent's checksum: %v", err)
	}
	if sent := <-sentHash; !bytes.Equal(tail, sent) {
		t.Errorf("client to agent: agent hashed %x, client sent %x", tail, sent)
	}
}

func TestHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		h := newHarness(t)
		h.startAgent(func(st net.Conn) {
			defer st.Close()
			in, err := io.ReadAll(st) // ends only when the client's CloseWrite arrives
			if err != nil {
				fmt.Fprintf(st, "agent read error: %v", err)
				return
			}
			fmt.Fprintf(st, "pong:%s", in)
		})
		c := h.dial()
		defer c.Close()
		c.Write([]byte("ping"))
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "pong:ping" {
			t.Errorf("after CloseWrite, read %q, %v; want \"pong:ping\" then EOF", got, err)
		}
	})
	t.Run("agent first", func(t *testing.T) {
		h := newHarness(t)
		agentGot := make(chan string, 1)
		h.startAgent(func(st net.Conn) {
			st.Write([]byte("bye"))
			st.Close() // yamux: half-close, the stream still reads
			in, err := io.ReadAll(st)
			if err != nil {
				in = []byte(err.Error())
			}
			agentGot <- string(in)
		})
		c := h.dial()
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("read %q, %v; want \"bye\" then EOF", got, err)
		}
		if _, err := c.Write([]byte("late")); err != nil {
			t.Fatalf("writing after the agent's close: %v", err)
		}
		c.CloseWrite()
		select {
		case in := <-agentGot:
			if in != "late" {
				t.Errorf("agent read %q after its close, want \"late\"", in)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("agent did not see the client's EOF")
		}
	})
}

// TestStreamBeforeAgent opens a stream while the guest still boots: the
// data waits in the socket until the agent's session starts.
func TestStreamBeforeAgent(t *testing.T) {
	h := newHarness(t)
	c := h.dial()
	defer c.Close()
	c.Write([]byte("early"))
	c.CloseWrite()
	time.Sleep(100 * time.Millisecond)
	h.startAgent(echo)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "early" {
		t.Errorf("read %q, %v; want \"early\"", got, err)
	}
}

// TestClientGoneAgentWrites checks that an agent writing to a client that
// went away does not block on a full window.
func TestClientGoneAgentWrites(t *testing.T) {
	h := newHarness(t)
	wrote := make(chan error, 1)
	h.startAgent(func(st net.Conn) {
		defer st.Close()
		_, err := io.Copy(st, io.LimitReader(rand.NewChaCha8([32]byte{}), 4*DefaultWindowSize))
		wrote <- err
	})
	c := h.dial()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-wrote:
		if err != nil {
			t.Errorf("agent write: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent blocked writing to a client that went away")
	}
}

// TestAgentDeath closes the agent channel as QEMU's exit does: Serve
// returns nil, the listener is gone, and clients are disconnected.
func TestAgentDeath(t *testing.T) {
	h := newHarness(t)
	h.startAgent(echo)
	c := h.dial()
	defer c.Close()
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	idle := h.dial() // a client that has not sent anything
	defer idle.Close()

	h.agent.Close()
	h.agentEnd.Close()
	select {
	case err := <-h.served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
		h.served <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the agent channel closed")
	}
	if _, err := net.Dial("unix", h.sockPath); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
	for _, conn := range []*net.UnixConn{c, idle} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Error("a client is still connected after Serve returned")
		}
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.startAgent(echo)
	c := h.dial()
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))

	h.cancel()
	select {
	case err := <-h.served:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
		h.served <- err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("the client is still connected after Serve returned")
	}
}

func TestYamuxLogger(t *testing.T) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.DebugLevel)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	y := yamuxLogger{log: logrus.NewEntry(l)}
	y.Printf("[ERR] yamux: Failed to read header: %v", io.ErrUnexpectedEOF)
	y.Println("[WARN] yamux: frame for missing stream")
	y.Print("plain")
	want := []string{
		`level=error msg="yamux: Failed to read header: unexpected EOF"`,
		`level=warning msg="yamux: frame for missing stream"`,
		`level=debug msg=plain`,
	}
	if got := strings.Split(strings.TrimSpace(buf.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
