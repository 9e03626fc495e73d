package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/network"
)

// File names inside a template directory.
const (
	templateMemory = "memory"
	templateState  = "state"
	templateMeta   = "template.json"
	// templateFormat versions the layout and the key: bump it when either
	// changes, and older templates are no longer found.
	templateFormat = 1
	// restoreEntropy is how many random bytes a restored guest gets.
	restoreEntropy = 64
	// maxTemplateNICs is the most NICs a template has: a template's taps
	// are made like those of a namespace Create makes (one).
	maxTemplateNICs = 1
)

// TemplateKey is what a template depends on: a sandbox is restored only
// from a template made with the same key. The guest image stands for the
// agent's version (the agent is the initrd's /init).
type TemplateKey struct {
	Format       int                    `json:"format"`
	GuestABI     int                    `json:"guestAbi"`
	AgentAPI     int                    `json:"agentApi"`
	QEMU         FileID                 `json:"qemu"`
	Kernel       FileID                 `json:"kernel"`
	Initrd       FileID                 `json:"initrd"`
	Machine      string                 `json:"machine"`
	Accelerator  hypervisor.Accelerator `json:"accelerator"`
	VCPUs        int                    `json:"vcpus"`
	MemoryMiB    int                    `json:"memoryMib"`
	KernelParams []string               `json:"kernelParams"`
	Debug        bool                   `json:"debug,omitempty"`
	SharedFS     string                 `json:"sharedFs"`
	NICs         int                    `json:"nics"`
}

// FileID identifies a version of a file without reading it: path, size,
// modification time and inode.
type FileID struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	Inode   uint64    `json:"inode"`
}

// Hash names the template directory of the key.
func (k TemplateKey) Hash() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func fileID(path string) (FileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileID{}, err
	}
	id := FileID{Path: path, Size: fi.Size(), ModTime: fi.ModTime().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode = st.Ino
	}
	return id, nil
}

// templateKey is the key of the templates that cfg's VM can be restored
// from.
func templateKey(cfg hypervisor.VMConfig, sharedFS string) (TemplateKey, error) {
	binary := cfg.Binary
	if binary == "" {
		binary = qemu.DefaultBinary
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return TemplateKey{}, fmt.Errorf("template key: %w", err)
	}
	k := TemplateKey{
		Format:       templateFormat,
		GuestABI:     qemu.GuestABI,
		AgentAPI:     api.APIVersion,
		Machine:      cfg.Machine,
		Accelerator:  cfg.Accelerator,
		VCPUs:        cfg.VCPUs,
		MemoryMiB:    cfg.MemoryMiB,
		KernelParams: cfg.KernelParams,
		Debug:        cfg.Debug,
		SharedFS:     sharedFS,
		NICs:         len(cfg.NICs),
	}
	if k.Machine == "" {
		k.Machine = qemu.DefaultMachine
	}
	for _, f := range []struct {
		id   *FileID
		path string
	}{{&k.QEMU, path}, {&k.Kernel, cfg.Kernel}, {&k.Initrd, cfg.Initrd}} {
		if *f.id, err = fileID(f.path); err != nil {
			return TemplateKey{}, fmt.Errorf("template key: %w", err)
		}
	}
	return k, nil
}

// Template is a saved VM that sandboxes are restored from.
//
// A template (warm start) is a guest booted to a ready
// agent, with nothing container-specific (no share mounted, no container,
// its NIC unconfigured), saved once per TemplateKey under the configured
// template directory (hypervisor.template_dir, /run/cocoon/.templates):
//
//	<template_dir>/<key hash>/memory         the guest's RAM
//	<template_dir>/<key hash>/state          QEMU's device state
//	<template_dir>/<key hash>/template.json  the key and the NICs' MACs
//
// A sandbox restores a private copy-on-write mapping of the memory and
// loads the device state instead of booting, then reseeds the guest's
// CRNG, sets its clock (Restored) and, at attach, gives its NICs their own
// MAC addresses. Templates are made by `cocoon-runtime factory init`, or
// by the first sandbox of a key that finds none (it makes the template,
// then restores from it). Anything wrong with a template means a cold
// boot with one warning, never a failed sandbox.
type Template struct {
	// Dir holds the template's files.
	Dir string `json:"-"`
	// Key is what the template was made for.
	Key TemplateKey `json:"key"`
	// MACs are the addresses of the template's NICs, which every clone
	// starts with (they are device state) until attach changes them.
	MACs []string `json:"macs,omitempty"`
	// Created is when the template was saved.
	Created time.Time `json:"created"`
}

// Remove deletes the template's files.
func (t *Template) Remove() error {
	if err := os.RemoveAll(t.Dir); err != nil {
		return fmt.Errorf("removing template %s: %w", t.Dir, err)
	}
	return nil
}

// Size returns the disk (or tmpfs) space the template's files take.
func (t *Template) Size() int64 {
	var n int64
	for _, f := range []string{templateMemory, templateState, templateMeta} {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(t.Dir, f), &st) == nil {
			n += st.Blocks * 512
		}
	}
	return n
}

// readTemplate reads the template in dir.
func readTemplate(dir string) (*Template, error) {
	t := &Template{Dir: dir}
	if err := statedir.ReadJSON(filepath.Join(dir, templateMeta), t); err != nil {
		return nil, fmt.Errorf("reading template %s: %w", dir, err)
	}
	for _, f := range []string{templateMemory, templateState} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("reading template %s: %w", dir, err)
		}
	}
	if len(t.MACs) != t.Key.NICs {
		return nil, fmt.Errorf("reading template %s: %d macs for %d nics", dir, len(t.MACs), t.Key.NICs)
	}
	return t, nil
}

// templateDir returns the configured template directory.
func (m *Manager) templateDir() string { return m.Config.Hypervisor.TemplateDir }

// templatesApply says whether a VM like cfg can be restored from a
// template, and if not, why.
func (m *Manager) templatesApply(cfg hypervisor.VMConfig) (bool, string) {
	switch {
	case !m.Config.Hypervisor.Templates:
		return false, "templates are off"
	case m.AgentDialer != nil:
		return false, "the agent is reached through a test dialer"
	case cfg.VsockCID != 0:
		return false, "vsock devices do not migrate"
	case sharesMemory(cfg):
		return false, "virtio-fs shares do not migrate"
	case cfg.VCPUs != m.Config.Hypervisor.VCPUs || cfg.MemoryMiB != m.Config.Hypervisor.MemoryMiB:
		// One template per container limit would multiply templates.
		return false, fmt.Sprintf("sized %d vcpus, %d MiB (templates have the configured %d, %d MiB)", cfg.VCPUs, cfg.MemoryMiB, m.Config.Hypervisor.VCPUs, m.Config.Hypervisor.MemoryMiB)
	case len(cfg.NICs) > maxTemplateNICs:
		return false, fmt.Sprintf("%d nics (templates have at most %d)", len(cfg.NICs), maxTemplateNICs)
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

// template returns the template that the sandbox's VM (cfg) is restored
// from, making it first when there is none; nil means a cold boot, after a
// warning when something went wrong.
func (s *Sandbox) template(ctx context.Context, cfg hypervisor.VMConfig) *Template {
	m := s.m
	if ok, why := m.templatesApply(cfg); !ok {
		if m.Config.Hypervisor.Templates {
			m.Log.WithField("sandbox", s.state.ID).Debugf("booting cold: %s", why)
		}
		return nil
	}
	t, err := m.ensureTemplate(ctx, cfg)
	if err != nil {
		m.Log.WithError(err).WithField("sandbox", s.state.ID).Warn("no vm template, booting cold")
		return nil
	}
	return t
}

// ensureTemplate finds the template of cfg's key, making it when there is
// none. Concurrent callers wait for the one that makes it.
func (m *Manager) ensureTemplate(ctx context.Context, cfg hypervisor.VMConfig) (*Template, error) {
	key, err := templateKey(cfg, m.Config.Hypervisor.SharedFS)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(m.templateDir(), key.Hash())
	if t, err := readTemplate(dir); err == nil && t.Key.Hash() == key.Hash() {
		return t, nil
	}
	if err := os.MkdirAll(m.templateDir(), 0o700); err != nil {
		return nil, fmt.Errorf("making template directory: %w", err)
	}
	lock, err := statedir.LockFile(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = lock.Unlock()
	}()
	// Made while this one waited for the lock?
	if t, err := readTemplate(dir); err == nil && t.Key.Hash() == key.Hash() {
		return t, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing a broken template: %w", err)
	}
	return m.makeTemplate(ctx, cfg, key, dir)
}

// TemplateInfo describes a template for `factory status`.
type TemplateInfo struct {
	*Template
	// Current is set for the template that sandboxes of this
	// configuration are restored from.
	Current bool
	// Err is why the template cannot be read.
	Err error
}

// templateConfigs are the VM shapes that InitTemplates makes templates
// for: without NIC and with one (a container in a namespace of its own).
func (m *Manager) templateConfigs() []hypervisor.VMConfig {
	var cfgs []hypervisor.VMConfig
	for n := 0; n <= maxTemplateNICs; n++ {
		cfg := m.vmConfig("template", "/", "/", make([]hypervisor.NIC, n))
		cfgs = append(cfgs, cfg)
	}
	return cfgs
}

// InitTemplates makes the templates of the current configuration that do
// not exist yet (one without NIC, one with one) and returns them.
func (m *Manager) InitTemplates(ctx context.Context) ([]*Template, error) {
	if m.transport() != api.TransportSerial {
		return nil, fmt.Errorf("making templates: agent transport %s: templates need the serial transport", m.transport())
	}
	if m.Config.Hypervisor.SharedFS != "9p" {
		return nil, fmt.Errorf("making templates: shared_fs %q: templates need 9p", m.Config.Hypervisor.SharedFS)
	}
	var out []*Template
	for _, cfg := range m.templateConfigs() {
		t, err := m.ensureTemplate(ctx, cfg)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Templates lists the templates in the template directory.
func (m *Manager) Templates() ([]TemplateInfo, error) {
	entries, err := os.ReadDir(m.templateDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	current := map[string]bool{}
	for _, cfg := range m.templateConfigs() {
		if k, err := templateKey(cfg, m.Config.Hypervisor.SharedFS); err == nil {
			current[k.Hash()] = true
		}
	}
	var out []TemplateInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(m.templateDir(), e.Name())
		t, err := readTemplate(dir)
		if err != nil {
			out = append(out, TemplateInfo{Template: &Template{Dir: dir}, Err: err})
			continue
		}
		out = append(out, TemplateInfo{Template: t, Current: current[e.Name()] && t.Key.Hash() == e.Name()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

// DestroyTemplates removes every template, and the template directory
// unless pooled sandboxes taken by containers still run from it (call
// DestroyPool first). Sandboxes restored from a template keep running:
// their QEMU holds the memory file open.
func (m *Manager) DestroyTemplates() error {
	entries, err := os.ReadDir(m.templateDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing templates: %w", err)
	}
	for _, e := range entries {
		if e.Name() == poolDirName {
			// Sandbox directories, with their mounts: never
			// removed recursively.
			continue
		}
		if err := os.RemoveAll(filepath.Join(m.templateDir(), e.Name())); err != nil {
			return fmt.Errorf("removing templates: %w", err)
		}
	}
	_ = os.Remove(m.templateDir()) // once empty
	return nil
}

// makeTemplate boots a VM like cfg (with the template's own directory,
// share and taps), waits for its agent and saves it into dir.
func (m *Manager) makeTemplate(ctx context.Context, cfg hypervisor.VMConfig, key TemplateKey, dir string) (_ *Template, retErr error) {
	start := time.Now()
	tmp, err := os.MkdirTemp(m.templateDir(), ".new-")
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	var (
		nsPath   string
		proxyPID int
		vm       hypervisor.VM
	)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Scaled(templateUndoTimeout))
		defer cancel()
		if vm != nil {
			if err := vm.Stop(cctx); err != nil {
				m.Log.WithError(err).Warn("stopping a template vm")
			}
		}
		if proxyPID > 0 {
			if err := proc.Terminate(cctx, proxyPID); err != nil {
				m.Log.WithError(err).Warn("stopping a template's proxy")
			}
		}
		if nsPath != "" {
			if err := network.RemoveNamespace(nsPath); err != nil {
				m.Log.WithError(err).Warn("removing a template's namespace")
			}
		}
		if err := os.RemoveAll(tmp); err != nil {
			m.Log.WithError(err).Warn("removing a template's work directory")
		}
	}()

	t := &Template{Dir: dir, Key: key}
	var nics []hypervisor.NIC
	if key.NICs > 0 {
		nsPath = filepath.Join(tmp, netnsFile)
		if err := network.NewNamespace(nsPath); err != nil {
			nsPath = ""
			return nil, fmt.Errorf("making template: %w", err)
		}
		tap, err := network.CreateTap(nsPath)
		if err != nil {
			return nil, fmt.Errorf("making template: %w", err)
		}
		defer tap.Close()
		mac, err := randomMAC()
		if err != nil {
			return nil, err
		}
		nics = append(nics, hypervisor.NIC{MAC: mac, Tap: tap})
		t.MACs = append(t.MACs, mac.String())
	}
	share := filepath.Join(tmp, sharedDir)
	if err := os.Mkdir(share, 0o700); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	vcfg := m.vmConfig("template-"+key.Hash()[:12], tmp, share, nics)
	vcfg.KernelParams = key.KernelParams
	vcfg.AgentSocket = filepath.Join(tmp, agentSocket)
	vcfg.ConsoleLog = filepath.Join(tmp, consoleLog)
	vcfg.Template = &hypervisor.Template{
		MemoryFile: filepath.Join(tmp, templateMemory),
		StateFile:  filepath.Join(tmp, templateState),
	}
	if vm, err = m.Hypervisor.Start(ctx, vcfg); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	saver, ok := vm.(hypervisor.Saver)
	if !ok {
		return nil, errors.New("making template: the hypervisor cannot save vms")
	}
	if proxyPID, err = m.startProxy(tmp, (*exec.Cmd).Start); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	opts := agentclient.Options{
		Scale:       m.Accelerator.TimeoutScale(),
		BootTimeout: m.Config.Agent.BootTimeout.Duration,
		CallTimeout: m.Config.Agent.CallTimeout.Duration,
		ConsoleLog:  vcfg.ConsoleLog,
		Log:         m.Log,
	}
	c, err := agentclient.WaitReady(ctx, agentclient.ProxyDialer{Path: filepath.Join(tmp, proxySocket)}, opts)
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	// A container made and removed before the save leaves the guest
	// kernel's lazily made state (caches, the first namespaces and
	// mounts of their kinds) in the template: ~60 ms less for the first
	// container of every clone under TCG (what QEMU translated is lost
	// with the process; the pool keeps that).
	if err := warmUp(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("making template: %w", err)
	}
	c.Close()
	// The guest's agent sees the next host (a clone's proxy) as a new
	// connection: it spots the stream IDs that start over.
	pctx, cancel := context.WithTimeout(ctx, m.Scaled(stopGrace))
	err = proc.Terminate(pctx, proxyPID)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	proxyPID = 0
	sctx, cancel := context.WithTimeout(ctx, m.Scaled(5*time.Second))
	err = saver.Save(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	vm = nil
	// QEMU created the memory file world-readable: it holds a guest's
	// memory.
	if err := os.Chmod(vcfg.Template.MemoryFile, 0o600); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	t.Created = time.Now().UTC()
	if err := statedir.WriteJSON(filepath.Join(tmp, templateMeta), t); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	// Only the template's files move into place.
	final, err := os.MkdirTemp(m.templateDir(), ".ready-")
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	for _, f := range []string{templateMemory, templateState, templateMeta} {
		if err := os.Rename(filepath.Join(tmp, f), filepath.Join(final, f)); err != nil {
			os.RemoveAll(final)
			return nil, fmt.Errorf("making template: %w", err)
		}
	}
	if err := os.Rename(final, dir); err != nil {
		os.RemoveAll(final)
		return nil, fmt.Errorf("making template: %w", err)
	}
	m.Log.WithFields(logrus.Fields{"template": dir, "took": time.Since(start).Round(time.Millisecond)}).Info("vm template made")
	return t, nil
}

// restore starts the sandbox's VM (cfg) from template t instead of
// booting it, and tells the agent it was restored: clock, CRNG.
func (s *Sandbox) restore(ctx context.Context, cfg hypervisor.VMConfig, t *Template) error {
	start := time.Now()
	cfg.Template = &hypervisor.Template{
		MemoryFile: filepath.Join(t.Dir, templateMemory),
		StateFile:  filepath.Join(t.Dir, templateState),
		Restore:    true,
	}
	cfg.KernelParams = t.Key.KernelParams
	// The NICs are the template's devices: its MACs (device state), no
	// MTU feature (the template had none; attach sets the MTU). Attach
	// gives them the sandbox's MACs.
	nics := make([]hypervisor.NIC, len(cfg.NICs))
	macs := make([]string, len(cfg.NICs))
	for i, nic := range cfg.NICs {
		mac, err := net.ParseMAC(t.MACs[i])
		if err != nil {
			return fmt.Errorf("restoring from template %s: %w", t.Dir, err)
		}
		nics[i] = hypervisor.NIC{MAC: mac, Tap: nic.Tap}
		macs[i] = mac.String()
	}
	cfg.NICs = nics
	ns := s.state.Network
	var saved NetworkState
	if ns != nil {
		saved = *ns
		if ns.Owned {
			ns.BootMAC = macs[0]
		} else {
			ns.BootMACs = macs
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.m.Scaled(3*time.Second))
	defer cancel()
	err := s.start(rctx, cfg)
	if err == nil {
		err = s.restored(rctx)
	}
	if err != nil {
		if ns != nil {
			*ns = saved
		}
		return fmt.Errorf("restoring from template %s: %w", t.Dir, err)
	}
	s.state.Template = t.Dir
	if err := s.save(); err != nil {
		return err
	}
	s.m.Log.WithFields(logrus.Fields{"sandbox": s.state.ID, "template": t.Dir, "took": time.Since(start).Round(time.Millisecond)}).Debug("sandbox restored from its template")
	return nil
}

// restored gives a restored guest the host's clock and fresh entropy.
func (s *Sandbox) restored(ctx context.Context) error {
	entropy := make([]byte, restoreEntropy)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("reseeding the guest: %w", err)
	}
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := c.Restored(ctx, &api.RestoredRequest{UnixNanos: time.Now().UnixNano(), Entropy: entropy}); err != nil {
		return fmt.Errorf("reseeding the guest: %w", err)
	}
	return nil
}
