package kubetest

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// process is one of the cluster's daemons (etcd, kube-apiserver, the
// kubelet): started in a session of its own, its output appended to its
// log, stopped by its PID.
type process struct {
	name   string
	path   string
	args   []string
	log    string
	pid    int
	exited chan struct{}
}

// start starts the process; it runs until stop.
func (p *process) start() error {
	logFile, err := os.OpenFile(p.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.pid = cmd.Process.Pid
	exited := make(chan struct{})
	p.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	return nil
}

// running says whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop stops the process by its PID: TERM, then KILL after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited == nil {
		return
	}
	_ = unix.Kill(p.pid, unix.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = unix.Kill(p.pid, unix.SIGKILL)
		<-p.exited
	}
}

// logTail returns the end of the process's log.
func (p *process) logTail() string {
	data, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// poll calls ready every 200 ms until it returns nil, the process exits,
// or timeout passes.
func (p *process) poll(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited: %s", p.name, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v: %w; its log:\n%s", p.name, timeout, err, p.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
