package main

import (
	"fmt"
	"os"
	"os/signal"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
)

// createFlags are create's flags, which run shares.
func createFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bundle", Aliases: []string{"b"}, Usage: "path to the root of the bundle directory, defaults to the current directory"},
		&cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
		&cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
		&cli.BoolFlag{Name: "no-pivot", Usage: "accepted for compatibility; the guest decides"},
		&cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for compatibility; the guest decides"},
		&cli.UintFlag{Name: "preserve-fds", Usage: "accepted for compatibility; descriptors cannot cross into the VM"},
	}
}

// createOptions reads create's (and run's) arguments and flags.
func createOptions(c *cli.Context, detach bool) (container.CreateOptions, error) {
	if err := checkArgs(c, 1, true); err != nil {
		return container.CreateOptions{}, err
	}
	id, err := containerID(c)
	if err != nil {
		return container.CreateOptions{}, err
	}
	return container.CreateOptions{
		ID:            id,
		Bundle:        c.String("bundle"),
		PidFile:       c.String("pid-file"),
		ConsoleSocket: c.String("console-socket"),
		Detach:        detach,
	}, nil
}

var createCommand = &cli.Command{
	Name:      "create",
	Usage:     "create a container",
	ArgsUsage: "<container-id>",
	Description: `The create command boots the container's sandbox VM (or joins its pod's),
creates the container in it and starts the cocoon-relay whose PID is the
container's; "start" runs the user's program.`,
	Flags: createFlags(),
	Action: func(c *cli.Context) error {
		o, err := createOptions(c, true)
		if err != nil {
			return err
		}
		rt, err := newRuntime(c)
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
		defer stop()
		h, err := rt.Create(ctx, o)
		if err != nil {
			return fmt.Errorf("cocoon-runtime create failed: %w", err)
		}
		h.Close()
		return nil
	},
}
