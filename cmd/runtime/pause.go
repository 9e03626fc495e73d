package main

import "github.com/urfave/cli/v2"

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "pause suspends all processes inside the container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		_, h, err := openContainer(c)
		if err != nil {
			return err
		}
		defer h.Close()
		// The guest's freezer cgroup; the status is recorded.
		return h.Pause(c.Context)
	},
}
