package sandbox

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
)

// NewManager returns the manager of the sandboxes under root that boots
// them as cfg says, with QEMU and the accelerator that cfg asks for (auto:
// the best one detected), logging to log (nil: logrus's standard logger).
// cocoon-runtime and the containerd shim build their managers with it.
func NewManager(cfg *config.Config, root string, log *logrus.Entry) (*Manager, error) {
	accel, why, err := ResolveAccelerator(cfg.Hypervisor.Accelerator)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	log = log.WithField("accelerator", accel)
	log.Debugf("accelerator: %s", why)
	return &Manager{
		Root:        root,
		Config:      cfg,
		Hypervisor:  qemu.New(qemu.WithLogger(log.WithField("hypervisor", qemu.Name)), qemu.WithVersionCache(qemu.VersionCacheDir)),
		Accelerator: accel,
		Log:         log,
	}, nil
}

// ResolveAccelerator resolves a configured accelerator (auto, tcg or kvm)
// to the one to use, and says why it was chosen.
func ResolveAccelerator(want string) (hypervisor.Accelerator, string, error) {
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
