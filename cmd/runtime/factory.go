package main

import (
	"fmt"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

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

func factoryManager(c *cli.Context) (*sandbox.Manager, error) {
	if c.NArg() != 0 {
		return nil, fmt.Errorf("factory %s takes no arguments", c.Command.Name)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	return newManager(c, cfg)
}

func factoryInit(c *cli.Context) error {
	m, err := factoryManager(c)
	if err != nil {
		return err
	}
	if !m.Config.Hypervisor.Templates {
		fmt.Fprintln(c.App.ErrWriter, "warning: hypervisor.templates is false: sandboxes will not use these templates")
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	defer stop()
	ts, err := m.InitTemplates(ctx)
	for _, t := range ts {
		fmt.Fprintf(c.App.Writer, "%s\t%d nic(s)\n", t.Dir, t.Key.NICs)
	}
	if err != nil {
		return fmt.Errorf("factory init: %w", err)
	}
	if _, err := m.FillPool(ctx, true, sandbox.PoolKinds...); err != nil {
		return fmt.Errorf("factory init: %w", err)
	}
	return nil
}

func factoryFill(c *cli.Context) error {
	m, err := factoryManager(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	defer stop()
	kinds := sandbox.PoolKinds
	if ks := c.StringSlice("kind"); len(ks) > 0 {
		kinds = nil
		for _, k := range ks {
			if !slices.Contains(sandbox.PoolKinds, sandbox.PoolKind(k)) {
				return fmt.Errorf("factory fill: unknown kind %q (want one of %v)", k, sandbox.PoolKinds)
			}
			kinds = append(kinds, sandbox.PoolKind(k))
		}
	}
	_, err = m.FillPool(ctx, false, kinds...)
	return err
}

func factoryStatus(c *cli.Context) error {
	m, err := factoryManager(c)
	if err != nil {
		return err
	}
	ts, err := m.Templates()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "templates: %t, directory: %s\n", m.Config.Hypervisor.Templates, m.Config.Hypervisor.TemplateDir)
	ready, other := m.PoolStatus()
	fmt.Fprintf(c.App.Writer, "pool: %d of %d ready without nic, %d of %d with a network of its own, %d taken or being made\n",
		ready[sandbox.PoolNoNIC], m.Config.Hypervisor.TemplatePool, ready[sandbox.PoolNewNetwork], m.Config.Hypervisor.TemplatePool, other)
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
	m, err := factoryManager(c)
	if err != nil {
		return err
	}
	if err := m.DestroyPool(c.Context); err != nil {
		return err
	}
	return m.DestroyTemplates()
}
