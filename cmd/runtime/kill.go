package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "kill sends the specified signal (default: SIGTERM) to the container's init process",
	ArgsUsage: "<container-id> [signal]",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "send the specified signal to all processes inside the container"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, false); err != nil {
			return err
		}
		if c.NArg() > 2 {
			return fmt.Errorf("%s: %q requires at most 2 arguments", c.App.Name, c.Command.Name)
		}
		sig := unix.SIGTERM
		if s := c.Args().Get(1); s != "" {
			var err error
			if sig, err = parseSignal(s); err != nil {
				return err
			}
		}
		oc, err := open(c.Context, c)
		if err != nil {
			return err
		}
		defer oc.close()
		if err := container.CheckOp(container.OpKill, oc.rec.ID, oc.rec.CurrentStatus()); err != nil {
			return err
		}
		if oc.sb == nil {
			return container.ErrNotRunning
		}
		ctx, cancel := withTimeout(c.Context, oc.m)
		defer cancel()
		ag, err := oc.sb.Client(ctx)
		if err != nil {
			return err
		}
		if _, err := ag.SignalProcess(ctx, &api.SignalProcessRequest{
			ContainerId: oc.rec.ID, Signal: uint32(sig), All: c.Bool("all"),
		}); err != nil {
			return fmt.Errorf("signalling container %s: %w", oc.rec.ID, err)
		}
		return nil
	},
}
