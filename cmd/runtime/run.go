package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "create and run a container",
	ArgsUsage: "<container-id>",
	Description: `run is create followed by start. In the foreground (without --detach) it
relays the container's stdio (or terminal), forwards the signals it gets,
deletes the container once it exits, and exits with its status.`,
	Flags: append(createFlags(),
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "detach from the container's process"},
		&cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
	),
	Action: func(c *cli.Context) error {
		detach := c.Bool("detach")
		o, err := createOptionsFrom(c, detach)
		if err != nil {
			return err
		}
		status, err := run(c, o)
		if err != nil {
			return fmt.Errorf("cocoon-runtime run failed: %w", err)
		}
		if status != 0 {
			return cli.Exit("", status)
		}
		return nil
	},
}

// run creates and starts the container; in the foreground it waits for
// it, deletes it (unless --keep) and returns its exit status.
func run(c *cli.Context, o createOptions) (int, error) {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	_, sp, err := createContainer(ctx, c, o)
	stop()
	if err != nil {
		return 0, err
	}
	oc, err := open(c.Context, c)
	if err != nil {
		sp.kill()
		return 0, err
	}
	if err := startContainer(c.Context, oc); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context), scaled(oc.m, 20*time.Second))
		defer cancel()
		_ = destroyContainer(dctx, oc)
		oc.close()
		return 0, err
	}
	oc.close()
	if o.detach {
		return 0, nil
	}
	status := waitForeground(sp)
	if c.Bool("keep") {
		return status, nil
	}
	oc, err = open(c.Context, c)
	if err != nil {
		return status, err
	}
	defer oc.close()
	dctx, cancel := context.WithTimeout(c.Context, scaled(oc.m, 20*time.Second))
	defer cancel()
	return status, destroyContainer(dctx, oc)
}
