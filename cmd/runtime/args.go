package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// checkArgs checks the number of arguments as runc does.
func checkArgs(c *cli.Context, n int, exact bool) error {
	switch {
	case exact && c.NArg() != n:
		return fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], c.Command.Name, n)
	case !exact && c.NArg() < n:
		return fmt.Errorf("%s: %q requires a minimum of %d argument(s)", os.Args[0], c.Command.Name, n)
	}
	return nil
}

// containerID returns the command's first argument, the container ID.
func containerID(c *cli.Context) (string, error) {
	id := c.Args().First()
	if id == "" {
		return "", errors.New("container id cannot be empty")
	}
	return id, nil
}

// loadConfig loads the configuration that --config names (or the
// default); an explicit path is made absolute first, so that the relative
// paths in the file resolve against its directory. Unless --debug, the
// command's logger takes the configuration's level.
func loadConfig(c *cli.Context) (*config.Config, error) {
	path := config.Path(c.String("config"))
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	l := logger(c)
	if !c.Bool("debug") {
		l.SetLevel(cfg.Runtime.Level())
	}
	l.WithField("path", path).Debug("configuration loaded")
	return cfg, nil
}

// newRuntime returns the container layer for the command: --root, the
// configuration (loaded once), and the flags the relays get.
func newRuntime(c *cli.Context) (*container.Runtime, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	rt := container.NewRuntime(c.String("root"), cfg, container.RelayOptions{
		LogPath: c.String("log"), LogFormat: c.String("log-format"), Debug: c.Bool("debug"),
	}, logrus.NewEntry(logger(c)))
	rt.SystemdCgroup = c.Bool("systemd-cgroup")
	rt.Factory = newFactory(c)
	return rt, nil
}

// recordsOnly returns the container layer for commands that only read
// the records (state, list): no configuration is loaded.
func recordsOnly(c *cli.Context) *container.Runtime {
	return container.NewRuntime(c.String("root"), nil, container.RelayOptions{}, logrus.NewEntry(logger(c)))
}

// openContainer opens the container named by the first argument.
func openContainer(c *cli.Context) (*container.Runtime, *container.Handle, error) {
	id, err := containerID(c)
	if err != nil {
		return nil, nil, err
	}
	rt, err := newRuntime(c)
	if err != nil {
		return nil, nil, err
	}
	h, err := rt.Open(c.Context, id)
	if err != nil {
		return rt, nil, err
	}
	return rt, h, nil
}

// newManager returns the manager of the sandboxes of --root (check, probe,
// factory: commands that work on sandboxes, not containers).
func newManager(c *cli.Context, cfg *config.Config) (*sandbox.Manager, error) {
	return sandbox.NewManager(cfg, container.RuntimeSandboxRoot(c.String("root")), logrus.NewEntry(logger(c)))
}

// newFactory returns the factory of the configuration that --config names:
// templates and ready sandboxes, and the refills it starts load the same
// file.
func newFactory(c *cli.Context) *factory.Factory {
	path := c.String("config")
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return factory.New(path, logrus.NewEntry(logger(c)))
}
