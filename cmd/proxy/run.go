package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/cocoon-containers/cocoon/proxy"
	"github.com/sirupsen/logrus"
)

// config is what the command line gives run.
type config struct {
	agentSocket    string
	listen         string
	connectTimeout time.Duration
	pidFile        string
}

// maxSocketPath is the longest path a unix socket address holds.
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// run connects to the agent socket, serves cfg.listen until the VM goes away
// or ctx is cancelled (both return nil), and removes what it created.
func run(ctx context.Context, cfg config, log *logrus.Entry) error {
	if cfg.agentSocket == "" || cfg.listen == "" {
		return errors.New("--agent-socket and --listen are required")
	}
	for _, p := range []string{cfg.agentSocket, cfg.listen} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("socket path %q is longer than %d bytes", p, maxSocketPath)
		}
	}
	if cfg.connectTimeout <= 0 {
		return fmt.Errorf("invalid --connect-timeout %v: must be positive", cfg.connectTimeout)
	}
	log = log.WithField("listen", cfg.listen)

	agent, err := connectAgent(ctx, cfg.agentSocket, cfg.connectTimeout)
	if err != nil {
		if ctx.Err() != nil {
			return nil // told to stop before the VM was up
		}
		return err
	}
	l, err := listen(cfg.listen)
	if err != nil {
		agent.Close()
		return err
	}
	defer os.Remove(cfg.listen)
	if cfg.pidFile != "" {
		if err := writePIDFile(cfg.pidFile); err != nil {
			agent.Close()
			l.Close()
			return err
		}
		defer os.Remove(cfg.pidFile)
	}
	log.WithField("agent_socket", cfg.agentSocket).Info("serving")

	err = proxy.Serve(ctx, agent, l, proxy.Options{Log: log})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serving %s: %w", cfg.listen, err)
	}
	log.Info("exiting")
	return nil
}

// connectAgent connects to the VMM's agent socket, retrying until timeout:
// the VMM creates the socket shortly after it starts.
func connectAgent(ctx context.Context, path string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	delay := 5 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to agent socket %s: gave up after %v: %w", path, timeout, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// listen creates the unix socket at path, readable and writable only by
// its owner. A stale socket left by a proxy that died is replaced; a live
// one, or anything that is not a socket, is an error.
func listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listening on %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("listening on %s: already in use", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// The socket is created with the umask's permissions: make them 0600
	// from the start rather than chmod it after clients could connect.
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("listening: %w", err)
	}
	return l, nil
}

// writePIDFile writes the process's PID to path atomically: it appears once
// the proxy serves, so its existence means the proxy is ready.
func writePIDFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	_, err = tmp.WriteString(strconv.Itoa(os.Getpid()))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}
