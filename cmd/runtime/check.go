package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/sandbox"
)

var checkCommand = &cli.Command{
	Name:  "check",
	Usage: "check that this host can run cocoon sandboxes",
	Description: `check reports the accelerator that applies and why, whether the configured
QEMU runs, and whether the guest kernel and initrd exist. It exits 1 when
something needed is missing. (probe goes further and boots a VM.)`,
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		path := config.Path(c.String("config"))
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		var failed []string
		report := func(ok bool, what, detail string) {
			mark := "ok  "
			if !ok {
				mark = "FAIL"
				failed = append(failed, what)
			}
			fmt.Printf("%s %-12s %s\n", mark, what, detail)
		}
		fmt.Printf("configuration: %s\n", path)
		detected, why := qemu.DetectAccelerator()
		accel, awhy, aerr := sandbox.ResolveAccelerator(cfg.Hypervisor.Accelerator)
		if aerr != nil {
			report(false, "accelerator", aerr.Error())
		} else {
			detail := fmt.Sprintf("%s: %s", accel, why)
			if awhy != why {
				detail = fmt.Sprintf("%s: %s (detected %s: %s)", accel, awhy, detected, why)
			}
			report(true, "accelerator", detail)
		}
		ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cfg.Hypervisor.Path, "--version").Output()
		if err != nil {
			report(false, "qemu", fmt.Sprintf("%s: %v", cfg.Hypervisor.Path, err))
		} else {
			first, _, _ := strings.Cut(string(out), "\n")
			report(true, "qemu", fmt.Sprintf("%s: %s", cfg.Hypervisor.Path, first))
		}
		for _, f := range []struct{ what, path string }{
			{"kernel", cfg.Hypervisor.Kernel},
			{"initrd", cfg.Hypervisor.Initrd},
		} {
			if fi, err := os.Stat(f.path); err != nil {
				report(false, f.what, err.Error())
			} else {
				report(true, f.what, fmt.Sprintf("%s (%d bytes)", f.path, fi.Size()))
			}
		}
		if p, err := shimPath(); err != nil {
			report(false, "cocoon-shim", err.Error())
		} else {
			report(true, "cocoon-shim", p)
		}
		if len(failed) > 0 {
			return errors.New("check failed: " + strings.Join(failed, ", "))
		}
		return nil
	},
}
