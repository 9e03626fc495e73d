package factory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/network"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// The pool (hypervisor.template_pool) keeps sandboxes restored from their
// template and warmed up, ready to be taken: Kata's VM cache. Under TCG most
// of a restored guest's first container is QEMU translating the guest code
// it runs for the first time (the agent's runc init, the kernel's
// namespace, mount and cgroup paths): translations live in the QEMU process
// and no template carries them. A pooled sandbox has created and removed a
// throwaway container (Sandbox.WarmUp), so the container that takes it
// finds that work done.
//
// A pooled sandbox is of one Kind. The pools are under the template
// directory's .pool, one per configuration (named by its template key, so
// that a sandbox taken was made of the same kernel, initrd, QEMU, size and
// parameters), one sandbox directory per entry: every root of the host
// (cocoon-runtime's --root, containerd's namespaces) takes from the same
// pool. An entry is ready once it holds the file "ready", which names its
// kind; Take claims one by renaming that file "taken" (only one renamer
// wins), and the manager that takes it adopts it (sandbox.Manager.Adopt):
// the sandbox's files stay where its QEMU and proxy were started (their
// command lines name them). An entry with neither file is being made, or
// was left by a refill that died: the next refill destroys it.
const (
	poolDirName = ".pool"
	readyFile   = "ready"
	takenFile   = "taken"
	fillLock    = ".fill.lock"
	// disabledFile is made by `factory destroy` and removed by `factory
	// init`: a pool is enabled unless it holds it.
	disabledFile = ".disabled"
	// failedFile records a refill's last failure: refills wait failBackoff
	// after one before trying again.
	failedFile = ".failed"
	// fillLog receives the refills' log lines.
	fillLog = "fill.log"
	// entryPrefix names the entries' sandboxes until they are taken.
	entryPrefix = "pool-"
)

// Kind is a kind of pooled sandbox.
type Kind string

const (
	// NoNIC: a guest with loopback only (`--network none`, a host-network
	// pod, a container without hooks in a new namespace).
	NoNIC Kind = "no-nic"
	// NewNetwork: a guest whose NIC is a tap in a network namespace the
	// sandbox made (sandbox.Network.New): every Docker container.
	NewNetwork Kind = "new-network"
)

// Kinds are the kinds the pool keeps, hypervisor.template_pool of each.
var Kinds = []Kind{NoNIC, NewNetwork}

// poolSize is how many ready sandboxes of each kind the pool keeps: none
// unless templates are on.
func (f *Factory) poolSize(m *sandbox.Manager) int {
	if !f.on(m) {
		return 0
	}
	return m.Config.Hypervisor.TemplatePool
}

// poolRoot holds the pools of every configuration.
func poolRoot(m *sandbox.Manager) string { return filepath.Join(templateDir(m), poolDirName) }

// poolDir is the pool of m's configuration, named once per factory from
// the key of its templates without NIC (a factory serves one
// configuration).
func (f *Factory) poolDir(m *sandbox.Manager) string {
	f.once.Do(func() {
		if k, err := keyOf(m.VMConfig("template", "/", "/", nil), m.Config.Hypervisor.SharedFS); err == nil {
			f.poolKey = k.Hash()[:16]
		}
	})
	if f.poolKey == "" {
		// The kernel or initrd is missing: no pool (a sandbox fails on
		// them anyway).
		return filepath.Join(poolRoot(m), "none")
	}
	return filepath.Join(poolRoot(m), f.poolKey)
}

// readyEntries lists the directories of the ready sandboxes of kind k in
// the pool in dir, or of every kind when k is empty.
func readyEntries(dir string, k Kind) []string {
	names, _ := filepath.Glob(filepath.Join(dir, entryPrefix+"*", readyFile))
	var dirs []string
	for _, n := range names {
		if kind, err := os.ReadFile(n); err == nil && (k == "" || Kind(kind) == k) {
			dirs = append(dirs, filepath.Dir(n))
		}
	}
	return dirs
}

// kindOf is the kind of pooled sandbox that a sandbox made with o can be:
// its guest must be the configuration's size, and its network none or a
// namespace of its own; "" when none fits.
func kindOf(m *sandbox.Manager, o sandbox.Options) Kind {
	h := m.Config.Hypervisor
	if (o.Size.VCPUs != 0 && o.Size.VCPUs != h.VCPUs) || (o.Size.MemoryMiB != 0 && o.Size.MemoryMiB != h.MemoryMiB) {
		return ""
	}
	switch n := o.Network; {
	case n.New:
		return NewNetwork
	case n.NSPath != "" && !n.Host:
		cfg, err := network.Scan(n.NSPath)
		if err != nil || !cfg.Empty() {
			return ""
		}
	}
	return NoNIC
}

// Take gives sandbox id of m a ready sandbox of the pool that fits o, or
// nil. A ready sandbox found dead or hung is destroyed, and the next one
// tried. Whenever the pool is found short of its size (a sandbox taken,
// none there, one found dead), a refill starts: one bad sandbox never
// turns warm starts off for good.
func (f *Factory) Take(ctx context.Context, m *sandbox.Manager, id string, o sandbox.Options) *sandbox.Sandbox {
	size := f.poolSize(m)
	if size == 0 || m.AgentDialer != nil {
		return nil
	}
	k := kindOf(m, o)
	if k == "" {
		return nil
	}
	dir := f.poolDir(m)
	defer func() {
		if len(readyEntries(dir, k)) < size {
			f.startRefill(m, dir, k)
		}
	}()
	for _, entry := range readyEntries(dir, k) {
		if os.Rename(filepath.Join(entry, readyFile), filepath.Join(entry, takenFile)) != nil {
			continue // another command took it
		}
		sb, err := m.Adopt(ctx, id, entry, o)
		if err != nil {
			f.log.WithError(err).WithField("sandbox", id).Warn("a ready sandbox of the pool could not be taken (it is destroyed)")
			continue
		}
		f.log.WithFields(logrus.Fields{"sandbox": id, "pooled": filepath.Base(entry)}).Debug("sandbox taken from the pool")
		return sb
	}
	return nil
}

// Released removes the pool that dir, a sandbox taken from it, was in once
// `factory destroy` has disabled it and its last sandbox is gone, and then
// the pools' directory when no other pool is left.
func (f *Factory) Released(dir string) {
	pool := filepath.Dir(dir)
	if filepath.Base(filepath.Dir(pool)) != poolDirName {
		return
	}
	if _, err := os.Stat(filepath.Join(pool, disabledFile)); err != nil {
		return
	}
	removeEmptyPool(pool)
}

// removeEmptyPool removes the pool in dir if no sandbox is left in it, and
// the pools' directory if no pool is left.
func removeEmptyPool(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), entryPrefix) {
			return
		}
	}
	_ = os.RemoveAll(dir)
	_ = os.Remove(filepath.Dir(dir))
}

// enablePool enables m's pool (`factory init`).
func (f *Factory) enablePool(m *sandbox.Manager) error {
	dir := f.poolDir(m)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("enabling the sandbox pool: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, disabledFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("enabling the sandbox pool: %w", err)
	}
	return nil
}

// Fill makes ready sandboxes until the pool holds hypervisor.template_pool
// of each kind of kinds, and returns how many it made. One filler runs at
// a time per pool; others wait for it and then find the pool full. The
// filler first destroys what a filler that died left (entries neither
// ready nor taken) and ready sandboxes that died. A disabled pool stays
// empty.
func (f *Factory) Fill(ctx context.Context, m *sandbox.Manager, kinds ...Kind) (int, error) {
	size := f.poolSize(m)
	if size == 0 {
		return 0, nil
	}
	dir := f.poolDir(m)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("filling the sandbox pool: %w", err)
	}
	lock, err := statedir.LockFile(filepath.Join(dir, fillLock))
	if err != nil {
		return 0, fmt.Errorf("filling the sandbox pool: %w", err)
	}
	defer func() {
		_ = lock.Unlock()
	}()
	if _, err := os.Stat(filepath.Join(dir, disabledFile)); err == nil {
		return 0, nil
	}
	pm := f.poolManager(m, dir)
	f.sweep(ctx, pm)
	made := 0
	for _, k := range kinds {
		for len(readyEntries(dir, k)) < size {
			if err := f.makeEntry(ctx, pm, k); err != nil {
				_ = os.WriteFile(filepath.Join(dir, failedFile), []byte(err.Error()+"\n"), 0o600)
				return made, fmt.Errorf("filling the sandbox pool: %w", err)
			}
			made++
		}
	}
	_ = os.Remove(filepath.Join(dir, failedFile))
	return made, nil
}

// poolManager is the manager of the pool's own sandboxes: under its
// directory, restored from the factory's templates, never taken from the
// pool.
func (f *Factory) poolManager(m *sandbox.Manager, dir string) *sandbox.Manager {
	pm := *m
	pm.Root, pm.Factory = dir, imagesOnly{f}
	return &pm
}

// imagesOnly is a factory that gives images but no ready sandboxes: the
// pool's own.
type imagesOnly struct{ *Factory }

func (imagesOnly) Take(context.Context, *sandbox.Manager, string, sandbox.Options) *sandbox.Sandbox {
	return nil
}

// sweep destroys, with the fill lock held, the entries that a filler that
// died left half made (no filler else runs) and the ready sandboxes whose
// VMM died or hangs.
func (f *Factory) sweep(ctx context.Context, pm *sandbox.Manager) {
	entries, _ := filepath.Glob(filepath.Join(pm.Root, entryPrefix+"*"))
	for _, entry := range entries {
		_, rerr := os.Stat(filepath.Join(entry, readyFile))
		_, terr := os.Stat(filepath.Join(entry, takenFile))
		switch {
		case terr == nil:
			continue // a container's
		case rerr == nil:
			if f.healthy(ctx, pm, entry) {
				continue
			}
			// Claimed like a take, so that no command takes it meanwhile.
			if os.Rename(filepath.Join(entry, readyFile), filepath.Join(entry, takenFile)) != nil {
				continue
			}
		}
		f.destroyEntry(ctx, pm, entry)
	}
}

// healthy tells whether the pooled sandbox in entry serves.
func (f *Factory) healthy(ctx context.Context, pm *sandbox.Manager, entry string) bool {
	sb, err := pm.Load(ctx, filepath.Base(entry))
	if err != nil {
		return false
	}
	defer sb.Close()
	return sb.Health(ctx) == nil
}

// destroyEntry destroys the pooled sandbox in entry, whatever state it is
// in.
func (f *Factory) destroyEntry(ctx context.Context, pm *sandbox.Manager, entry string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pm.Scaled(undoTimeout))
	defer cancel()
	sb, err := pm.Load(cctx, filepath.Base(entry))
	if err == nil {
		// A sandbox that serves powers off (no killed QEMU to warn of);
		// one that does not is killed.
		if sb.Health(cctx) == nil {
			err = sb.Destroy(cctx)
		} else {
			err = sb.Kill(cctx)
		}
	} else if errors.Is(err, sandbox.ErrNotFound) {
		// Made before its state: nothing runs.
		err = os.RemoveAll(entry)
	}
	if err != nil {
		f.log.WithError(err).WithField("sandbox", entry).Warn("destroying a pooled sandbox")
		return
	}
	f.log.WithField("sandbox", entry).Debug("pooled sandbox destroyed")
}

// makeEntry makes one ready sandbox of kind k in the pool of manager pm.
func (f *Factory) makeEntry(ctx context.Context, pm *sandbox.Manager, k Kind) error {
	start := time.Now()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := entryPrefix + hex.EncodeToString(b[:])
	var opts []sandbox.CreateOption
	switch k {
	case NoNIC:
	case NewNetwork:
		opts = append(opts, sandbox.WithNetwork(sandbox.Network{New: true}))
	default:
		return fmt.Errorf("unknown kind of pooled sandbox %q", k)
	}
	sb, err := pm.Create(ctx, id, opts...)
	if err != nil {
		return err
	}
	defer sb.Close()
	if sb.State().Template == "" {
		// Booted cold (templates did not apply, or failed): such a
		// sandbox is no faster to take than to make.
		_ = sb.Destroy(ctx)
		return errors.New("the pool's sandbox was not restored from a template")
	}
	if err := sb.WarmUp(ctx); err != nil {
		_ = sb.Destroy(ctx)
		return err
	}
	if err := os.WriteFile(filepath.Join(sb.Dir(), readyFile), []byte(k), 0o600); err != nil {
		_ = sb.Destroy(ctx)
		return err
	}
	f.log.WithFields(logrus.Fields{"sandbox": id, "kind": k, "took": time.Since(start).Round(time.Millisecond)}).Debug("pooled sandbox ready")
	return nil
}

// destroyPools disables every pool and destroys their ready sandboxes (and
// what a refill left); a pool's directory goes with its last sandbox.
func (f *Factory) destroyPools(ctx context.Context, m *sandbox.Manager) error {
	dirs, _ := filepath.Glob(filepath.Join(poolRoot(m), "*"))
	var errs []error
	for _, dir := range dirs {
		if err := f.destroyPool(ctx, m, dir); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(poolRoot(m)) // once empty
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying the sandbox pool: %w", err)
	}
	return nil
}

// destroyPool disables the pool in dir and destroys its sandboxes but
// those taken.
func (f *Factory) destroyPool(ctx context.Context, m *sandbox.Manager, dir string) error {
	if err := os.WriteFile(filepath.Join(dir, disabledFile), nil, 0o600); err != nil {
		return err
	}
	// After a filler that runs.
	lock, err := statedir.LockFile(filepath.Join(dir, fillLock))
	if err != nil {
		return err
	}
	pm := f.poolManager(m, dir)
	entries, _ := filepath.Glob(filepath.Join(dir, entryPrefix+"*"))
	for _, entry := range entries {
		ready := filepath.Join(entry, readyFile)
		if _, err := os.Stat(ready); err == nil {
			if os.Rename(ready, filepath.Join(entry, takenFile)) != nil {
				continue // just taken
			}
		} else if _, err := os.Stat(filepath.Join(entry, takenFile)); err == nil {
			continue // a container's
		}
		f.destroyEntry(ctx, pm, entry)
	}
	_ = lock.Unlock()
	removeEmptyPool(dir)
	return nil
}

// PoolStatus is what `factory status` says of the pool.
type PoolStatus struct {
	// Size is hypervisor.template_pool: how many of each kind it keeps.
	Size int
	// Ready counts the ready sandboxes of each kind.
	Ready map[Kind]int
	// Other counts the others: taken and still running, or being made.
	Other int
	// Disabled is set after `factory destroy`.
	Disabled bool
	// LastError is the last refill's failure, if the last one failed.
	LastError string
}

// Status tells how full m's pool is.
func (f *Factory) Status(m *sandbox.Manager) PoolStatus {
	dir := f.poolDir(m)
	st := PoolStatus{Size: f.poolSize(m), Ready: map[Kind]int{}}
	n := 0
	for _, k := range Kinds {
		st.Ready[k] = len(readyEntries(dir, k))
		n += st.Ready[k]
	}
	dirs, _ := filepath.Glob(filepath.Join(dir, entryPrefix+"*"))
	st.Other = len(dirs) - n
	if _, err := os.Stat(filepath.Join(dir, disabledFile)); err == nil {
		st.Disabled = true
	}
	if b, err := os.ReadFile(filepath.Join(dir, failedFile)); err == nil {
		st.LastError = strings.TrimSpace(string(b))
	}
	return st
}
