package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/network/networktest"
)

// fakeProxy serves path as cocoon-proxy does, with an agent behind it that
// echoes forwarded connections and holds RPC streams open; closing the
// returned channel is the VM going away: the RPC streams end.
func fakeProxy(t *testing.T, path string) chan struct{} {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
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
				if err != nil {
					return
				}
				if h.Kind == api.StreamRPC {
					<-gone
					return
				}
				c.Write([]byte{byte(api.PortForwardConnected)})
				in, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%d:%s", h.Port, in)
			}()
		}
	}()
	return gone
}

func TestForwardUntilTheVMGoes(t *testing.T) {
	ns := networktest.LoopbackNamespace(t)
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "proxy.sock")
	gone := fakeProxy(t, sock)
	pidFile := filepath.Join(dir, "forward.pid")
	done := make(chan error, 1)
	go func() {
		done <- runForward(context.Background(), forwardConfig{netns: ns, proxySocket: sock, connectTimeout: 5 * time.Second, pidFile: pidFile}, testLog())
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the forwarder did not write its pid file")
		}
		time.Sleep(10 * time.Millisecond)
	}

	var reply []byte
	err := network.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", "localhost:3000", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET")); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		reply, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "3000:GET" {
		t.Errorf("reply %q, want 3000:GET", reply)
	}

	close(gone)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runForward: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarder did not exit when the VM went")
	}
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(ns), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("rules left in the namespace:\n%s", out)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
}
