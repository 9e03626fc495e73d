package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-containers/cocoon/config"
)

// Templates is an integration suite's own VM templates: a configuration
// with hypervisor.templates on and a template directory private to the
// suite, so that every sandbox of the suite is restored from a template
// (made by the first sandbox that needs it) and the suite removes them at
// its end.
type Templates struct {
	// Runtime is cocoon-runtime, which runs `factory status|destroy`.
	Runtime string
	// Config is the suite's configuration with templates on.
	Config string
	// Dir is its hypervisor.template_dir.
	Dir string
	// PoolConfig is the configuration with the pool on (see EnablePool):
	// the same templates, and hypervisor.template_pool = 1.
	PoolConfig string
	// root is the --root of the factory commands (they need one; no
	// sandbox lives there).
	root string
	// pool is set once EnablePool filled the pool, made once Init made
	// the templates: factory init made the templates of both shapes.
	pool, made bool
}

// Init makes the templates of both shapes (factory init with Config), so
// that every sandbox of the suite is restored from one: a sandbox that
// finds none boots cold while a refill makes it in the background.
func (ts *Templates) Init() error {
	if _, err := ts.factoryWith(ts.Config, "init"); err != nil {
		return err
	}
	ts.made = true
	return nil
}

// NewTemplates writes, into dir, the configuration src (the development
// out/configuration.toml) with templates on and the template directory
// dir/templates, for sandboxes that runtime (bin/cocoon-runtime) or the
// containerd shim makes.
func NewTemplates(runtime, src, dir string) (*Templates, error) {
	cfg, err := config.Load(src)
	if err != nil {
		return nil, fmt.Errorf("templates configuration: %w", err)
	}
	ts := &Templates{
		Runtime:    runtime,
		Config:     filepath.Join(dir, "configuration-templates.toml"),
		PoolConfig: filepath.Join(dir, "configuration-pool.toml"),
		Dir:        filepath.Join(dir, "templates"),
		root:       filepath.Join(dir, "factory-root"),
	}
	cfg.Hypervisor.Templates = config.On
	cfg.Hypervisor.TemplateDir = ts.Dir
	cfg.Hypervisor.TemplatePool = 0
	if err := writeConfig(ts.Config, cfg); err != nil {
		return nil, err
	}
	cfg.Hypervisor.TemplatePool = 1
	if err := writeConfig(ts.PoolConfig, cfg); err != nil {
		return nil, err
	}
	return ts, nil
}

// DeriveConfig writes to dst the configuration src changed by edit, and
// checks that it loads.
func DeriveConfig(src, dst string, edit func(*config.Config)) error {
	cfg, err := config.Load(src)
	if err != nil {
		return fmt.Errorf("deriving a configuration: %w", err)
	}
	edit(cfg)
	return writeConfig(dst, cfg)
}

// GuestNamespaces is DeriveConfig's edit for a configuration that gives a
// container asking for the host's network or IPC namespace the VM's own
// (CRI host-network pods, docker run --net=host).
func GuestNamespaces(cfg *config.Config) { cfg.Runtime.HostNamespaces = config.HostGuest }

// writeConfig writes cfg to path, and checks that it loads as the runtime
// will load it.
func writeConfig(path string, cfg *config.Config) error {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return fmt.Errorf("templates configuration: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("templates configuration: %w", err)
	}
	if _, err := config.Load(path); err != nil {
		return fmt.Errorf("templates configuration: %w", err)
	}
	return nil
}

// PoolFull is factory status's line for a full pool of PoolConfig (one
// ready sandbox of each kind).
const PoolFull = "pool: 1 of 1 ready without nic, 1 of 1 with a network of its own, 0 taken or being made"

// EnablePool runs `factory init` with PoolConfig, which makes the
// templates of both shapes and fills the pool, and waits until the pool is
// full.
func (ts *Templates) EnablePool() error {
	if _, err := ts.factoryWith(ts.PoolConfig, "init"); err != nil {
		return err
	}
	ts.pool = true
	return ts.WaitPoolFull(time.Minute)
}

// WaitPoolFull waits until the pool holds its ready sandbox of each kind
// again (a command that took one refills it in the background).
func (ts *Templates) WaitPoolFull(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		status, err := ts.factoryWith(ts.PoolConfig, "status")
		if err != nil {
			return err
		}
		if strings.Contains(status, PoolFull) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sandbox pool was not full within %s: %s", timeout, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pooled checks that QEMU process pid runs a sandbox taken from the pool:
// it was started in the pool's directory (its pid file is there).
func (ts *Templates) Pooled(pid int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("the vm of process %d: %w", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	for i, a := range args {
		if a == "-pidfile" && i+1 < len(args) && strings.HasPrefix(args[i+1], filepath.Join(ts.Dir, ".pool")+"/") {
			return nil
		}
	}
	return fmt.Errorf("QEMU %d was not started in the pool %s: %s", pid, filepath.Join(ts.Dir, ".pool"), strings.Join(args, " "))
}

// Restored checks that the QEMU process pid runs a VM restored from one of
// the templates: its RAM is a template's memory file, mapped, and it was
// started to load the template's device state (-incoming defer). A
// restore that fails is stopped and the sandbox boots cold, so a live
// QEMU of that shape is a restored guest.
func (ts *Templates) Restored(pid int) error {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("the vm of process %d: %w", pid, err)
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	if !strings.Contains(args[0], "qemu-system") {
		return fmt.Errorf("process %d is not QEMU: %q", pid, args)
	}
	incoming, memory := false, ""
	for i, a := range args {
		if a == "-incoming" && i+1 < len(args) && args[i+1] == "defer" {
			incoming = true
		}
		if _, v, ok := strings.Cut(a, "mem-path="); ok {
			memory, _, _ = strings.Cut(v, ",")
		}
	}
	if !incoming || !strings.HasPrefix(memory, ts.Dir+"/") {
		return fmt.Errorf("the vm of QEMU %d was not restored from a template in %s (-incoming defer: %t, memory file %q): %s",
			pid, ts.Dir, incoming, memory, strings.Join(args, " "))
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return fmt.Errorf("the mappings of QEMU %d: %w", pid, err)
	}
	if !bytes.Contains(maps, []byte(" "+memory+"\n")) {
		return fmt.Errorf("QEMU %d does not map its template's memory file %s", pid, memory)
	}
	return nil
}

// Destroy ends the suite's templates: `factory status` must list current
// templates of current shapes (one without NIC, one with one: the suite's
// sandboxes made them; a template that failed to restore is removed) and
// nothing else, `factory destroy` removes them, and nothing of them may be
// left: the template directory, a process or a mount naming it.
func (ts *Templates) Destroy(current int) error {
	var problems []string
	if ts.pool || ts.made {
		// factory init made both shapes.
		current = 2
	}
	status, err := ts.factory("status")
	if err != nil {
		problems = append(problems, err.Error())
	} else if n, lines := strings.Count(status, "\tcurrent\t"), strings.Count(status, "\n"); n != current || lines != n+2 {
		problems = append(problems, fmt.Sprintf("factory status: %d current templates, want %d and nothing else:\n%s", n, current, status))
	}
	if _, err := ts.factory("destroy"); err != nil {
		problems = append(problems, err.Error())
	}
	if _, err := os.Stat(ts.Dir); !errors.Is(err, os.ErrNotExist) {
		problems = append(problems, fmt.Sprintf("template directory %s left after factory destroy (%v)", ts.Dir, err))
		_ = os.RemoveAll(ts.Dir)
	}
	for _, p := range ProcessesOf(ts.Dir) {
		problems = append(problems, "process of a template left: "+p)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], ts.Dir+"/") {
			problems = append(problems, "mount of a template left: "+f[4])
		}
	}
	if err := os.Remove(ts.root); err != nil && !errors.Is(err, os.ErrNotExist) {
		problems = append(problems, fmt.Sprintf("factory root: %v", err))
	}
	if len(problems) > 0 {
		return fmt.Errorf("templates: %s", strings.Join(problems, "; "))
	}
	return nil
}

// factory runs `cocoon-runtime factory cmd` on the suite's configuration.
func (ts *Templates) factory(cmd string) (string, error) { return ts.factoryWith(ts.Config, cmd) }

// factoryWith runs `cocoon-runtime factory cmd` with configuration conf.
func (ts *Templates) factoryWith(conf, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, ts.Runtime, "--config", conf, "--root", ts.root, "factory", cmd)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("factory %s: %w: %s", cmd, err, stderr.String())
	}
	return stdout.String(), nil
}

// WithQEMU writes, into dir, the configuration src (the development
// out/configuration.toml) with hypervisor.path = qemu, and returns its
// path: a suite run again with another QEMU.
func WithQEMU(src, qemu, dir string) (string, error) {
	cfg, err := config.Load(src)
	if err != nil {
		return "", fmt.Errorf("qemu configuration: %w", err)
	}
	cfg.Hypervisor.Path = qemu
	p := filepath.Join(dir, "configuration-qemu.toml")
	if err := writeConfig(p, cfg); err != nil {
		return "", err
	}
	return p, nil
}
