package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// File names inside a template directory.
const (
	templateMemory = "memory"
	templateState  = "state"
	templateMeta   = "template.json"
	// maxNICs is the most NICs a template has: a template's tap is made
	// like that of a namespace a sandbox makes (one).
	maxNICs = 1
)

// Template is a guest booted to a ready agent, with nothing
// container-specific (no share mounted, no container, its NIC
// unconfigured), warmed up and saved once per Key. A VM restored from it
// maps its memory privately (copy-on-write: the template's pages stay
// shared between clones and are never written) and loads its device state
// instead of booting; the sandbox then reseeds the guest's CRNG, sets its
// clock and, at attach, gives its NICs their own MAC addresses.
type Template struct {
	// Dir holds the template's files.
	Dir string `json:"-"`
	// Key is what the template was made for.
	Key Key `json:"key"`
	// MACs are the addresses of the template's NICs, which every clone
	// starts with (they are device state) until attach changes them.
	MACs []string `json:"macs,omitempty"`
	// Created is when the template was saved.
	Created time.Time `json:"created"`
}

// image is the template as a sandbox restores it.
func (t *Template) image() *sandbox.Image {
	return &sandbox.Image{
		Dir:          t.Dir,
		Memory:       filepath.Join(t.Dir, templateMemory),
		State:        filepath.Join(t.Dir, templateState),
		KernelParams: t.Key.KernelParams,
		MACs:         t.MACs,
	}
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

// ensureTemplate finds the template of cfg's key, making it when there is
// none. Concurrent callers, in any process, wait for the one that makes it.
func (f *Factory) ensureTemplate(ctx context.Context, m *sandbox.Manager, cfg hypervisor.VMConfig) (*Template, error) {
	key, err := keyOf(cfg, m.Config.Hypervisor.SharedFS)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(templateDir(m), key.Hash())
	if t, err := readTemplate(dir); err == nil && t.Key.Hash() == key.Hash() {
		return t, nil
	}
	if err := os.MkdirAll(templateDir(m), 0o700); err != nil {
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
	return f.makeTemplate(ctx, m, key, dir)
}

// makeTemplate boots a sandbox of key's shape to be saved (sandbox.AsImage,
// in a directory of its own under the template directory), warms it up and
// saves it into dir. A container made and removed before the save leaves
// the guest kernel's lazily made state (caches, the first namespaces and
// mounts of their kinds) in the template: ~60 ms less for the first
// container of every clone under TCG.
func (f *Factory) makeTemplate(ctx context.Context, m *sandbox.Manager, key Key, dir string) (_ *Template, retErr error) {
	start := time.Now()
	work, err := os.MkdirTemp(templateDir(m), ".new-")
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	defer os.RemoveAll(work)
	tm := *m
	tm.Root, tm.Factory = work, nil
	opts := []sandbox.CreateOption{sandbox.AsImage(filepath.Join(work, templateMemory), filepath.Join(work, templateState))}
	if key.NICs > 0 {
		opts = append(opts, sandbox.WithNetwork(sandbox.Network{New: true}))
	}
	sb, err := tm.Create(ctx, "template-"+key.Hash()[:12], opts...)
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	saved := false
	defer func() {
		if !saved {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.Scaled(undoTimeout))
			defer cancel()
			if err := sb.Kill(cctx); err != nil {
				f.log.WithError(err).Warn("stopping a template's vm")
			}
		}
	}()
	if err := sb.WarmUp(ctx); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	macs, err := sb.SaveImage(ctx)
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	saved = true
	t := &Template{Dir: dir, Key: key, MACs: macs, Created: time.Now().UTC()}
	if err := statedir.WriteJSON(filepath.Join(work, templateMeta), t); err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	// Only the template's files move into place.
	final, err := os.MkdirTemp(templateDir(m), ".ready-")
	if err != nil {
		return nil, fmt.Errorf("making template: %w", err)
	}
	for _, name := range []string{templateMemory, templateState, templateMeta} {
		if err := os.Rename(filepath.Join(work, name), filepath.Join(final, name)); err != nil {
			os.RemoveAll(final)
			return nil, fmt.Errorf("making template: %w", err)
		}
	}
	if err := os.Rename(final, dir); err != nil {
		os.RemoveAll(final)
		return nil, fmt.Errorf("making template: %w", err)
	}
	f.log.WithFields(logrus.Fields{"template": dir, "took": time.Since(start).Round(time.Millisecond)}).Info("vm template made")
	return t, nil
}

// TemplateInfo describes a template for `factory status`.
type TemplateInfo struct {
	*Template
	// Current is set for a template that sandboxes of this configuration
	// are restored from.
	Current bool
	// Err is why the template cannot be read.
	Err error
}

// Templates lists the templates in the template directory.
func Templates(m *sandbox.Manager) ([]TemplateInfo, error) {
	entries, err := os.ReadDir(templateDir(m))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing templates: %w", err)
	}
	current := map[string]bool{}
	for _, cfg := range shapes(m) {
		if k, err := keyOf(cfg, m.Config.Hypervisor.SharedFS); err == nil {
			current[k.Hash()] = true
		}
	}
	var out []TemplateInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(templateDir(m), e.Name())
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

// destroyTemplates removes every template, and the template directory
// unless pooled sandboxes taken by containers still run from it.
func destroyTemplates(m *sandbox.Manager) error {
	entries, err := os.ReadDir(templateDir(m))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing templates: %w", err)
	}
	for _, e := range entries {
		if e.Name() == poolDirName {
			// Sandbox directories, with their mounts: never removed
			// recursively.
			continue
		}
		if err := os.RemoveAll(filepath.Join(templateDir(m), e.Name())); err != nil {
			return fmt.Errorf("removing templates: %w", err)
		}
	}
	_ = os.Remove(templateDir(m)) // once empty
	return nil
}
