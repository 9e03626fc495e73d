package main

import "github.com/urfave/cli/v2"

var resumeCommand = &cli.Command{
	Name:      "resume",
	Usage:     "resumes all processes that have been previously paused",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		return pauseResume(c, false)
	},
}
