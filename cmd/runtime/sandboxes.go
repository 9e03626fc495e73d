package main

import (
	"fmt"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// newManager loads the configuration and resolves the accelerator.
func newManager(c *cli.Context) (*sandbox.Manager, error) {
	cfg, err := config.Load(config.Path(c.String("config")))
	if err != nil {
		return nil, err
	}
	accel, why, err := resolveAccelerator(cfg.Hypervisor.Accelerator)
	if err != nil {
		return nil, err
	}
	log := logrus.WithField("accelerator", accel)
	log.Debugf("accelerator: %s", why)
	return &sandbox.Manager{
		Root:        filepath.Join(c.String("root"), "sandboxes"),
		Config:      cfg,
		Hypervisor:  qemu.New(),
		Accelerator: accel,
		Log:         log,
	}, nil
}

func resolveAccelerator(want string) (hypervisor.Accelerator, string, error) {
	detected, why := qemu.DetectAccelerator()
	switch want {
	case "auto":
		return detected, why, nil
	case "tcg":
		return hypervisor.TCG, "forced by configuration", nil
	case "kvm":
		if detected != hypervisor.KVM {
			return "", "", fmt.Errorf("accelerator kvm is configured but unusable: %s", why)
		}
		return hypervisor.KVM, "forced by configuration", nil
	}
	return "", "", fmt.Errorf("unknown accelerator %q", want)
}
