package main

import (
	"fmt"
	"os"
	"os/signal"

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
		status, err := run(c)
		if err != nil {
			return fmt.Errorf("cocoon-runtime run failed: %w", err)
		}
		if status != 0 {
			return cli.Exit("", status)
		}
		return nil
	},
}

// run creates and starts the container on one opened container (one
// configuration, one sandbox, one agent connection); in the foreground it
// waits for it, deletes it (unless --keep) and returns its exit status.
func run(c *cli.Context) (int, error) {
	o, err := createOptions(c, c.Bool("detach"))
	if err != nil {
		return 0, err
	}
	rt, err := newRuntime(c)
	if err != nil {
		return 0, err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	h, err := rt.Create(ctx, o)
	stop()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	if err := h.Start(c.Context); err != nil {
		_ = h.Delete(c.Context, true)
		return 0, err
	}
	if o.Detach {
		return 0, nil
	}
	// Other commands may act on the container while it runs.
	h.Unlock()
	status := h.Relay().WaitForeground()
	if c.Bool("keep") {
		return status, nil
	}
	if err := h.Relock(); err != nil {
		return status, err
	}
	return status, h.Delete(c.Context, true)
}
