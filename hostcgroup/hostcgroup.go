// Package hostcgroup puts a sandbox's host processes (QEMU, cocoon-proxy,
// virtiofsd, the cocoon-relays) into the cgroup that the caller named in the
// spec's linux.cgroupsPath, and writes the spec's limits there, as Kata
// Containers does with sandbox_cgroup_only. Whatever reads a container's
// cgroup from the host (docker stats, podman stats, monitoring, checks of the
// limits) then sees the whole VM: the numbers are the VM's, not the
// container's, and the limits carry the VM's own overhead (see Resources).
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

// State is what is persisted so that another process can find the cgroup
// again (Load).
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
}

// Cgroup is a sandbox's host cgroup.
type Cgroup struct {
	st State
	m  cgroups.Manager
	// res are the limits to set once the cgroup exists.
	res *cgroups.Resources
	// applied is set once the cgroup exists: at Create for cgroupfs, at
	// the first Add for a systemd scope (a scope is made with its first
	// process).
	applied bool
}

// Create creates the cgroup and writes the limits. No process joins it,
// the caller least of all (a long-lived shim must never be charged for a
// pod): the sandbox's processes are placed in it with Add, by PID, before
// they run (proc.StartPlaced), so that every page they touch is charged
// there. Under systemd the scope is made with the first process added.
func Create(spec Spec) (_ *Cgroup, retErr error) {
	if spec.Path == "" {
		return nil, errors.New("creating host cgroup: no cgroups path")
	}
	cfg, dir, err := config(spec.Path, spec.Systemd)
	if err != nil {
		return nil, fmt.Errorf("creating host cgroup %s: %w", spec.Path, err)
	}
	res := Resources(spec.Resources, spec.GuestMemoryMiB)
	cfg.Resources = res
	m, err := manager.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating host cgroup %s: %w", spec.Path, err)
	}
	c := &Cgroup{m: m, res: res}
	var parents []string
	if !cfg.Systemd {
		parents = missingParents(m.GetPaths())
	}
	c.st = State{Path: spec.Path, Systemd: cfg.Systemd, Dir: dir, Parents: parents}
	if cfg.Systemd {
		return c, nil
	}
	defer func() {
		if retErr != nil {
			_ = m.Destroy()
			removeEmpty(parents)
		}
	}()
	if err := c.apply(-1); err != nil {
		return nil, err
	}
	return c, nil
}

// apply creates the cgroup in every hierarchy (the v2 one too on a hybrid
// host), with pid in it unless it is -1, and writes the limits.
func (c *Cgroup) apply(pid int) error {
	if err := c.m.Apply(pid); err != nil {
		return fmt.Errorf("creating host cgroup %s: %w", c.st.Path, err)
	}
	c.applied = true
	c.st.Paths = c.dirs()
	if err := c.m.Set(c.res); err != nil {
		return fmt.Errorf("setting the limits of host cgroup %s: %w", c.st.Path, err)
	}
	return nil
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

// Load finds a cgroup that Create made, possibly in another process.
func Load(st State) (*Cgroup, error) {
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
	return &Cgroup{st: st, m: m, applied: true}, nil
}

// State returns what to persist.
func (c *Cgroup) State() State { return c.st }

// Paths returns the cgroup's directories, by controller ("" is the v2 one).
func (c *Cgroup) Paths() map[string]string { return c.dirs() }

// dirs are the manager's directories that exist: without device rules
// there is no devices cgroup, though the manager names one.
func (c *Cgroup) dirs() map[string]string {
	dirs := map[string]string{}
	for ctrl, dir := range c.m.GetPaths() {
		if _, err := os.Stat(dir); err == nil {
			dirs[ctrl] = dir
		}
	}
	return dirs
}

// Add moves the process pid (with all its threads) into the cgroup; the
// first one makes a systemd scope.
func (c *Cgroup) Add(pid int) error {
	if !c.applied {
		return c.apply(pid)
	}
	for _, dir := range c.dirs() {
		if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("adding process %d to host cgroup %s: %w", pid, c.st.Path, err)
		}
	}
	return nil
}

// Update writes new limits (cocoon-runtime update, a CRI update).
func (c *Cgroup) Update(r *specs.LinuxResources, guestMemoryMiB int) error {
	res := Resources(r, guestMemoryMiB)
	if !c.applied {
		c.res = res
		return nil
	}
	if err := c.m.Set(res); err != nil {
		return fmt.Errorf("updating host cgroup %s: %w", c.st.Path, err)
	}
	return nil
}

// Pids returns the processes in the cgroup, in any of its hierarchies.
func (c *Cgroup) Pids() ([]int, error) {
	seen := map[int]bool{}
	var pids []int
	for _, dir := range c.dirs() {
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

// Destroy removes the cgroup. Its processes (the sandbox's relays, exiting
// with their VM) get until ctx's deadline to leave. Nothing is killed: a
// process that stays makes Destroy fail and names it.
func (c *Cgroup) Destroy(ctx context.Context) error {
	for {
		pids, err := c.Pids()
		if err != nil {
			return fmt.Errorf("removing host cgroup %s: %w", c.st.Path, err)
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
			return fmt.Errorf("removing host cgroup %s: processes %v are still in it: %w", c.st.Path, others, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := c.m.Destroy(); err != nil {
		return fmt.Errorf("removing host cgroup %s: %w", c.st.Path, err)
	}
	removeEmpty(c.st.Parents)
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
