// Package hostcgroup makes a sandbox's host cgroups: the one that the
// caller named in the spec's linux.cgroupsPath, which holds the container's
// limits exactly as runc writes them (Exact), and the overhead cgroup
// beside it (VMMPath), which holds the VM's host processes (QEMU,
// cocoon-proxy, virtiofsd) with the container's limits plus what the VM
// costs beyond them (Resources). A VM cannot run within the container's own
// memory limit: QEMU alone charges its touched guest RAM, TCG's code cache
// and its device state to one memory cgroup (v1 charges a process's mm as a
// whole, v2's threaded mode has no memory controller), ~170 MiB for an idle
// 1 GiB guest. So whatever reads the caller's cgroup (docker stats, checks
// of the limits, monitoring) sees the container's limits, and the VM is
// still accounted and bounded in the sibling, under the same parent (a
// Kubernetes pod's cgroup, which carries the RuntimeClass's overhead), as
// Kata Containers' overhead cgroup.
//
// Both drivers are handled: cgroupfs paths ("/docker/<id>", or relative to
// the caller's own cgroup) and systemd's "slice:prefix:name". Where systemd
// does not run, a systemd path is created with cgroupfs at the path systemd
// would have used (/system.slice/prefix-name.scope). cgroup v1, v2 and the
// hybrid layout (v1 controllers plus v2 at /sys/fs/cgroup/unified) are all
// handled by runc's cgroup managers (github.com/opencontainers/cgroups).
package hostcgroup

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

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices" // device rules for the managers
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Spec says which cgroup to create and what to limit.
type Spec struct {
	// Path is the spec's linux.cgroupsPath.
	Path string
	// Systemd says the caller uses the systemd driver (runc's
	// --systemd-cgroup, the runc shim's SystemdCgroup option). A path of
	// the form "slice:prefix:name" is taken as systemd's either way.
	Systemd bool
	// Resources are the spec's linux.resources; nil for none.
	Resources *specs.LinuxResources
	// GuestMemoryMiB is the VM's memory size, for the memory overhead.
	GuestMemoryMiB int
}

// State is what is persisted so that another process can find the
// cgroups again (Load).
type State struct {
	// Path is the cgroup as given in the spec.
	Path string `json:"path"`
	// Systemd is set when a systemd manager (a transient scope) holds it.
	Systemd bool `json:"systemd,omitempty"`
	// Dir is the cgroup's path under each hierarchy's root (relative to
	// the creator's own cgroup when Path is relative).
	Dir string `json:"dir"`
	// Paths are the cgroup's directories, by controller ("" is the v2 one).
	Paths map[string]string `json:"paths"`
	// Parents are the ancestors that Create made (/docker of
	// /docker/<id>), deepest first: Destroy removes those left empty.
	Parents []string `json:"parents,omitempty"`
	// VMM is the overhead cgroup beside the caller's (VMMPath), in the
	// caller's State only.
	VMM *State `json:"vmm,omitempty"`
}

// Cgroup is a sandbox's host cgroups: the caller's, at linux.cgroupsPath,
// with the container's limits and its relays (the processes the caller
// knows by PID); and the overhead cgroup beside it, with the VM.
type Cgroup struct {
	caller, vmm *group
}

// group is one cgroup in every hierarchy.
type group struct {
	st State
	m  cgroups.Manager
	// res are the limits to set once the cgroup exists.
	res *cgroups.Resources
	// applied is set once the cgroup exists: at Create for cgroupfs, at
	// the first Add for a systemd scope (a scope is made with its first
	// process).
	applied bool
	// overhead is set for the overhead cgroup, whose CPU quota (the
	// container's plus the VM's) is held to its ancestors' (capCPUQuota).
	overhead bool
}

// Create creates the caller's cgroup and the overhead cgroup beside it, and
// writes their limits. No process joins them, the caller least of all (a
// long-lived shim must never be charged for a pod): the sandbox's
// processes are placed with Add and AddRelay, by PID, before they run
// (proc.StartPlaced), so that every page they touch is charged where they
// run. Under systemd a scope is made with the first process added.
func Create(spec Spec) (_ *Cgroup, retErr error) {
	if spec.Path == "" {
		return nil, errors.New("creating host cgroup: no cgroups path")
	}
	vmmPath, err := VMMPath(spec.Path, spec.Systemd)
	if err != nil {
		return nil, fmt.Errorf("creating host cgroup %s: %w", spec.Path, err)
	}
	caller, err := newGroup(spec.Path, spec.Systemd, Exact(spec.Resources), false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			caller.remove()
		}
	}()
	vmm, err := newGroup(vmmPath, spec.Systemd, Resources(spec.Resources, spec.GuestMemoryMiB), true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			vmm.remove()
		}
	}()
	return &Cgroup{caller: caller, vmm: vmm}, nil
}

// newGroup makes the cgroup at path with the limits res: at once with
// cgroupfs, with its first process under systemd; overhead marks the
// overhead cgroup.
func newGroup(path string, useSystemd bool, res *cgroups.Resources, overhead bool) (*group, error) {
	cfg, dir, err := config(path, useSystemd)
	if err != nil {
		return nil, fmt.Errorf("creating host cgroup %s: %w", path, err)
	}
	cfg.Resources = res
	m, err := manager.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating host cgroup %s: %w", path, err)
	}
	g := &group{m: m, res: res, overhead: overhead}
	var parents []string
	if !cfg.Systemd {
		parents = missingParents(m.GetPaths())
	}
	g.st = State{Path: path, Systemd: cfg.Systemd, Dir: dir, Parents: parents}
	if cfg.Systemd {
		return g, nil
	}
	if err := g.apply(-1); err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

// remove removes the cgroup and the parents made for it, for a Create that
// failed.
func (g *group) remove() {
	_ = g.m.Destroy()
	removeEmpty(g.st.Parents)
}

// apply creates the cgroup in every hierarchy (the v2 one too on a hybrid
// host), with pid in it unless it is -1, and writes the limits.
func (g *group) apply(pid int) error {
	if err := g.m.Apply(pid); err != nil {
		return fmt.Errorf("creating host cgroup %s: %w", g.st.Path, err)
	}
	g.applied = true
	g.st.Paths = g.dirs()
	g.capCPUQuota(g.res)
	if err := g.m.Set(g.res); err != nil {
		return fmt.Errorf("setting the limits of host cgroup %s: %w", g.st.Path, err)
	}
	return nil
}

// VMMPath is the overhead cgroup of the caller's cgroup path: beside it,
// under the same parent, with ".vmm" added to its name ("/docker/<id>" gives
// "/docker/<id>.vmm", "system.slice:docker:<id>" gives the scope
// docker-<id>.vmm.scope, a slice "a-b.slice" gives "a-b.vmm.slice"). A dot,
// not a dash: under systemd a dash in a slice's name makes it a child, and
// a child would be held by the caller's memory limit.
func VMMPath(path string, useSystemd bool) (string, error) {
	const suffix = ".vmm"
	withSuffix := func(name string) string {
		for _, ext := range []string{".slice", ".scope"} {
			if base, ok := strings.CutSuffix(name, ext); ok {
				return base + suffix + ext
			}
		}
		return name + suffix
	}
	sdPath := !strings.HasPrefix(path, "/") && strings.Count(path, ":") == 2
	if !useSystemd && !sdPath {
		clean := filepath.Clean(path)
		if clean == "/" || clean == "." {
			return "", errors.New("refusing the root cgroup")
		}
		return filepath.Join(filepath.Dir(clean), withSuffix(filepath.Base(clean))), nil
	}
	parts := strings.Split(path, ":")
	if len(parts) != 3 || parts[2] == "" {
		return "", fmt.Errorf("systemd cgroups path %q is not slice:prefix:name", path)
	}
	return parts[0] + ":" + parts[1] + ":" + withSuffix(parts[2]), nil
}

// config turns a cgroups path into runc's cgroup configuration, and says
// where the cgroup lies under the hierarchies' root.
func config(path string, useSystemd bool) (*cgroups.Cgroup, string, error) {
	sdPath := !strings.HasPrefix(path, "/") && strings.Count(path, ":") == 2
	if !useSystemd && !sdPath {
		// A relative path is relative to the caller's own cgroup, in
		// each hierarchy: runc's managers resolve it.
		dir := path
		if filepath.IsAbs(dir) {
			dir = filepath.Clean(dir)
			if dir == "/" {
				return nil, "", errors.New("refusing the root cgroup")
			}
		}
		return &cgroups.Cgroup{Path: dir}, dir, nil
	}
	parts := strings.Split(path, ":")
	if len(parts) != 3 {
		return nil, "", fmt.Errorf("systemd cgroups path %q is not slice:prefix:name", path)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice == "" {
		slice = "system.slice"
	}
	if name == "" {
		return nil, "", fmt.Errorf("systemd cgroups path %q has no name", path)
	}
	sliceDir, err := systemd.ExpandSlice(slice)
	if err != nil {
		return nil, "", err
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		unit = name + ".scope"
		if prefix != "" {
			unit = prefix + "-" + unit
		}
	}
	dir := filepath.Join(sliceDir, unit)
	if systemd.IsRunningSystemd() {
		return &cgroups.Cgroup{Parent: slice, ScopePrefix: prefix, Name: name, Systemd: true}, dir, nil
	}
	// No systemd to ask: the same cgroup, made with cgroupfs.
	return &cgroups.Cgroup{Path: dir}, dir, nil
}

// Load finds the cgroups that Create made, possibly in another process.
func Load(st State) (*Cgroup, error) {
	caller, err := loadGroup(st)
	if err != nil {
		return nil, err
	}
	c := &Cgroup{caller: caller}
	if st.VMM != nil {
		if c.vmm, err = loadGroup(*st.VMM); err != nil {
			return nil, err
		}
		c.vmm.overhead = true
	}
	return c, nil
}

func loadGroup(st State) (*group, error) {
	st.VMM = nil
	cfg := &cgroups.Cgroup{Path: st.Dir, Resources: &cgroups.Resources{}}
	if st.Systemd {
		c, _, err := config(st.Path, true)
		if err != nil {
			return nil, fmt.Errorf("loading host cgroup %s: %w", st.Path, err)
		}
		cfg = c
		cfg.Resources = &cgroups.Resources{}
	}
	paths := make(map[string]string, len(st.Paths))
	for k, v := range st.Paths {
		paths[k] = v
	}
	m, err := manager.NewWithPaths(cfg, paths)
	if err != nil {
		return nil, fmt.Errorf("loading host cgroup %s: %w", st.Path, err)
	}
	return &group{st: st, m: m, applied: true}, nil
}

// State returns what to persist: the caller's cgroup's, with the overhead
// cgroup's in VMM.
func (c *Cgroup) State() State {
	st := c.caller.st
	if c.vmm != nil {
		vmm := c.vmm.st
		st.VMM = &vmm
	}
	return st
}

// Paths returns the caller's cgroup's directories, by controller ("" is
// the v2 one).
func (c *Cgroup) Paths() map[string]string { return c.caller.dirs() }

// VMMPaths returns the overhead cgroup's directories, by controller.
func (c *Cgroup) VMMPaths() map[string]string {
	if c.vmm == nil {
		return nil
	}
	return c.vmm.dirs()
}

// dirs are the manager's directories that exist: without device rules
// there is no devices cgroup, though the manager names one.
func (g *group) dirs() map[string]string {
	dirs := map[string]string{}
	for ctrl, dir := range g.m.GetPaths() {
		if _, err := os.Stat(dir); err == nil {
			dirs[ctrl] = dir
		}
	}
	return dirs
}

// Add places a process of the VM (QEMU, the proxy, virtiofsd), by PID with
// all its threads, in the overhead cgroup: the hypervisor.Placer of the
// VMM. The first one makes a systemd scope.
func (c *Cgroup) Add(pid int) error {
	if c.vmm == nil {
		return c.caller.add(pid, nil)
	}
	return c.vmm.add(pid, nil)
}

// AddRelay moves a relay (the container's process as the caller sees it,
// or one of its guards), by PID, into the caller's cgroup, so that what
// reads the container's cgroup through that PID (the runc shim's stats
// behind docker stats, podman stats) reads the caller's limits. Where the
// pids controller has a hierarchy of its own (cgroup v1), the relay is
// counted in the overhead cgroup's instead: a relay's Go threads (about
// seven, three relays per process) would otherwise take a small pids limit
// that the caller meant for the container's processes, which the guest
// counts.
func (c *Cgroup) AddRelay(pid int) error {
	if c.vmm == nil {
		return c.caller.add(pid, nil)
	}
	var elsewhere map[string]string
	if dir, ok := c.vmm.dirs()["pids"]; ok && !cgroups.IsCgroup2UnifiedMode() {
		elsewhere = map[string]string{"pids": dir}
	}
	return c.caller.add(pid, elsewhere)
}

// add moves pid into the group in every hierarchy but those of elsewhere,
// where it goes to the directory named.
func (g *group) add(pid int, elsewhere map[string]string) error {
	if !g.applied {
		if err := g.apply(pid); err != nil {
			return err
		}
	}
	dirs := g.dirs()
	for ctrl, dir := range elsewhere {
		if _, ok := dirs[ctrl]; ok {
			dirs[ctrl] = dir
		}
	}
	for _, dir := range dirs {
		if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("adding process %d to host cgroup %s: %w", pid, g.st.Path, err)
		}
	}
	return nil
}

// Update writes new limits (cocoon-runtime update, a CRI update): the
// caller's cgroup gets them as given, the overhead cgroup with the VM's
// overhead.
func (c *Cgroup) Update(r *specs.LinuxResources, guestMemoryMiB int) error {
	if err := c.caller.update(Exact(r)); err != nil {
		return err
	}
	if c.vmm == nil {
		return nil
	}
	return c.vmm.update(Resources(r, guestMemoryMiB))
}

func (g *group) update(res *cgroups.Resources) error {
	if !g.applied {
		g.res = res
		return nil
	}
	g.capCPUQuota(res)
	if err := g.m.Set(res); err != nil {
		return fmt.Errorf("updating host cgroup %s: %w", g.st.Path, err)
	}
	return nil
}

// Pids returns the processes in either cgroup, in any of their
// hierarchies.
func (c *Cgroup) Pids() ([]int, error) {
	pids, err := c.caller.pids()
	if err != nil || c.vmm == nil {
		return pids, err
	}
	more, err := c.vmm.pids()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for _, pid := range pids {
		seen[pid] = true
	}
	for _, pid := range more {
		if !seen[pid] {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func (g *group) pids() ([]int, error) {
	seen := map[int]bool{}
	var pids []int
	for _, dir := range g.dirs() {
		in, err := cgroups.GetAllPids(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, pid := range in {
			if !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// Destroy removes both cgroups. Their processes (the sandbox's relays,
// exiting with their VM) get until ctx's deadline to leave. Nothing is
// killed: a process that stays makes Destroy fail and names it.
func (c *Cgroup) Destroy(ctx context.Context) error {
	for {
		pids, err := c.Pids()
		if err != nil {
			return fmt.Errorf("removing host cgroup %s: %w", c.caller.st.Path, err)
		}
		var others []int
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				others = append(others, pid)
			}
		}
		if len(others) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("removing host cgroup %s: processes %v are still in it: %w", c.caller.st.Path, others, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, g := range []*group{c.vmm, c.caller} {
		if g == nil {
			continue
		}
		if err := g.m.Destroy(); err != nil {
			return fmt.Errorf("removing host cgroup %s: %w", g.st.Path, err)
		}
	}
	// The parents once both are gone: they share them.
	for _, g := range []*group{c.vmm, c.caller} {
		if g != nil {
			removeEmpty(g.st.Parents)
		}
	}
	return nil
}

// missingParents lists the ancestors of dirs that do not exist yet,
// deepest first.
func missingParents(dirs map[string]string) []string {
	var missing []string
	for _, dir := range dirs {
		var chain []string
		for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
			if _, err := os.Stat(p); err == nil {
				break
			}
			chain = append(chain, p)
		}
		missing = append(missing, chain...)
	}
	// Deepest first across hierarchies too.
	sort.Slice(missing, func(i, j int) bool { return len(missing[i]) > len(missing[j]) })
	return missing
}

// removeEmpty removes the cgroups dirs that have no processes and no
// children left; another sandbox's cgroup under one keeps it.
func removeEmpty(dirs []string) {
	for _, dir := range dirs {
		_ = unix.Rmdir(dir)
	}
}
