package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/container"
)

// event is runc's event line.
type event struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data,omitempty"`
}

var eventsCommand = &cli.Command{
	Name:      "events",
	Usage:     "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		&cli.DurationFlag{Name: "interval", Value: 5 * time.Second, Usage: "set the stats collection interval"},
		&cli.BoolFlag{Name: "stats", Usage: "display the container's stats then exit"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 1, true); err != nil {
			return err
		}
		if c.Duration("interval") <= 0 {
			return fmt.Errorf("duration interval must be greater than 0")
		}
		ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
		defer stop()
		enc := json.NewEncoder(os.Stdout)
		for {
			ev, err := statsEvent(ctx, c)
			if err != nil {
				return err
			}
			if err := enc.Encode(ev); err != nil {
				return err
			}
			if c.Bool("stats") {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.Duration("interval")):
			}
		}
	},
}

// statsEvent reads the container's cgroup statistics in the guest
// (runc's types.Stats, as the agent sends them).
func statsEvent(ctx context.Context, c *cli.Context) (*event, error) {
	oc, err := open(ctx, c)
	if err != nil {
		return nil, err
	}
	defer oc.close()
	if s := oc.rec.CurrentStatus(); s == container.Stopped || oc.sb == nil {
		return nil, container.ErrNotRunning
	}
	ctx, cancel := withTimeout(ctx, oc.m)
	defer cancel()
	ag, err := oc.sb.Client(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := ag.StatsContainer(ctx, &api.ContainerRequest{ContainerId: oc.rec.ID})
	if err != nil {
		return nil, fmt.Errorf("reading stats of %s: %w", oc.rec.ID, err)
	}
	data := resp.GetStatsJson()
	if !json.Valid(data) {
		return nil, fmt.Errorf("reading stats of %s: the agent sent invalid JSON", oc.rec.ID)
	}
	return &event{Type: "stats", ID: oc.rec.ID, Data: data}, nil
}
