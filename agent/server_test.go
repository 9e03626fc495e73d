package agent

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"

	"github.com/cocoon-containers/cocoon/api"
)

// startAgent serves the agent API on dev, as cmd/agent does on the real port.
func startAgent(t *testing.T, dev portDevice, cfg ServerConfig) {
	t.Helper()
	log := testLog(t)
	port := newSerialPort(dev, log)
	port.pollMin, port.pollMax = time.Millisecond, 5*time.Millisecond
	l := newYamuxListener(port, yamuxConfig(log), log)
	if cfg.Service == nil {
		cfg.Service = NewService(ServiceConfig{Log: log})
	}
	cfg.Log = log
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
}

// hostSession is the host's yamux client over conn, as the proxy runs it.
func hostSession(t *testing.T, conn net.Conn) *yamux.Session {
	t.Helper()
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func openStream(t *testing.T, sess *yamux.Session, h api.StreamHeader) net.Conn {
	t.Helper()
	st, err := sess.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if err := api.WriteStreamHeader(st, h); err != nil {
		t.Fatal(err)
	}
	return st
}

func agentClient(t *testing.T, sess *yamux.Session) api.AgentService {
	t.Helper()
	return api.NewAgentClient(ttrpcClient(t, sess))
}

func ttrpcClient(t *testing.T, sess *yamux.Session) *ttrpc.Client {
	t.Helper()
	c := ttrpc.NewClient(openStream(t, sess, api.StreamHeader{Kind: api.StreamRPC}))
	t.Cleanup(func() { c.Close() })
	return c
}

func callCheckVersion(t *testing.T, client api.AgentService) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	check, err := client.Check(ctx, &api.CheckRequest{})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !check.Serving {
		t.Error("Check: not serving")
	}
	v, err := client.Version(ctx, &api.VersionRequest{})
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.AgentVersion != Version || v.ApiVersion != api.APIVersion || v.KernelRelease == "" || v.UptimeSeconds <= 0 {
		t.Errorf("Version = %+v", v)
	}
}

func TestServeRPCOverPipe(t *testing.T) {
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{})
	sess := hostSession(t, host)
	callCheckVersion(t, agentClient(t, sess))
	// A second client on its own stream of the same session.
	callCheckVersion(t, agentClient(t, sess))
}

func TestServeRefusesStdioWithoutHandler(t *testing.T) {
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{})
	sess := hostSession(t, host)
	st := openStream(t, sess, api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c1", Stdio: api.Stdout})
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read on a refused stream = %d, %v; want 0, EOF", n, err)
	}
	// The session survives: RPC still works.
	callCheckVersion(t, agentClient(t, sess))
}

func TestServeStdioHandler(t *testing.T) {
	got := make(chan api.StreamHeader, 1)
	echo := func(ctx context.Context, h api.StreamHeader, conn net.Conn) {
		defer conn.Close()
		got <- h
		_, _ = io.Copy(conn, conn)
	}
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{Stdio: echo})
	sess := hostSession(t, host)
	want := api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c1", ExecID: "e1", Stdio: api.Terminal}
	st := openStream(t, sess, want)
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(st, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	if h := <-got; h != want {
		t.Errorf("handler got header %+v, want %+v", h, want)
	}
}

func TestServeBadHeaders(t *testing.T) {
	tests := map[string][]byte{
		"bad magic":    []byte("HTTP/1.1 200 OK\r\n"),
		"unknown kind": {'C', 'C', 'N', '1', 9, 0, 0, 0, 0, 0},
		"silent":       nil, // closed after the header timeout
	}
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{HeaderTimeout: 100 * time.Millisecond})
	sess := hostSession(t, host)
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			st, err := sess.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if len(data) > 0 {
				if _, err := st.Write(data); err != nil {
					t.Fatal(err)
				}
			} else if _, err := st.Write(nil); err != nil { // opens the stream
				t.Fatal(err)
			}
			_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("Read = %d, %v; want the agent to close the stream", n, err)
			}
		})
	}
	callCheckVersion(t, agentClient(t, sess))
}

func TestServeReconnect(t *testing.T) {
	// The host is not connected when the agent starts, connects, leaves,
	// and comes back: each time a fresh yamux session must serve it.
	dev := newFakePortDev()
	startAgent(t, dev, ServerConfig{})
	time.Sleep(20 * time.Millisecond) // the agent polls a disconnected port

	for i := range 3 {
		sess := hostSession(t, dev.connect())
		callCheckVersion(t, agentClient(t, sess))
		sess.Close()
		dev.disconnect()
		time.Sleep(20 * time.Millisecond) // the agent sees 0-byte reads
		t.Logf("connection %d served", i+1)
	}
}

func TestServeQuickReconnect(t *testing.T) {
	// The host leaves and a new one connects before the agent reads again,
	// so it never sees a 0-byte read: it must spot the new yamux client by
	// its first frame.
	//
	// The old host leaves its streams open. Had it closed them just before
	// leaving, the agent's replies (FIN frames for the old stream IDs) could
	// reach the new host and close its streams of the same IDs: the port
	// carries no marker of where one connection's bytes end, in that
	// direction. See portSession.
	dev := newFakePortDev()
	startAgent(t, dev, ServerConfig{})
	host := dev.connect()
	for i := range 3 {
		sess := hostSession(t, host)
		callCheckVersion(t, agentClient(t, sess))
		callCheckVersion(t, agentClient(t, sess)) // a second stream
		// Replace the host before closing the session: closing it first
		// would disconnect, and the agent may see that.
		host = dev.reconnect()
		sess.Close()
		t.Logf("connection %d served", i+1)
	}
}

func TestServeQuickReconnectBeforeAnyStream(t *testing.T) {
	// A host that connects and leaves without opening a stream leaves no
	// state behind: the next one is served by the same session.
	dev := newFakePortDev()
	startAgent(t, dev, ServerConfig{})
	first := hostSession(t, dev.connect())
	next := dev.reconnect()
	first.Close()
	callCheckVersion(t, agentClient(t, hostSession(t, next)))
}

func TestServeStopsOnCancel(t *testing.T) {
	host, guest := net.Pipe()
	log := testLog(t)
	l := newYamuxListener(newSerialPort(guest, log), yamuxConfig(log), log)
	srv, err := NewServer(ServerConfig{Service: NewService(ServiceConfig{Log: log}), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	sess := hostSession(t, host)
	callCheckVersion(t, agentClient(t, sess))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := l.Accept(); err == nil {
		t.Error("the listener still accepts after Serve returned")
	}
}

func TestDestroySandbox(t *testing.T) {
	var calls, syncs atomic.Int32
	poweredOff := make(chan time.Time, 2)
	log := testLog(t)
	svc := NewService(ServiceConfig{
		Log:           log,
		PowerOffDelay: 50 * time.Millisecond,
		Sync:          func() { syncs.Add(1) },
		PowerOff: func() {
			calls.Add(1)
			poweredOff <- time.Now()
		},
	})
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{Service: svc})
	client := agentClient(t, hostSession(t, host))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	replied := time.Now()
	if _, err := client.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	if calls.Load() != 0 {
		t.Error("powered off before the reply")
	}
	// The host stops the VM as soon as it has the reply: the guest
	// must have synced by then.
	if n := syncs.Load(); n != 1 {
		t.Errorf("synced %d times before the reply, want 1", n)
	}
	if _, err := client.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("second DestroySandbox: %v", err)
	}
	select {
	case at := <-poweredOff:
		if at.Sub(replied) < 50*time.Millisecond {
			t.Errorf("powered off %v after the call, before the delay", at.Sub(replied))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never powered off")
	}
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Errorf("powered off %d times", n)
	}
}
