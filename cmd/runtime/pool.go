package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/sandbox"
)

// poolTaken is the kind of sandbox this command took from the pool
// (hypervisor.template_pool), if any.
var poolTaken atomic.Value // sandbox.PoolKind

// refillPool starts `factory fill` in the background, in a session of its
// own, once this command is done with its container: the pool gets a
// replacement for the sandbox taken, without slowing the command down.
func refillPool(c *cli.Context) {
	kind, _ := poolTaken.Load().(sandbox.PoolKind)
	if kind == "" {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		logrus.WithError(err).Warn("refilling the sandbox pool")
		return
	}
	args := []string{"--root", c.String("root")}
	if p := c.String("config"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		args = append(args, "--config", p)
	}
	if p := c.String("log"); p != "" {
		args = append(args, "--log", p, "--log-format", c.String("log-format"))
	}
	if c.Bool("debug") {
		args = append(args, "--debug")
	}
	cmd := exec.Command(exe, append(args, "factory", "fill", "--kind", string(kind))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		logrus.WithError(err).Warn("refilling the sandbox pool")
		return
	}
	_ = cmd.Process.Release()
}
