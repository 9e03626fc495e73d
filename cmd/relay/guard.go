package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/relay"
)

// A relay's PID is its process's PID to the caller, and a SIGKILL to that
// PID must kill the process, as it does with runc: conmon SIGKILLs an
// exec-sync's PID when it times out (a Kubernetes exec probe) and a
// container's when `conmon -T` (podman run --timeout) expires,
// containerd's runc shim SIGKILLs an exec's PID to kill it, the host's OOM
// killer picks one. A relay cannot catch SIGKILL to forward it. So every
// relay starts a guard: a second cocoon-relay, in its own session with no
// stdio, that holds the read end of a pipe whose write end only the relay
// holds. The relay writes one byte to it before it exits by itself; a guard
// that reads end of file without that byte knows that its relay died
// unannounced, and SIGKILLs the process in the guest.

// guardFD is the guard's end of the pipe, as the guard sees it.
const guardFD = 3

// guardAlive is the byte the relay writes when it exits by itself.
var guardAlive = []byte{'.'}

// guard is a started guard, seen from its relay.
type guard struct {
	cmd *exec.Cmd
	w   *os.File
	// exited is closed once the guard has exited (and is reaped).
	exited chan struct{}
}

// guardian keeps a relay's guard: a guard that dies while its relay runs
// (killed first, by mistake or on purpose) is replaced at once, so that a
// later SIGKILL of the relay still kills the process in the guest.
type guardian struct {
	c   *cli.Context
	log *logrus.Entry

	mu       sync.Mutex
	g        *guard
	released bool
}

// startGuardian starts the relay's guard and watches it.
func startGuardian(c *cli.Context, log *logrus.Entry) (*guardian, error) {
	g, err := startGuard(c)
	if err != nil {
		return nil, err
	}
	gd := &guardian{c: c, log: log, g: g}
	go gd.watch(g)
	return gd, nil
}

// watch replaces g once it exits, unless the relay is exiting.
func (gd *guardian) watch(g *guard) {
	<-g.exited
	gd.mu.Lock()
	defer gd.mu.Unlock()
	if gd.released {
		return
	}
	g.w.Close()
	gd.log.Warn("the guard died: starting another")
	ng, err := startGuard(gd.c)
	if err != nil {
		gd.log.WithError(err).Error("replacing the guard: a SIGKILL of this relay would leave its process running")
		return
	}
	gd.g = ng
	go gd.watch(ng)
}

// release tells the current guard that the relay exits by itself.
func (gd *guardian) release() {
	gd.mu.Lock()
	gd.released = true
	g := gd.g
	gd.mu.Unlock()
	g.release(gd.log)
}

// startGuard starts the guard of the process that c's flags name.
func startGuard(c *cli.Context) (*guard, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("starting the guard: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the guard: %w", err)
	}
	defer r.Close()
	args := []string{"cocoon-relay", "--guard-fd", strconv.Itoa(guardFD),
		"--container", c.String("container"),
		"--timeout-scale", strconv.FormatUint(uint64(c.Uint("timeout-scale")), 10)}
	for _, f := range []string{"exec", "proxy-socket", "vsock", "log", "log-format"} {
		if v := c.String(f); v != "" {
			args = append(args, "--"+f, v)
		}
	}
	if c.Bool("debug") {
		args = append(args, "--debug")
	}
	cmd := &exec.Cmd{
		Path:        self,
		Args:        args,
		Env:         []string{},
		ExtraFiles:  []*os.File{r}, // fd 3
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the guard: %w", err)
	}
	g := &guard{cmd: cmd, w: w, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(g.exited) }()
	return g, nil
}

// release tells the guard that the relay exits by itself and reaps it.
func (g *guard) release(log *logrus.Entry) {
	_, _ = g.w.Write(guardAlive)
	g.w.Close()
	select {
	case <-g.exited:
	case <-time.After(2 * time.Second):
		log.Warn("the guard did not exit")
		_ = g.cmd.Process.Kill()
	}
}

// runGuard is cocoon-relay --guard-fd: it waits for its relay to exit and,
// if the relay died without writing guardAlive, kills the process.
func runGuard(c *cli.Context) error {
	fd := c.Int("guard-fd")
	if _, err := relay.CloseInheritedFDs(fd); err != nil {
		return err
	}
	log, err := openLog(c.String("log"), c.String("log-format"), c.Bool("debug"))
	if err != nil {
		return err
	}
	log = log.WithFields(logrus.Fields{"container": c.String("container"), "exec": c.String("exec"), "guard": true})
	pipe := os.NewFile(uintptr(fd), "guard")
	buf := make([]byte, 1)
	n, err := pipe.Read(buf)
	pipe.Close()
	if n == 1 {
		return nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		log.WithError(err).Warn("reading the guard pipe")
	}
	log.Info("the relay died without the process's exit: killing the process")
	d, err := relay.NewDialer(c.String("proxy-socket"), c.String("vsock"))
	if err != nil {
		return err
	}
	scale := time.Duration(max(c.Uint("timeout-scale"), 1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second*scale)
	defer cancel()
	agent, err := relay.Connect(ctx, d, agentclient.Options{Scale: scale, Log: log})
	if err != nil {
		return err
	}
	defer agent.Close()
	return relay.KillProcess(ctx, agent, c.String("container"), c.String("exec"))
}
