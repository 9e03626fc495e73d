package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/container"
)

var deleteCommand = &cli.Command{
	Name:      "delete",
	Usage:     "delete any resources held by the container often used with detached container",
	ArgsUsage: "<container-id>",
	Description: `delete removes the container from its sandbox, runs its poststop hooks,
destroys the sandbox VM when no other container uses it, and forgets the
container.`,
	Flags: []cli.Flag{
		// As runc: --force kills a running container first (SIGKILL),
		// which is how containerd and CRI-O clean up after a failure.
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "forcibly deletes the container if it is still running (uses SIGKILL)"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		force := c.Bool("force")
		rt, h, err := openContainer(c)
		if err != nil {
			if rt != nil && errors.Is(err, container.ErrNotExist) {
				// As runc: a directory left by an aborted create has no
				// state; remove it, and with --force that is success.
				_ = rt.RemoveLeftover(c.Args().First())
				if force {
					return nil
				}
			}
			return err
		}
		defer h.Close()
		return h.Delete(c.Context, force)
	},
}
