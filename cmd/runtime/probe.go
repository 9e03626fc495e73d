package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
)

var probeCommand = &cli.Command{
	Name:  "probe",
	Usage: "boot a throw-away sandbox, print what its agent reports, and destroy it",
	Description: `probe proves that this host can run cocoon VMs end to end: it boots the
configured guest kernel and image under the detected accelerator, waits for
the agent, prints the agent's version and the guest's kernel release, and
tears the sandbox down again.`,
	Action: func(c *cli.Context) error {
		if c.NArg() != 0 {
			return fmt.Errorf("probe takes no arguments")
		}
		if err := probe(c); err != nil {
			return fmt.Errorf("cocoon-runtime probe failed: %w", err)
		}
		return nil
	},
}

func probe(c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	m, err := newManager(c, cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, unix.SIGTERM)
	defer stop()
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := "probe-" + hex.EncodeToString(b[:])

	start := time.Now()
	sb, err := m.Create(ctx, id)
	if err != nil {
		container.RemoveEmptyRoot(m.Root)
		return err
	}
	booted := time.Since(start)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := sb.Destroy(dctx); err != nil {
			fmt.Fprintln(os.Stderr, "cocoon-runtime: probe:", err)
		}
		container.RemoveEmptyRoot(m.Root)
	}()
	v, err := sb.AgentInfo(ctx)
	if err != nil {
		return err
	}
	var host unix.Utsname
	_ = unix.Uname(&host)
	fmt.Printf("accelerator:    %s\n", m.Accelerator)
	fmt.Printf("machine:        %s\n", m.Config.Hypervisor.Machine)
	fmt.Printf("agent version:  %s (api %d)\n", v.Version, v.APIVersion)
	fmt.Printf("guest kernel:   %s\n", v.KernelRelease)
	fmt.Printf("host kernel:    %s\n", unix.ByteSliceToString(host.Release[:]))
	fmt.Printf("boot to agent:  %.2fs (guest uptime %.2fs)\n", booted.Seconds(), v.Uptime.Seconds())
	return nil
}
