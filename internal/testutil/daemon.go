package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// Daemon is a test's daemon (containerd, etcd, kube-apiserver, a
// kubelet): started in a session of its own, its output appended to its
// log, stopped by its PID. It can be started again after Stop, as a
// service manager restarts one.
type Daemon struct {
	// Name names it in errors.
	Name string
	// Path, Args and Env (nil: the test's environment) are its command.
	Path string
	Args []string
	Env  []string
	// Log is the file its output is appended to.
	Log string

	pid    int
	exited chan struct{}
}

// Start starts the daemon; it runs until Stop.
func (d *Daemon) Start() error {
	logFile, err := os.OpenFile(d.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(d.Path, d.Args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = d.Env
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.Name, err)
	}
	d.pid = cmd.Process.Pid
	exited := make(chan struct{})
	d.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	return nil
}

// Running says whether the daemon was started and has not exited.
func (d *Daemon) Running() bool {
	if d.exited == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the daemon exits.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Stop stops the daemon by its PID: TERM, then KILL after grace. It
// returns once the daemon has exited.
func (d *Daemon) Stop(grace time.Duration) {
	if d.exited == nil {
		return
	}
	_ = unix.Kill(d.pid, unix.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(grace):
		_ = unix.Kill(d.pid, unix.SIGKILL)
		<-d.exited
	}
}

// LogTail returns the last max bytes of the daemon's log.
func (d *Daemon) LogTail(max int) string {
	data, err := os.ReadFile(d.Log)
	if err != nil {
		return err.Error()
	}
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

// Poll calls ready every 200 ms until it returns nil, the daemon exits, or
// timeout passes.
func (d *Daemon) Poll(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if !d.Running() {
			return fmt.Errorf("%s exited: %s", d.Name, d.LogTail(8000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %w; its log:\n%s", d.Name, timeout, err, d.LogTail(8000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
