package main

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/sandbox"
)

var factoryCommand = &cli.Command{
	Name:  "factory",
	Usage: "manage the VM templates that sandboxes are restored from (warm start)",
	Description: `A template is a booted guest, saved once per kernel, initrd, QEMU and
machine shape under hypervisor.template_dir; with hypervisor.templates = true
every sandbox is restored from one instead of booting. init makes the
templates of the current configuration (and, with hypervisor.template_pool,
fills the pool of sandboxes restored from them and warmed up), status lists
them, destroy removes them all and the pool's ready sandboxes.`,
	Subcommands: []*cli.Command{
		{
			Name:   "init",
			Usage:  "make the templates of the current configuration",
			Action: factoryInit,
		},
		{
			Name:   "status",
			Usage:  "list the templates",
			Action: factoryStatus,
		},
		{
			Name:   "destroy",
			Usage:  "remove every template, and the pool's ready sandboxes",
			Action: factoryDestroy,
		},
		{
			Name:   "fill",
			Usage:  "fill the pool of ready sandboxes (hypervisor.template_pool)",
			Hidden: true, // run in the background by the command that took one
			Flags: []cli.Flag{
				&cli.StringSliceFlag{Name: "kind", Usage: "the kinds of sandbox to make (default: every kind)"},
			},
			Action: factoryFill,
		},
	},
}

// factoryOf returns the factory of the current configuration and a
// manager to use it with.
func factoryOf(c *cli.Context) (*factory.Factory, *sandbox.Manager, error) {
	if c.NArg() != 0 {
		return nil, nil, fmt.Errorf("factory %s takes no arguments", c.Command.Name)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, nil, err
	}
	m, err := newManager(c, cfg)
	if err != nil {
		return nil, nil, err
	}
	f := newFactory(c)
	f.MakeTemplatesNow()
	m.Factory = f
	return f, m, nil
}

func factoryInit(c *cli.Context) error {
	f, m, err := factoryOf(c)
	if err != nil {
		return err
	}
	if on, why := factory.TemplatesOn(c.Context, m.Config); !on {
		fmt.Fprintf(c.App.ErrWriter, "warning: templates are off (%s): sandboxes will not use these templates\n", why)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	defer stop()
	ts, err := f.Init(ctx, m)
	for _, t := range ts {
		fmt.Fprintf(c.App.Writer, "%s\t%d nic(s)\n", t.Dir, t.Key.NICs)
	}
	if err != nil {
		return fmt.Errorf("factory init: %w", err)
	}
	return nil
}

func factoryFill(c *cli.Context) error {
	f, m, err := factoryOf(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	defer stop()
	kinds := factory.Kinds
	if ks := c.StringSlice("kind"); len(ks) > 0 {
		kinds = nil
		for _, k := range ks {
			if !slices.Contains(factory.Kinds, factory.Kind(k)) {
				return fmt.Errorf("factory fill: unknown kind %q (want one of %v)", k, factory.Kinds)
			}
			kinds = append(kinds, factory.Kind(k))
		}
	}
	if _, err := f.Fill(ctx, m, kinds...); err != nil {
		return fmt.Errorf("factory fill: %w", err)
	}
	return nil
}

func factoryStatus(c *cli.Context) error {
	f, m, err := factoryOf(c)
	if err != nil {
		return err
	}
	ts, err := factory.Templates(m)
	if err != nil {
		return err
	}
	on, why := factory.TemplatesOn(c.Context, m.Config)
	fmt.Fprintf(c.App.Writer, "templates: %t (%s), directory: %s\n", on, why, m.Config.Hypervisor.TemplateDir)
	st := f.Status(m)
	state := ""
	if st.Disabled {
		state = " (disabled by factory destroy; factory init enables it)"
	}
	fmt.Fprintf(c.App.Writer, "pool: %d of %d ready without nic, %d of %d with a network of its own, %d taken or being made%s\n",
		st.Ready[factory.NoNIC], st.Size, st.Ready[factory.NewNetwork], st.Size, st.Other, state)
	if st.LastError != "" {
		fmt.Fprintf(c.App.Writer, "pool: the last refill failed: %s\n", st.LastError)
	}
	for _, t := range ts {
		if t.Err != nil {
			fmt.Fprintf(c.App.Writer, "%s\tbroken: %v\n", t.Dir, t.Err)
			continue
		}
		state := "stale"
		if t.Current {
			state = "current"
		}
		fmt.Fprintf(c.App.Writer, "%s\t%s\t%d nic(s)\t%d MiB on disk\tmade %s\n", t.Dir, state, t.Key.NICs, t.Size()>>20, t.Created.Format(time.RFC3339))
	}
	return nil
}

func factoryDestroy(c *cli.Context) error {
	f, m, err := factoryOf(c)
	if err != nil {
		return err
	}
	if err := f.Destroy(c.Context, m); err != nil {
		return fmt.Errorf("factory destroy: %w", err)
	}
	return nil
}
