package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/agentclient"
	"github.com/cocoon-containers/cocoon/api"
	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/network"
)

// The pool (hypervisor.template_pool) keeps sandboxes restored from their
// template and warmed up, ready to be taken by Create: Kata's VM cache.
// Under TCG most of a restored guest's first container is QEMU translating
// the guest code it runs for the first time (the agent's runc init, the
// kernel's namespace, mount and cgroup paths): translations live in the
// QEMU process and no template carries them. A pooled sandbox has created
// and removed a throwaway container, so the container that takes it finds
// that work done.
//
// A pooled sandbox is of one kind: without NIC (a container with only
// loopback, `--network none`) or with the network namespace of its own
// that Docker's libnetwork fills after create (Network.New); the pool keeps
// hypervisor.template_pool of each.
//
// Layout: the pools are under the template directory's .pool, one per
// configuration (named by its template key, so that a sandbox taken was
// made of the same kernel, initrd, QEMU, size and parameters), one sandbox
// directory per entry: every root of the host (cocoon-runtime's --root,
// containerd's namespaces) takes from the same pool. An entry is ready once it holds the file
// "ready", which names its kind; Create takes one by removing that file
// (only one remover wins),
// links the sandbox's own directory name to the entry and renames the
// sandbox in its state. The sandbox's files stay where its QEMU and proxy
// were started (their command lines name them).
const (
	poolDirName   = ".pool"
	poolReadyFile = "ready"
	poolFillLock  = ".fill.lock"
	// poolEnabled is made by `factory init` and removed by `factory
	// destroy`: a refill that starts after a destroy makes nothing.
	poolEnabled = ".enabled"
	// poolIDPrefix names the entries' sandboxes until they are taken.
	poolIDPrefix = "pool-"
	// warmupID is the throwaway container of a pooled sandbox.
	warmupID = "cocoon-warmup"
	// warmupRoot is the throwaway container's root file system, in the
	// guest's initramfs (the share is not mounted before attach): empty,
	// and no container ever sees it.
	warmupRoot = "/tmp"
	// warmupExe is where the agent's binary (the initramfs's /init) is
	// bound in the throwaway container: runc init checks that the
	// process's program exists before waiting to be started, which the
	// throwaway container never is.
	warmupExe = "/warmup"
)

// PoolKind is a kind of pooled sandbox.
type PoolKind string

const (
	// PoolNoNIC: a guest with loopback only.
	PoolNoNIC PoolKind = "no-nic"
	// PoolNewNetwork: a guest whose NIC is a tap in a network namespace
	// the sandbox made (Network.New).
	PoolNewNetwork PoolKind = "new-network"
)

// PoolKinds are the kinds the pool keeps.
var PoolKinds = []PoolKind{PoolNoNIC, PoolNewNetwork}

// poolSize is how many ready sandboxes the pool keeps: none unless
// templates are on.
func (m *Manager) poolSize() int {
	if !m.Config.Hypervisor.Templates {
		return 0
	}
	return m.Config.Hypervisor.TemplatePool
}

// poolRoot holds the pools of every configuration.
func (m *Manager) poolRoot() string { return filepath.Join(m.templateDir(), poolDirName) }

// poolDir is the pool of m's configuration: its sandboxes without NIC
// restore from the template of that key.
func (m *Manager) poolDir() string {
	key, err := templateKey(m.vmConfig("template", "/", "/", nil), m.Config.Hypervisor.SharedFS)
	if err != nil {
		// The kernel or initrd is missing: no pool (creating the
		// sandbox fails on it anyway).
		return filepath.Join(m.poolRoot(), "none")
	}
	return filepath.Join(m.poolRoot(), key.Hash()[:16])
}

// readyEntries lists the directories of the pool's ready sandboxes of
// kind k, or of every kind when k is empty.
func (m *Manager) readyEntries(k PoolKind) []string { return m.readyEntriesIn(m.poolDir(), k) }

// readyEntriesIn is readyEntries of the pool in dir.
func (m *Manager) readyEntriesIn(dir string, k PoolKind) []string {
	names, _ := filepath.Glob(filepath.Join(dir, poolIDPrefix+"*", poolReadyFile))
	var dirs []string
	for _, n := range names {
		if kind, err := os.ReadFile(n); err == nil && (k == "" || PoolKind(kind) == k) {
			dirs = append(dirs, filepath.Dir(n))
		}
	}
	return dirs
}

// FillPool makes ready sandboxes until the pool holds
// hypervisor.template_pool of each kind of kinds, and returns how many it
// made. With
// enable (`factory init`) it enables the pool first; without (the refill
// after a take), a pool that is not enabled stays empty. One filler runs
// at a time per root; others wait for it and then find the pool full.
func (m *Manager) FillPool(ctx context.Context, enable bool, kinds ...PoolKind) (int, error) {
	size := m.poolSize()
	if size == 0 {
		return 0, nil
	}
	enabled := filepath.Join(m.poolDir(), poolEnabled)
	if enable {
		if err := os.MkdirAll(m.poolDir(), 0o700); err != nil {
			return 0, fmt.Errorf("filling the sandbox pool: %w", err)
		}
		if err := os.WriteFile(enabled, nil, 0o600); err != nil {
			return 0, fmt.Errorf("filling the sandbox pool: %w", err)
		}
	}
	if _, err := os.Stat(enabled); err != nil {
		return 0, nil
	}
	lock, err := statedir.LockFile(filepath.Join(m.poolDir(), poolFillLock))
	if err != nil {
		return 0, fmt.Errorf("filling the sandbox pool: %w", err)
	}
	defer func() {
		_ = lock.Unlock()
	}()
	// Destroyed while this one waited?
	if _, err := os.Stat(enabled); err != nil {
		return 0, nil
	}
	pm := *m
	pm.Root = m.poolDir()
	pm.Config = noPool(m.Config)
	made := 0
	for _, k := range kinds {
		for len(m.readyEntries(k)) < size {
			if err := pm.makeEntry(ctx, k); err != nil {
				return made, fmt.Errorf("filling the sandbox pool: %w", err)
			}
			made++
		}
	}
	return made, nil
}

// makeEntry makes one ready sandbox of kind k in the pool (m is the
// pool's manager).
func (m *Manager) makeEntry(ctx context.Context, k PoolKind) error {
	start := time.Now()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	id := poolIDPrefix + hex.EncodeToString(b[:])
	var opts []CreateOption
	switch k {
	case PoolNoNIC:
	case PoolNewNetwork:
		opts = append(opts, WithNetwork(Network{New: true}))
	default:
		return fmt.Errorf("unknown kind of pooled sandbox %q", k)
	}
	s, err := m.Create(ctx, id, opts...)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.state.Template == "" {
		// Booted cold (templates did not apply, or failed): such a
		// sandbox is no faster to take than to make.
		_ = s.Destroy(ctx)
		return errors.New("the pool's sandbox was not restored from a template")
	}
	if err := s.warmUp(ctx); err != nil {
		_ = s.Destroy(ctx)
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, poolReadyFile), []byte(k), 0o600); err != nil {
		_ = s.Destroy(ctx)
		return err
	}
	m.Log.WithFields(logrus.Fields{"sandbox": id, "kind": k, "took": time.Since(start).Round(time.Millisecond)}).Debug("pooled sandbox ready")
	return nil
}

// warmUp creates a throwaway container in the guest and removes it: the
// agent's runc init and the guest kernel's container paths run once.
func (s *Sandbox) warmUp(ctx context.Context) error {
	c, err := s.Client(ctx)
	if err != nil {
		return err
	}
	return warmUp(ctx, c)
}

// warmUp creates the throwaway container with agent c and removes it.
func warmUp(ctx context.Context, c *agentclient.Client) error {
	spec, err := json.Marshal(warmupSpec())
	if err != nil {
		return err
	}
	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: warmupID, SpecJson: spec, Stdio: &api.StdioConfig{}}); err != nil {
		return fmt.Errorf("warming up the sandbox: %w", err)
	}
	if _, err := c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: warmupID, Force: true}); err != nil {
		return fmt.Errorf("warming up the sandbox: %w", err)
	}
	return nil
}

// warmupSpec is the throwaway container: the namespaces, mounts and masked
// paths of a typical container (runc spec's), on the guest's /tmp.
func warmupSpec() *specs.Spec {
	ro := func(dst, typ, src string, opts ...string) specs.Mount {
		return specs.Mount{Destination: dst, Type: typ, Source: src, Options: opts}
	}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: warmupRoot},
		Process: &specs.Process{
			Args: []string{warmupExe},
			Cwd:  "/",
			Env:  []string{"PATH=/"},
		},
		Hostname: warmupID,
		Mounts: []specs.Mount{
			ro("/proc", "proc", "proc"),
			ro("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
			ro("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"),
			ro("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
			ro("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
			ro("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
			ro("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
			ro(warmupExe, "bind", "/init", "rbind", "ro"),
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// poolKind is the kind of pooled sandbox that a sandbox made with o can
// be: its guest must be the configuration's size, and its network none or
// a namespace of its own; "" when none fits.
func (m *Manager) poolKind(o createOptions) PoolKind {
	if m.poolSize() == 0 {
		return ""
	}
	h := m.Config.Hypervisor
	if (o.size.VCPUs != 0 && o.size.VCPUs != h.VCPUs) || (o.size.MemoryMiB != 0 && o.size.MemoryMiB != h.MemoryMiB) {
		return ""
	}
	switch n := o.network; {
	case n.New:
		return PoolNewNetwork
	case n.NSPath != "" && !n.Host:
		cfg, err := network.Scan(n.NSPath)
		if err != nil || !cfg.Empty() {
			return ""
		}
	}
	return PoolNoNIC
}

// take gives sandbox id a ready sandbox of the pool, or nil (the caller
// boots or restores one). OnPoolTake runs once one was taken.
func (m *Manager) take(ctx context.Context, id string, o createOptions) *Sandbox {
	k := m.poolKind(o)
	if k == "" {
		return nil
	}
	for _, dir := range m.readyEntries(k) {
		if os.Remove(filepath.Join(dir, poolReadyFile)) != nil {
			continue // another command took it
		}
		s, err := m.adopt(ctx, id, dir, o)
		if err != nil {
			m.Log.WithError(err).WithField("sandbox", id).Warn("a pooled sandbox could not be taken; it is destroyed")
			continue
		}
		m.Log.WithFields(logrus.Fields{"sandbox": id, "pooled": filepath.Base(dir)}).Debug("sandbox taken from the pool")
		if m.OnPoolTake != nil {
			m.OnPoolTake(k)
		}
		return s
	}
	return nil
}

// adopt makes the pooled sandbox in dir sandbox id: its name links to dir,
// its state takes the new ID, its processes join o's host cgroup, and its
// agent answers. A pooled sandbox that fails any of it is destroyed.
func (m *Manager) adopt(ctx context.Context, id, dir string, o createOptions) (_ *Sandbox, retErr error) {
	s := &Sandbox{m: m, dir: dir}
	if err := statedir.ReadJSON(filepath.Join(dir, stateFile), &s.state); err != nil {
		_ = removeUnmounted(dir)
		return nil, err
	}
	vm, err := m.Hypervisor.Attach(ctx, s.state.VM)
	if err != nil {
		s.destroyPooled(ctx)
		return nil, err
	}
	s.vm = vm
	defer func() {
		if retErr != nil {
			s.destroyPooled(ctx)
		}
	}()
	s.state.ID = id
	if err := os.Symlink(dir, m.dir(id)); err != nil {
		return nil, err
	}
	if err := s.createCgroup(o.cgroup); err != nil {
		return nil, err
	}
	if s.cgroup != nil {
		for _, pid := range []int{s.state.VM.PID, s.state.ProxyPID} {
			if pid > 0 {
				if err := s.cgroup.Add(pid); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	if err := s.Health(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// destroyPooled destroys a pooled sandbox that could not be taken.
func (s *Sandbox) destroyPooled(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.m.Scaled(undoTimeout))
	defer cancel()
	if err := s.teardown(cctx, false); err != nil {
		s.m.Log.WithError(err).Warn("destroying a pooled sandbox")
	}
}

// DestroyPool disables every pool and destroys their ready sandboxes
// (those taken belong to their containers); a pool's directory goes with
// its last sandbox.
func (m *Manager) DestroyPool(ctx context.Context) error {
	dirs, _ := filepath.Glob(filepath.Join(m.poolRoot(), "*"))
	var errs []error
	for _, dir := range dirs {
		if err := m.destroyPool(ctx, dir); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(m.poolRoot()) // once empty
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying the sandbox pool: %w", err)
	}
	return nil
}

// destroyPool disables the pool in dir and destroys its ready sandboxes.
func (m *Manager) destroyPool(ctx context.Context, dir string) error {
	// After a filler that runs.
	lock, err := statedir.LockFile(filepath.Join(dir, poolFillLock))
	if err != nil {
		return err
	}
	pm := *m
	pm.Root = dir
	var errs []error
	if err := os.Remove(filepath.Join(dir, poolEnabled)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, entry := range pm.readyEntriesIn(dir, "") {
		if os.Remove(filepath.Join(entry, poolReadyFile)) != nil {
			continue
		}
		s, err := pm.Load(ctx, filepath.Base(entry))
		if err == nil {
			err = s.Destroy(ctx) // its agent powers off: no warning of a killed QEMU
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	_ = lock.Unlock()
	removeDisabledPool(dir)
	return errors.Join(errs...)
}

// removeDisabledPool removes pool directory dir once `factory destroy`
// has disabled it and its last sandbox is gone, and then the pools'
// directory when no other pool is left.
func removeDisabledPool(dir string) {
	if filepath.Base(filepath.Dir(dir)) != poolDirName {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil || !onlyLocks(entries) {
		return
	}
	_ = os.RemoveAll(dir)
	_ = os.Remove(filepath.Dir(dir))
}

// noPool is cfg without a pool: the pool's own sandboxes are restored,
// never taken from it.
func noPool(cfg *config.Config) *config.Config {
	c := *cfg
	c.Hypervisor.TemplatePool = 0
	return &c
}

// onlyLocks says whether a directory's entries are lock files only: no
// sandbox is left.
func onlyLocks(entries []os.DirEntry) bool {
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			return false
		}
	}
	return true
}

// PoolStatus counts the pool's ready sandboxes of each kind, and the
// others: taken that still run, or being made.
func (m *Manager) PoolStatus() (ready map[PoolKind]int, other int) {
	dirs, _ := filepath.Glob(filepath.Join(m.poolDir(), poolIDPrefix+"*"))
	ready = map[PoolKind]int{}
	n := 0
	for _, k := range PoolKinds {
		ready[k] = len(m.readyEntries(k))
		n += ready[k]
	}
	return ready, len(dirs) - n
}
