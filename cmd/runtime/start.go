package main

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/hooks"
)

var startCommand = &cli.Command{
	Name:      "start",
	Usage:     "executes the user defined process in a created container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		oc, err := open(c.Context, c)
		if err != nil {
			return err
		}
		defer oc.close()
		return startContainer(c.Context, oc)
	},
}

// startContainer runs the init process's program, then the poststart
// hooks; a failing poststart hook kills the container, as with runc.
func startContainer(ctx context.Context, oc *openContainer) error {
	rec := oc.rec
	if err := container.CheckOp(container.OpStart, rec.ID, rec.CurrentStatus()); err != nil {
		return err
	}
	if oc.sb == nil {
		return errSandboxGone
	}
	ctx, cancel := withTimeout(ctx, oc.m)
	defer cancel()
	ag, err := oc.sb.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := ag.StartContainer(ctx, &api.ContainerRequest{ContainerId: rec.ID}); err != nil {
		return fmt.Errorf("starting container %s: %w", rec.ID, err)
	}
	rec.Status = container.Running
	if err := oc.st.Save(rec); err != nil {
		return err
	}
	hs, err := bundleHooks(rec)
	if err != nil {
		return err
	}
	if err := hooks.Run(ctx, hooks.Poststart, hooks.Of(hs, hooks.Poststart), hookState(rec, specs.StateRunning)); err != nil {
		_, _ = ag.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: rec.ID, Signal: uint32(unix.SIGKILL), All: true})
		return err
	}
	return nil
}
