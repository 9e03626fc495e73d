package main

import (
	"path/filepath"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// poolTaken is the kind of sandbox this command took from the pool
// (hypervisor.template_pool), if any.
var poolTaken atomic.Value // sandbox.PoolKind

// refillPool starts the replacement of a sandbox this command took from
// the pool once the command is done with its container, so as not to slow
// it down.
func refillPool(c *cli.Context) {
	kind, _ := poolTaken.Load().(sandbox.PoolKind)
	if kind == "" {
		return
	}
	f := container.PoolFill{LogPath: c.String("log"), LogFormat: c.String("log-format"), Debug: c.Bool("debug")}
	if p := c.String("config"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		f.Config = p
	}
	if err := container.StartPoolFill(f, kind); err != nil {
		logrus.WithError(err).Warn("refilling the sandbox pool")
	}
}
