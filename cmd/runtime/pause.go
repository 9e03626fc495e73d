package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
)

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
	oc, err := open(c.Context, c)
	if err != nil {
		return err
	}
	defer oc.close()
	op, to := container.OpResume, container.Running
	if pause {
		op, to = container.OpPause, container.Paused
	}
	if err := container.CheckOp(op, oc.rec.ID, oc.rec.CurrentStatus()); err != nil {
		return err
	}
	if oc.sb == nil {
		return errSandboxGone
	}
	ctx, cancel := withTimeout(c.Context, oc.m)
	defer cancel()
	ag, err := oc.sb.Client(ctx)
	if err != nil {
		return err
	}
	req := &api.ContainerRequest{ContainerId: oc.rec.ID}
	if pause {
		_, err = ag.PauseContainer(ctx, req)
	} else {
		_, err = ag.ResumeContainer(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("%s container %s: %w", c.Command.Name, oc.rec.ID, err)
	}
	oc.rec.Status = to
	return oc.st.Save(oc.rec)
}
