// Package factory is cocoon's sandbox factory (warm start): VM templates,
// booted guests saved once per configuration that sandboxes are restored
// from instead of booting, and a pool of sandboxes restored from them and
// warmed up, ready to be taken. Kata Containers splits the same work into
// direct, template and cache factories. A Factory is what package sandbox
// asks (sandbox.Factory) when it creates a sandbox; it makes its templates
// and ready sandboxes with the sandbox package's own boot code
// (sandbox.AsImage, Sandbox.SaveImage, Sandbox.WarmUp, Manager.Adopt), and
// keeps its pool full by itself: a command or shim that finds the pool
// short of its size starts a refill, in a process of its own (Main).
//
// Layout, under hypervisor.template_dir (root's only):
//
//	<template_dir>/<key hash>/memory         a template's guest RAM
//	<template_dir>/<key hash>/state          its device state
//	<template_dir>/<key hash>/template.json  its key and its NICs' MACs
//	<template_dir>/.pool/<key>/pool-<id>/    a pooled sandbox's directory
//
// Anything wrong with a template or a pooled sandbox means a cold boot
// (and a warning), never a failed sandbox.
package factory

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/sandbox"
)

var _ sandbox.Factory = (*Factory)(nil)

// Factory gives the sandboxes of one configuration (a command's, a
// shim's) their templates and ready sandboxes.
type Factory struct {
	// configPath is the configuration file, which a refill process loads
	// ("": the default, config.Path).
	configPath string
	log        *logrus.Entry

	once    sync.Once
	poolKey string // the pool's directory name, "" when no key can be made
}

// New returns the factory of the configuration in configPath (empty: the
// default one), logging to log.
func New(configPath string, log *logrus.Entry) *Factory {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Factory{configPath: configPath, log: log}
}

// Image gives a VM of configuration cfg the template it is restored from,
// making it first if there is none; nil (boot cold) when templates do not
// apply, or after a warning when the template cannot be made.
func (f *Factory) Image(ctx context.Context, m *sandbox.Manager, cfg hypervisor.VMConfig) *sandbox.Image {
	if ok, why := applies(m, cfg); !ok {
		if m.Config.Hypervisor.Templates {
			f.log.Debugf("booting cold: %s", why)
		}
		return nil
	}
	t, err := f.ensureTemplate(ctx, m, cfg)
	if err != nil {
		f.log.WithError(err).Warn("no vm template, booting cold")
		return nil
	}
	return t.image()
}

// Failed drops a template that a VM could not be restored from: the next
// sandbox makes a new one.
func (f *Factory) Failed(img *sandbox.Image, err error) {
	f.log.WithError(err).WithField("template", img.Dir).Debug("removing a template that a vm could not be restored from")
	if err := os.RemoveAll(img.Dir); err != nil {
		f.log.WithError(err).Debug("removing a failed template")
	}
}

// applies says whether a VM of configuration cfg can be restored from a
// template, and if not, why.
func applies(m *sandbox.Manager, cfg hypervisor.VMConfig) (bool, string) {
	h := m.Config.Hypervisor
	switch {
	case !h.Templates:
		return false, "templates are off"
	case m.AgentDialer != nil:
		return false, "the agent is reached through a test dialer"
	case cfg.VsockCID != 0:
		return false, "vsock devices do not migrate"
	case sharesMemory(cfg):
		return false, "virtio-fs shares do not migrate"
	case cfg.VCPUs != h.VCPUs || cfg.MemoryMiB != h.MemoryMiB:
		// One template per container limit would multiply templates.
		return false, fmt.Sprintf("sized %d vcpus, %d MiB (templates have the configured %d, %d MiB)", cfg.VCPUs, cfg.MemoryMiB, h.VCPUs, h.MemoryMiB)
	case len(cfg.NICs) > maxNICs:
		return false, fmt.Sprintf("%d nics (templates have at most %d)", len(cfg.NICs), maxNICs)
	}
	return true, ""
}

func sharesMemory(cfg hypervisor.VMConfig) bool {
	for _, sd := range cfg.SharedDirs {
		if sd.Socket != "" {
			return true
		}
	}
	return false
}

// templateDir returns the configured template directory.
func templateDir(m *sandbox.Manager) string { return m.Config.Hypervisor.TemplateDir }

// shapes are the VM configurations that Init makes templates for:
// without NIC and with one (a container in a namespace of its own).
func shapes(m *sandbox.Manager) []hypervisor.VMConfig {
	var cfgs []hypervisor.VMConfig
	for n := 0; n <= maxNICs; n++ {
		cfgs = append(cfgs, m.VMConfig("template", "/", "/", make([]hypervisor.NIC, n)))
	}
	return cfgs
}

// Init makes the templates of the current configuration that do not exist
// yet (one without NIC, one with one), enables the pool and fills it; it
// returns the templates.
func (f *Factory) Init(ctx context.Context, m *sandbox.Manager) ([]*Template, error) {
	if t := sandbox.ResolveTransport(m.Config.Agent.Transport); t != api.TransportSerial {
		return nil, fmt.Errorf("making templates: agent transport %s: templates need the serial transport", t)
	}
	if m.Config.Hypervisor.SharedFS != "9p" {
		return nil, fmt.Errorf("making templates: shared_fs %q: templates need 9p", m.Config.Hypervisor.SharedFS)
	}
	var out []*Template
	for _, cfg := range shapes(m) {
		t, err := f.ensureTemplate(ctx, m, cfg)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	if err := f.enablePool(m); err != nil {
		return out, err
	}
	_, err := f.Fill(ctx, m, Kinds...)
	return out, err
}

// Destroy disables the pool and destroys its ready sandboxes (those taken
// belong to their containers, and keep running), then removes every
// template: sandboxes restored from one keep running, their QEMU holds its
// memory.
func (f *Factory) Destroy(ctx context.Context, m *sandbox.Manager) error {
	if err := f.destroyPools(ctx, m); err != nil {
		return err
	}
	return destroyTemplates(m)
}
