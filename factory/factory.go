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
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
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

	onOnce       sync.Once
	templatesOn  bool
	templatesWhy string

	// makeNow is set where templates are made when missing (factory init,
	// a refill); elsewhere a missing template is made in the background,
	// and the sandbox boots cold meanwhile.
	makeNow bool
}

// MakeTemplatesNow makes the factory make a missing template when a
// sandbox needs it, and restore the sandbox from it, rather than boot it
// cold and make the template in the background (factory init, fill).
func (f *Factory) MakeTemplatesNow() { f.makeNow = true }

// New returns the factory of the configuration in configPath (empty: the
// default one), logging to log.
func New(configPath string, log *logrus.Entry) *Factory {
	if log == nil {
		log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Factory{configPath: configPath, log: log}
}

// versionCache is where QEMU versions are cached (tests use their own).
var versionCache = qemu.VersionCacheDir

// TemplatesOn says whether sandboxes of configuration cfg are restored from
// templates, and why: hypervisor.templates decides, or, set to "auto", the
// QEMU: one that maps a template from a file opened read-only for its
// clones (8.2 and later), so that no clone can write the template shared
// by all, gets them; an older one boots every sandbox.
func TemplatesOn(ctx context.Context, cfg *config.Config) (bool, string) {
	switch cfg.Hypervisor.Templates {
	case config.On:
		return true, "hypervisor.templates = true"
	case config.Off:
		return false, "hypervisor.templates = false"
	}
	binary := cfg.Hypervisor.Path
	if binary == "" {
		binary = qemu.DefaultBinary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return false, fmt.Sprintf("no QEMU to ask (%v)", err)
	}
	v, err := qemu.BinaryVersion(ctx, path, versionCache)
	if err != nil {
		return false, err.Error()
	}
	if !v.ReadOnlyTemplates() {
		return false, fmt.Sprintf("QEMU %s opens a template's memory read-write for its clones (8.2 and later open it read-only): install QEMU 8.2 or later (Debian 12: bookworm-backports), or set hypervisor.templates = true to use them anyway", v)
	}
	return true, fmt.Sprintf("QEMU %s maps templates read-only for the sandboxes restored from them", v)
}

// on says, once per factory, whether m's sandboxes are restored from
// templates (TemplatesOn).
func (f *Factory) on(m *sandbox.Manager) bool {
	f.onOnce.Do(func() {
		f.templatesOn, f.templatesWhy = TemplatesOn(context.Background(), m.Config)
		f.log.Debugf("templates on: %t (%s)", f.templatesOn, f.templatesWhy)
	})
	return f.templatesOn
}

// Image gives a VM of configuration cfg the template it is restored from;
// nil (boot cold) when templates do not apply, or when there is none yet:
// a refill then makes it in the background (MakeTemplatesNow: it is made
// first, and a warning says when it cannot be).
func (f *Factory) Image(ctx context.Context, m *sandbox.Manager, cfg hypervisor.VMConfig) *sandbox.Image {
	if !f.on(m) {
		return nil
	}
	if ok, why := applies(m, cfg); !ok {
		f.log.Debugf("booting cold: %s", why)
		return nil
	}
	if !f.makeNow {
		key, err := keyOf(cfg, m.Config.Hypervisor.SharedFS)
		if err != nil {
			f.log.WithError(err).Warn("no vm template, booting cold")
			return nil
		}
		t, err := readTemplate(filepath.Join(templateDir(m), key.Hash()))
		if err != nil || t.Key.Hash() != key.Hash() {
			f.log.Debug("no vm template yet: booting cold, a refill makes it")
			k := NoNIC
			if len(cfg.NICs) > 0 {
				k = NewNetwork
			}
			f.startRefill(m, f.poolDir(m), k)
			return nil
		}
		return t.image()
	}
	t, err := f.ensureTemplate(ctx, m, cfg)
	if err != nil {
		f.log.WithError(err).Warn("no vm template, booting cold")
		return nil
	}
	return t.image()
}

// Failed drops a template that a VM of m could not be restored from, and
// starts a refill, which makes it again (and refills the pool).
func (f *Factory) Failed(m *sandbox.Manager, img *sandbox.Image, err error) {
	f.log.WithError(err).WithField("template", img.Dir).Debug("removing a template that a vm could not be restored from")
	if err := os.RemoveAll(img.Dir); err != nil {
		f.log.WithError(err).Debug("removing a failed template")
	}
	if !f.makeNow {
		k := NoNIC
		if len(img.MACs) > 0 {
			k = NewNetwork
		}
		f.startRefill(m, f.poolDir(m), k)
	}
}

// applies says whether a VM of configuration cfg can be restored from a
// template (templates being on), and if not, why.
func applies(m *sandbox.Manager, cfg hypervisor.VMConfig) (bool, string) {
	h := m.Config.Hypervisor
	switch {
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
	out, err := f.ensureTemplates(ctx, m)
	if err != nil {
		return out, err
	}
	if err := f.enablePool(m); err != nil {
		return out, err
	}
	_, err = f.Fill(ctx, m, Kinds...)
	return out, err
}

// ensureTemplates makes the templates of every shape that do not exist yet.
func (f *Factory) ensureTemplates(ctx context.Context, m *sandbox.Manager) ([]*Template, error) {
	var out []*Template
	for _, cfg := range shapes(m) {
		t, err := f.ensureTemplate(ctx, m, cfg)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
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
