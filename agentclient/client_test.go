package agentclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
)

func TestRoundTrip(t *testing.T) {
	destroyed := make(chan struct{}, 1)
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		DestroySandboxFunc: func(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
			destroyed <- struct{}{}
			return &api.DestroySandboxResponse{}, nil
		},
	})
	ctx := context.Background()
	c, err := agentclient.Connect(ctx, d, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	check, err := c.Check(ctx, &api.CheckRequest{})
	if err != nil || !check.GetServing() {
		t.Fatalf("Check: %v, %v", check, err)
	}
	v, err := c.Version(ctx, &api.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.GetAgentVersion() != "clienttest" || v.GetApiVersion() != api.APIVersion {
		t.Errorf("Version = %v", v)
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	select {
	case <-destroyed:
	default:
		t.Error("DestroySandbox did not reach the agent")
	}
}

func TestAgentError(t *testing.T) {
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		VersionFunc: func(context.Context, *api.VersionRequest) (*api.VersionResponse, error) {
			return nil, errors.New("no uname today")
		},
	})
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Version(context.Background(), &api.VersionRequest{})
	if err == nil || !strings.HasPrefix(err.Error(), "agent version: ") || !strings.Contains(err.Error(), "no uname today") {
		t.Errorf("Version: %v, want the agent's error with context", err)
	}
}

// blockingCheck is a Check that answers only when its context ends or
// release is closed.
func blockingCheck(release <-chan struct{}) func(context.Context, *api.CheckRequest) (*api.CheckResponse, error) {
	return func(ctx context.Context, _ *api.CheckRequest) (*api.CheckResponse, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-release:
			return &api.CheckResponse{Serving: true}, nil
		}
	}
}

func TestCallTimeout(t *testing.T) {
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{CheckFunc: blockingCheck(nil)})
	// 20 ms scaled by 5: the call must fail after about 100 ms.
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{CallTimeout: 20 * time.Millisecond, Scale: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Check(context.Background(), &api.CheckRequest{})
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Check: %v, want a deadline error", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("Check gave up after %v, want about 100ms", elapsed)
	}
}

// TestCallerDeadline checks that a caller's own deadline replaces the
// default call timeout, so that a long operation can be given more time.
func TestCallerDeadline(t *testing.T) {
	release := make(chan struct{})
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{CheckFunc: blockingCheck(release)})
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{CallTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &api.CheckRequest{}); err != nil {
		t.Errorf("Check with the caller's longer deadline: %v", err)
	}
}

func TestDone(t *testing.T) {
	d, stop := clienttest.NewDialer(t, &clienttest.Agent{})
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Check(context.Background(), &api.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	stop() // the VM goes away
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the agent went away")
	}
	if _, err := c.Check(context.Background(), &api.CheckRequest{}); err == nil {
		t.Error("Check succeeded after the agent went away")
	}
}

// TestStdioStream opens a stdio stream: the header reaches the agent, and
// CloseWrite delivers EOF while the agent can still answer.
func TestStdioStream(t *testing.T) {
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		StdioFunc: func(h api.StreamHeader, c net.Conn) {
			defer c.Close()
			in, err := io.ReadAll(c)
			if err != nil {
				fmt.Fprintf(c, "error: %v", err)
				return
			}
			fmt.Fprintf(c, "%s/%s/%s:%s", h.ContainerID, h.ExecID, h.Stdio, in)
		},
	})
	c, err := agentclient.Connect(context.Background(), d, agentclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.OpenStream(context.Background(), api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c1", ExecID: "e1", Stdio: api.Stdin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Write([]byte("data"))
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "c1/e1/stdin:data" {
		t.Errorf("read %q, %v", got, err)
	}
}

func TestWaitReadyAfterFailures(t *testing.T) {
	ms := time.Millisecond
	for _, failures := range []int{0, 1, 5, 8} {
		t.Run(fmt.Sprint(failures), func(t *testing.T) {
			d, _ := clienttest.NewDialer(t, &clienttest.Agent{})
			var dials int
			flaky := agentclient.DialerFunc(func(ctx context.Context) (agentclient.Conn, error) {
				dials++
				if dials <= failures {
					return nil, errors.New("connection refused")
				}
				return d.Dial(ctx)
			})
			var slept []time.Duration
			opts := agentclient.Options{Sleep: func(ctx context.Context, d time.Duration) error {
				slept = append(slept, d)
				return nil
			}}
			c, err := agentclient.WaitReady(context.Background(), flaky, opts)
			if err != nil {
				t.Fatalf("WaitReady: %v", err)
			}
			c.Close()
			want := []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 500 * ms, 500 * ms, 500 * ms}[:failures]
			if fmt.Sprint(slept) != fmt.Sprint(want) {
				t.Errorf("slept %v, want %v", slept, want)
			}
		})
	}
}

func TestWaitReadyNotServing(t *testing.T) {
	var checks atomic.Int32
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		CheckFunc: func(context.Context, *api.CheckRequest) (*api.CheckResponse, error) {
			return &api.CheckResponse{Serving: checks.Add(1) > 3}, nil
		},
	})
	opts := agentclient.Options{Sleep: func(context.Context, time.Duration) error { return nil }}
	c, err := agentclient.WaitReady(context.Background(), d, opts)
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	c.Close()
	if n := checks.Load(); n != 4 {
		t.Errorf("agent checked %d times, want 4", n)
	}
}

func TestWaitReadyTimeout(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "console.log")
	var log strings.Builder
	for i := range 50 {
		fmt.Fprintf(&log, "[    %d.000000] kernel line %d\n", i, i)
	}
	log.WriteString("Kernel panic - not syncing: no init found\n")
	if err := os.WriteFile(console, []byte(log.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	refused := agentclient.DialerFunc(func(context.Context) (agentclient.Conn, error) {
		return nil, errors.New("connection refused")
	})
	start := time.Now()
	_, err := agentclient.WaitReady(context.Background(), refused, agentclient.Options{
		BootTimeout: 150 * time.Millisecond,
		Scale:       2,
		ConsoleLog:  console,
	})
	elapsed := time.Since(start)
	if !errors.Is(err, agentclient.ErrNotReady) {
		t.Fatalf("WaitReady: %v, want ErrNotReady", err)
	}
	if elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("gave up after %v, want about 300ms", elapsed)
	}
	msg := err.Error()
	head, tail, ok := strings.Cut(msg, "; console tail:\n")
	if !ok {
		t.Fatalf("no console tail in %q", msg)
	}
	if head != "agent did not answer within 300ms: connection refused" {
		t.Errorf("error starts %q", head)
	}
	lines := strings.Split(tail, "\n")
	if len(lines) != 20 || lines[19] != "Kernel panic - not syncing: no init found" || lines[0] != "[    31.000000] kernel line 31" {
		t.Errorf("console tail is %d lines:\n%s", len(lines), tail)
	}
}

// TestWaitReadyHungAgent: an agent that accepts but never answers costs
// one attempt timeout per attempt, not the whole boot timeout.
func TestWaitReadyHungAgent(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var checks atomic.Int32
	d, _ := clienttest.NewDialer(t, &clienttest.Agent{
		CheckFunc: func(ctx context.Context, req *api.CheckRequest) (*api.CheckResponse, error) {
			checks.Add(1)
			return blockingCheck(release)(ctx, req)
		},
	})
	_, err := agentclient.WaitReady(context.Background(), d, agentclient.Options{
		BootTimeout:    500 * time.Millisecond,
		AttemptTimeout: 50 * time.Millisecond,
		ConsoleLog:     filepath.Join(t.TempDir(), "missing.log"),
	})
	if !errors.Is(err, agentclient.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady: %v, want ErrNotReady wrapping a deadline error", err)
	}
	if !strings.Contains(err.Error(), "console log unavailable") {
		t.Errorf("error does not say the console log is missing: %v", err)
	}
	if n := checks.Load(); n < 3 {
		t.Errorf("%d attempts reached the agent, want several", n)
	}
}

func TestWaitReadyCancel(t *testing.T) {
	refused := agentclient.DialerFunc(func(context.Context) (agentclient.Conn, error) {
		return nil, errors.New("connection refused")
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := agentclient.WaitReady(ctx, refused, agentclient.Options{BootTimeout: time.Minute})
	if !errors.Is(err, context.Canceled) || errors.Is(err, agentclient.ErrNotReady) {
		t.Errorf("WaitReady: %v, want context.Canceled", err)
	}
}

// TestProxyDialer dials a unix socket as cocoon-proxy's: the header comes
// first, and the conn can half-close.
func TestProxyDialer(t *testing.T) {
	dir, err := os.MkdirTemp("", "ccn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		h    api.StreamHeader
		rest string
		err  error
	}
	got := make(chan result, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		h, err := api.ReadStreamHeader(c)
		rest, _ := io.ReadAll(c) // ends with the client's CloseWrite
		got <- result{h, string(rest), err}
	}()
	want := api.StreamHeader{Kind: api.StreamStdio, ContainerID: "ctr", Stdio: api.Stdin}
	c, err := agentclient.OpenStream(context.Background(), agentclient.ProxyDialer{Path: path}, want)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("input"))
	c.CloseWrite()
	r := <-got
	if r.err != nil || r.h != want || r.rest != "input" {
		t.Errorf("proxy side read %+v", r)
	}
	wg.Wait()

	_, err = agentclient.ProxyDialer{Path: filepath.Join(dir, "none.sock")}.Dial(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "dialing agent proxy: ") {
		t.Errorf("dialing a missing socket: %v", err)
	}
}

func TestVsockDialerError(t *testing.T) {
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		t.Skip("this host has /dev/vhost-vsock: dialing an unused CID could behave differently")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := agentclient.VsockDialer{CID: 3}.Dial(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "dialing agent over vsock: ") {
		t.Errorf("Dial: %v, want an error with context", err)
	}
}

// pipeConn is one end of net.Pipe as a agentclient.Conn.
type pipeConn struct{ net.Conn }

func (pipeConn) CloseWrite() error { return nil }

// TestOpenStreamCancel: a transport that never takes the header does not
// block OpenStream past its context.
func TestOpenStreamCancel(t *testing.T) {
	a, b := net.Pipe() // nobody reads b: writes to a block
	defer b.Close()
	stuck := agentclient.DialerFunc(func(context.Context) (agentclient.Conn, error) { return pipeConn{a}, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := agentclient.OpenStream(ctx, stuck, api.StreamHeader{Kind: api.StreamRPC})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("OpenStream: %v, want a deadline error", err)
	}
}
