package portforward

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/network/networktest"
)

// servedPort is the one port the fake agent below serves; it refuses
// every other.
const servedPort = 8080

// fakeAgent serves port forward streams on a unix socket as the agent
// does behind cocoon-proxy: on servedPort it answers "echo:" and what it
// read up to the host's half close; it refuses other ports.
func fakeAgent(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h, err := api.ReadStreamHeader(c)
				if err != nil || h.Kind != api.StreamPortForward {
					return
				}
				if h.Port != servedPort {
					c.Write([]byte{byte(api.PortForwardRefused)})
					return
				}
				c.Write([]byte{byte(api.PortForwardConnected)})
				in, _ := io.ReadAll(c)
				c.Write(append([]byte("echo:"), in...))
			}()
		}
	}()
	return path
}

// podNS makes a network namespace with its loopback up, as a pod's, with
// the loopback redirect, and returns its path and listeners.
func podNS(t *testing.T) (string, []*net.TCPListener) {
	t.Helper()
	path := networktest.LoopbackNamespace(t)
	v4, v6, err := network.ListenLoopback(path)
	if err != nil {
		t.Fatal(err)
	}
	if v6 == nil {
		t.Fatal("no ::1 listener")
	}
	port := func(l *net.TCPListener) uint16 { return uint16(l.Addr().(*net.TCPAddr).Port) }
	if err := network.RedirectLoopback(path, port(v4), port(v6)); err != nil {
		t.Fatal(err)
	}
	return path, []*net.TCPListener{v4, v6}
}

// dialIn connects to addr from inside the namespace at ns, as containerd
// does.
func dialIn(t *testing.T, ns, netw, addr string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := network.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout(netw, addr, 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func TestServe(t *testing.T) {
	ns, ls := podNS(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := &Server{Dialer: agentclient.ProxyDialer{Path: fakeAgent(t)}, Log: logrus.NewEntry(log)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ls...) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	}()

	for _, addr := range []struct{ netw, addr string }{{"tcp4", "127.0.0.1:8080"}, {"tcp6", "[::1]:8080"}} {
		t.Run(addr.netw, func(t *testing.T) {
			c := dialIn(t, ns, addr.netw, addr.addr)
			defer c.Close()
			if _, err := c.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "echo:hi" {
				t.Errorf("got %q, want echo:hi", got)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		// The reset can come before the dial has returned.
		err := network.Do(ns, func() error {
			c, err := net.DialTimeout("tcp4", "127.0.0.1:8081", 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			return err
		})
		if !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("got %v, want a connection reset", err)
		}
	})

	t.Run("open at shutdown", func(t *testing.T) {
		c := dialIn(t, ns, "tcp4", "127.0.0.1:8080")
		defer c.Close()
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		done <- nil // for the deferred check
		// Serve closed the connection: the client reads its end.
		if _, err := io.ReadAll(c); err != nil && !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("after Serve returned: %v", err)
		}
	})
}
