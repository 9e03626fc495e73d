package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/agentclient/clienttest"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/proxy"
)

// TestWithAgentClient runs the host's whole agent path: the agent client
// dials the proxy while the guest still boots, the agent starts late, then
// RPC and a half-closed stdio stream work, and the VM's death ends it all.
func TestWithAgentClient(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	proxyEnd := fileConn(t, fds[0])
	agentEnd := fileConn(t, fds[1])
	dir, err := os.MkdirTemp("", "ccn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "proxy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- proxy.Serve(context.Background(), proxyEnd, l, proxy.Options{}) }()

	// The guest boots: its agent starts after several attempts timed out.
	agentCtx, stopAgent := context.WithCancel(context.Background())
	defer stopAgent()
	agentDone := make(chan struct{})
	time.AfterFunc(300*time.Millisecond, func() {
		defer close(agentDone)
		clienttest.ServeConn(agentCtx, agentEnd, &clienttest.Agent{
			StdioFunc: func(h api.StreamHeader, c net.Conn) {
				defer c.Close()
				in, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s got %q", h.Stdio, in)
			},
		})
	})

	c, err := agentclient.WaitReady(context.Background(), agentclient.ProxyDialer{Path: sock}, agentclient.Options{
		BootTimeout:    10 * time.Second,
		AttemptTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	defer c.Close()
	if v, err := c.Version(context.Background(), &api.VersionRequest{}); err != nil || v.GetApiVersion() != api.APIVersion {
		t.Fatalf("Version: %v, %v", v, err)
	}

	s, err := c.OpenStream(context.Background(), api.StreamHeader{Kind: api.StreamStdio, ContainerID: "c", Stdio: api.Stdin})
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("to stdin"))
	s.CloseWrite()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(s); err != nil || string(got) != `stdin got "to stdin"` {
		t.Errorf("stdio stream: %q, %v", got, err)
	}
	s.Close()

	// The VM goes away.
	stopAgent()
	<-agentDone
	agentEnd.Close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the VM went away")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not notice the VM went away")
	}
}

func fileConn(t *testing.T, fd int) net.Conn {
	f := os.NewFile(uintptr(fd), "socketpair")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
