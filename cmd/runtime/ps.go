package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "ps displays the processes running inside a container",
	ArgsUsage: "<container-id> [ps options]",
	Description: `ps lists the container's processes as the guest sees them: the table's PIDs
are guest PIDs. The container's processes do not exist on the host, and its
relays' PIDs stand for them there: --format json, which callers such as Docker
("docker top") match against the host's process table, lists the host PIDs of
the relays of the container's live processes (init and exec'd).`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Value: "table", Usage: "select one of: table or json"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, false); err != nil {
			return err
		}
		_, h, err := openContainer(c)
		if err != nil {
			return err
		}
		defer h.Close()
		procs, err := h.Processes(c.Context)
		if err != nil {
			return err
		}
		switch c.String("format") {
		case "json":
			return json.NewEncoder(os.Stdout).Encode(h.RelayPIDs())
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 4, 1, 2, ' ', 0)
			fmt.Fprint(w, "UID\tPID\tPPID\tSTAT\tTIME\tCMD\n")
			for _, p := range procs {
				secs := p.CPUTicks / 100
				fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%02d:%02d:%02d\t%s\n", p.UID, p.PID, p.PPID, p.State,
					secs/3600, secs/60%60, secs%60, p.Cmdline)
			}
			return w.Flush()
		}
		return fmt.Errorf("invalid format option")
	},
}
