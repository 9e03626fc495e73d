package main

import "github.com/urfave/cli/v2"

var pauseCommand = &cli.Command{
	Name:      "pause",
	Usage:     "pause suspends all processes inside the container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		return pauseResume(c, true)
	},
}

// pauseResume freezes (pause) or thaws the container's processes in the
// guest's freezer cgroup, and records the status.
func pauseResume(c *cli.Context, pause bool) error {
	if err := checkArgs(c, 1, true); err != nil {
		return err
	}
	_, h, err := openContainer(c)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.Pause(c.Context, pause)
}
