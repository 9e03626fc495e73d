package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"
)

func testLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	return logrus.NewEntry(l)
}

// shortTempDir returns a directory whose paths fit in a unix socket address.
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ccn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeQEMU serves path as QEMU serves agent.sock, with an echoing yamux
// server behind it as the guest's agent. Closing the returned channel's
// value (the accepted connection) is the VM going away.
func fakeQEMU(t *testing.T, path string) <-chan net.Conn {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 1)
	go func() {
		defer l.Close()
		c, err := l.Accept()
		if err != nil {
			return
		}
		conns <- c
		cfg := yamux.DefaultConfig()
		cfg.EnableKeepAlive = false
		cfg.LogOutput = io.Discard
		sess, err := yamux.Server(c, cfg)
		if err != nil {
			return
		}
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				return
			}
			go func() {
				io.Copy(st, st)
				st.Close()
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return conns
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestRun(t *testing.T) {
	dir := shortTempDir(t)
	cfg := config{
		agentSocket:    filepath.Join(dir, "agent.sock"),
		listen:         filepath.Join(dir, "proxy.sock"),
		connectTimeout: 10 * time.Second,
		pidFile:        filepath.Join(dir, "proxy.pid"),
	}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), cfg, testLog()) }()
	// QEMU creates its socket after the proxy started: the proxy retries.
	time.Sleep(50 * time.Millisecond)
	vm := fakeQEMU(t, cfg.agentSocket)

	waitFor(t, "the pid file", func() bool { return exists(cfg.pidFile) })
	fi, err := os.Lstat(cfg.listen)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want a socket with 0600", cfg.listen, fi.Mode())
	}
	if b, _ := os.ReadFile(cfg.pidFile); string(b) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file holds %q, want %d", b, os.Getpid())
	}

	c, err := net.Dial("unix", cfg.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello"))
	c.(*net.UnixConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "hello" {
		t.Errorf("echo through the proxy: %q, %v", got, err)
	}

	(<-vm).Close() // the VM goes away
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after the VM went away, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the VM went away")
	}
	for _, p := range []string{cfg.listen, cfg.pidFile} {
		if exists(p) {
			t.Errorf("%s still exists after exit", p)
		}
	}
}

func TestRunCancel(t *testing.T) {
	dir := shortTempDir(t)
	cfg := config{agentSocket: filepath.Join(dir, "agent.sock"), listen: filepath.Join(dir, "proxy.sock"), connectTimeout: 10 * time.Second}
	fakeQEMU(t, cfg.agentSocket)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, testLog()) }()
	waitFor(t, "the socket", func() bool { return exists(cfg.listen) })
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if exists(cfg.listen) {
		t.Errorf("%s still exists after exit", cfg.listen)
	}
}

func TestRunErrors(t *testing.T) {
	dir := shortTempDir(t)
	// An agent socket that takes every connection: each case below fails
	// after connecting.
	agentSocket := filepath.Join(dir, "agent.sock")
	al, err := net.Listen("unix", agentSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	go func() {
		for {
			c, err := al.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	notSocket := filepath.Join(dir, "file")
	os.WriteFile(notSocket, nil, 0o600)
	busy := filepath.Join(dir, "busy.sock")
	l, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	tests := map[string]struct {
		cfg  config
		want string
	}{
		"no agent socket": {
			cfg:  config{agentSocket: filepath.Join(dir, "none.sock"), listen: filepath.Join(dir, "p1.sock"), connectTimeout: 100 * time.Millisecond},
			want: "connecting to agent socket",
		},
		"listen path not a socket": {
			cfg:  config{agentSocket: agentSocket, listen: notSocket, connectTimeout: time.Second},
			want: "exists and is not a socket",
		},
		"listen path in use": {
			cfg:  config{agentSocket: agentSocket, listen: busy, connectTimeout: time.Second},
			want: "already in use",
		},
		"path too long": {
			cfg:  config{agentSocket: agentSocket, listen: "/" + strings.Repeat("x", 200), connectTimeout: time.Second},
			want: "longer than",
		},
		"missing listen": {
			cfg:  config{agentSocket: agentSocket, connectTimeout: time.Second},
			want: "required",
		},
		"bad timeout": {
			cfg:  config{agentSocket: agentSocket, listen: filepath.Join(dir, "p2.sock")},
			want: "connect-timeout",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), tc.cfg, testLog())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRunStaleSocket replaces a socket left behind by a proxy that died.
func TestRunStaleSocket(t *testing.T) {
	dir := shortTempDir(t)
	cfg := config{agentSocket: filepath.Join(dir, "agent.sock"), listen: filepath.Join(dir, "proxy.sock"), connectTimeout: 10 * time.Second}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.listen, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	vm := fakeQEMU(t, cfg.agentSocket)
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), cfg, testLog()) }()
	var c net.Conn
	waitFor(t, "the proxy to serve", func() bool {
		c, err = net.Dial("unix", cfg.listen)
		return err == nil
	})
	c.Close()
	(<-vm).Close()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestFlags(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"unknown flag":     {[]string{"--bogus"}, "not defined"},
		"bad log format":   {[]string{"--agent-socket", "/a", "--listen", "/b", "--log-format", "xml"}, "--log-format"},
		"extra argument":   {[]string{"--agent-socket", "/a", "--listen", "/b", "extra"}, "unexpected arguments"},
		"no flags":         {nil, "required"},
		"unwritable log":   {[]string{"--agent-socket", "/a", "--listen", "/b", "--log", "/nonexistent/dir/log"}, "opening log"},
		"bad timeout form": {[]string{"--connect-timeout", "soon"}, "invalid value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			app := newApp()
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.Run(append([]string{"cocoon-proxy"}, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
