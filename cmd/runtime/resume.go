package main

import "github.com/urfave/cli/v2"

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "resumes all processes that have been previously paused",
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
		return h.Resume(c.Context)
	},
}
