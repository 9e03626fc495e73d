package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/state"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "ps displays the processes running inside a container",
	ArgsUsage: "<container-id> [ps options]",
	Description: `ps lists the container's processes as the guest sees them: the PIDs are
guest PIDs (the container's processes do not exist on the host; its shims'
PIDs stand for them there).`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, false); err != nil {
			return err
		}
		oc, err := open(c.Context, c)
		if err != nil {
			return err
		}
		defer oc.close()
		if s := oc.rec.CurrentStatus(); s == state.Stopped || oc.sb == nil {
			return state.ErrNotRunning
		}
		ctx, cancel := withTimeout(c.Context, oc.m)
		defer cancel()
		ag, err := oc.sb.Client(ctx)
		if err != nil {
			return err
		}
		resp, err := ag.ListProcesses(ctx, &api.ContainerRequest{ContainerId: oc.rec.ID})
		if err != nil {
			return fmt.Errorf("listing processes of %s: %w", oc.rec.ID, err)
		}
		switch c.String("format") {
		case "json":
			pids := []int{}
			for _, p := range resp.GetProcesses() {
				pids = append(pids, int(p.GetPid()))
			}
			return json.NewEncoder(os.Stdout).Encode(pids)
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 4, 1, 2, ' ', 0)
			fmt.Fprint(w, "UID\tPID\tPPID\tSTAT\tTIME\tCMD\n")
			for _, p := range resp.GetProcesses() {
				secs := p.GetCpuTimeTicks() / 100
				fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%02d:%02d:%02d\t%s\n", p.GetUid(), p.GetPid(), p.GetPpid(), p.GetState(),
					secs/3600, secs/60%60, secs%60, p.GetCmdline())
			}
			return w.Flush()
		}
		return fmt.Errorf("invalid format option")
	},
}
