package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/internal/hostcheck"
	"github.com/cocoon-containers/cocoon/sandbox"
)

var checkCommand = &cli.Command{
	Name:  "check",
	Usage: "check that this host can run cocoon sandboxes",
	Description: `check prints one line per check, pass, warn or fail, and for anything short
of pass what to do: hardware virtualization, /dev/kvm, the accelerator that
applies and why, QEMU (version, accelerator, 9p and agent devices), the guest
kernel and initrd and whether they match this build, vhost-vsock,
/dev/net/tun, tc (in a throw-away network namespace), cgroups and the helper
binaries. It exits 0 when cocoon can run here (TCG counts, with a warning)
and 1 otherwise. Nothing is changed and no VM is booted (probe boots one).`,
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
	},
	Action: func(c *cli.Context) error {
		if err := checkArgs(c, 0, true); err != nil {
			return err
		}
		rep := runChecks(c)
		if c.Bool("json") {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			printChecks(c.App.Writer, rep)
		}
		if !rep.OK {
			return errors.New("check failed: cocoon cannot run on this host")
		}
		return nil
	},
}

// checkReport is check's output.
type checkReport struct {
	Configuration string             `json:"configuration"`
	OK            bool               `json:"ok"`
	Checks        []hostcheck.Result `json:"checks"`
}

func runChecks(c *cli.Context) checkReport {
	rep := checkReport{Configuration: config.Path(c.String("config"))}
	cfg, err := loadConfig(c)
	if err != nil {
		// Report it, then check the host against the defaults.
		rep.Checks = append(rep.Checks, hostcheck.Result{
			Name: "config", Status: hostcheck.Fail, Detail: err.Error(),
			Fix: "correct the file (`cocoon-runtime env` prints the effective configuration)",
		})
		if cfg, err = config.Parse(config.Default()); err != nil {
			panic("embedded default configuration: " + err.Error())
		}
	} else {
		rep.Checks = append(rep.Checks, hostcheck.Result{Name: "config", Status: hostcheck.Pass, Detail: rep.Configuration + configOrigin(rep.Configuration)})
	}
	in := hostcheck.Input{Config: cfg, RuntimeVersion: version}
	in.Templates, in.TemplatesWhy = factory.TemplatesOn(c.Context, cfg)
	in.Accelerator, in.Why, in.Err = sandbox.ResolveAccelerator(cfg.Hypervisor.Accelerator)
	relay, relayErr := container.RelayPath()
	proxy, proxyErr := sandbox.HelperPath(cfg.Runtime.ProxyPath, "cocoon-proxy")
	in.Helpers = []hostcheck.Helper{
		{Name: "cocoon-relay", Path: relay, Err: relayErr},
		{Name: "cocoon-proxy", Path: proxy, Err: proxyErr},
	}
	rep.Checks = append(rep.Checks, hostcheck.Run(c.Context, hostcheck.Host{}, in)...)
	rep.OK = hostcheck.OK(rep.Checks)
	return rep
}

// configOrigin says whether the file exists or the defaults apply.
func configOrigin(path string) string {
	if _, err := os.Stat(path); err != nil {
		return " (absent: embedded defaults)"
	}
	return ""
}

func printChecks(w io.Writer, rep checkReport) {
	warns := 0
	for _, r := range rep.Checks {
		line := fmt.Sprintf("%-4s  %-14s %s", map[hostcheck.Status]string{
			hostcheck.Pass: "PASS", hostcheck.Warn: "WARN", hostcheck.Fail: "FAIL",
		}[r.Status], r.Name, r.Detail)
		if r.Fix != "" {
			line += " -- to fix: " + r.Fix
		}
		if r.Status == hostcheck.Warn {
			warns++
		}
		fmt.Fprintln(w, line)
	}
	if rep.OK {
		fmt.Fprintf(w, "cocoon can run on this host (%d warnings)\n", warns)
	} else {
		fmt.Fprintln(w, "cocoon cannot run on this host: fix the FAIL lines above")
	}
}
