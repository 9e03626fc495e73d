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
	_, h, err := openContainer(c)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	data, err := h.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return &event{Type: "stats", ID: h.Record().ID, Data: data}, nil
}
