package main

import (
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
)

// refillPool starts the replacement of each sandbox that rt took from the
// pool (hypervisor.template_pool), in the background; create and run call
// it once their container is created and started, so as not to slow it
// down.
func refillPool(c *cli.Context, rt *container.Runtime) {
	taken := rt.PoolTaken()
	if len(taken) == 0 {
		return
	}
	f := container.PoolFill{LogPath: c.String("log"), LogFormat: c.String("log-format"), Debug: c.Bool("debug")}
	if p := c.String("config"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		f.Config = p
	}
	for _, kind := range taken {
		if err := container.StartPoolFill(f, kind); err != nil {
			logger(c).WithError(err).Warn("refilling the sandbox pool")
		}
	}
}
