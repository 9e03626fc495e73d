package agent

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/api"
)

// forwardAgent is an agent that serves port forward streams, and a host
// session to it.
func forwardAgent(t *testing.T) func(port uint16) net.Conn {
	t.Helper()
	host, guest := net.Pipe()
	svc := NewService(ServiceConfig{Log: testLog(t)})
	startAgent(t, guest, ServerConfig{Service: svc, PortForward: svc.PortForward})
	sess := hostSession(t, host)
	return func(port uint16) net.Conn {
		st := openStream(t, sess, api.StreamHeader{Kind: api.StreamPortForward, Port: port})
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		return st
	}
}

func listenerPort(t *testing.T, l net.Listener) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func readStatus(t *testing.T, c net.Conn) api.PortForwardStatus {
	t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("reading the status: %v", err)
	}
	return api.PortForwardStatus(b[0])
}

func TestPortForwardConnects(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err.Error()
			return
		}
		defer c.Close()
		// Reads the request to its end (the host's half close), then
		// answers: the half close must travel through the agent.
		req, err := io.ReadAll(c)
		if err != nil {
			served <- err.Error()
			return
		}
		served <- string(req)
		_, _ = c.Write([]byte("pong"))
	}()
	open := forwardAgent(t)
	st := open(listenerPort(t, l))
	if s := readStatus(t, st); s != api.PortForwardConnected {
		t.Fatalf("status = %d, want connected", s)
	}
	if _, err := st.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	st.Close() // yamux: FIN, still readable
	reply, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-served; got != "ping" {
		t.Errorf("the service got %q, want ping", got)
	}
	if string(reply) != "pong" {
		t.Errorf("reply = %q, want pong", reply)
	}
}

func TestPortForwardRefused(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listenerPort(t, l)
	l.Close() // nothing listens there now
	st := forwardAgent(t)(port)
	if s := readStatus(t, st); s != api.PortForwardRefused {
		t.Fatalf("status = %d, want refused", s)
	}
	if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after a refusal: Read = %d, %v; want 0, EOF", n, err)
	}
}

func TestPortForwardWithoutHandler(t *testing.T) {
	host, guest := net.Pipe()
	startAgent(t, guest, ServerConfig{})
	sess := hostSession(t, host)
	st := openStream(t, sess, api.StreamHeader{Kind: api.StreamPortForward, Port: 80})
	_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := st.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read on a refused stream = %d, %v; want 0, EOF", n, err)
	}
}
