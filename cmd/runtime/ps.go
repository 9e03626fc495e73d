package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
)

var psCommand = &cli.Command{
	Name:      "ps",
	Usage:     "ps displays the processes running inside a container",
	ArgsUsage: "<container-id> [ps options]",
	Description: `ps lists the container's processes as the guest sees them: the table's PIDs
are guest PIDs. The container's processes do not exist on the host, and its
shims' PIDs stand for them there: --format json, which callers such as Docker
("docker top") match against the host's process table, lists the host PIDs of
the shims that relay the container's live processes (init and exec'd).`,
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
		if s := oc.rec.CurrentStatus(); s == container.Stopped || oc.sb == nil {
			return container.ErrNotRunning
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
			return json.NewEncoder(os.Stdout).Encode(shimPids(oc.rec.Pid, sandboxAddress(oc.sb), oc.rec.ID))
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

// shimPids lists the host PIDs of the live cocoon-shims relaying processes
// of container id in the sandbox at addr: init's (pid) first, then those of
// exec'd processes, found by their command lines (startShim's arguments).
func shimPids(pid int, addr []string, id string) []int {
	pids := []int{}
	if pid > 0 {
		pids = append(pids, pid)
	}
	want := strings.Join(append(append([]string{}, addr...), "--container", id), "\x00") + "\x00"
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		cl, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || !bytes.HasPrefix(cl, []byte("cocoon-shim\x00")) || !bytes.Contains(cl, []byte("\x00"+want)) {
			continue
		}
		pids = append(pids, p)
	}
	return pids
}
