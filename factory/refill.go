package factory

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Environment of a refill process (startRefill, Main).
const (
	// refillEnv names the kinds to refill, comma separated.
	refillEnv = "COCOON_FACTORY_REFILL"
	// configEnv is the configuration file the refill loads ("": the
	// default).
	configEnv = "COCOON_FACTORY_CONFIG"
)

// startRefill starts a refill of the pool in dir (kind k first, then every
// kind) in the background, in a process of its own that outlives the
// caller (a short-lived command, or a shim that ends with its pod): this
// program again, which Main turns into the refill. It does not wait, and
// it starts none within failBackoff of a refill that failed.
func (f *Factory) startRefill(m *sandbox.Manager, dir string, k Kind) {
	if fi, err := os.Stat(filepath.Join(dir, failedFile)); err == nil && time.Since(fi.ModTime()) < failBackoff {
		return
	}
	if _, err := os.Stat(filepath.Join(dir, disabledFile)); err == nil {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		f.log.WithError(err).Warn("refilling the sandbox pool")
		return
	}
	kinds := []string{string(k)}
	for _, o := range Kinds {
		if o != k {
			kinds = append(kinds, string(o))
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), refillEnv+"="+strings.Join(kinds, ","), configEnv+"="+f.configPath)
	cmd.Dir = "/"
	// A session of its own: no terminal's signal reaches it, and it
	// outlives its parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		f.log.WithError(err).Warn("refilling the sandbox pool")
		return
	}
	f.log.WithFields(logrus.Fields{"pid": cmd.Process.Pid, "pool": dir}).Debug("pool refill started")
	_ = cmd.Process.Release()
}

// Main turns this process into the pool refill that startRefill started,
// and exits when the pool is full again; in any other process it returns at
// once. The programs that take sandboxes from the pool (cocoon-runtime,
// containerd-shim-cocoon-v2) call it first thing in main.
func Main() {
	kinds := os.Getenv(refillEnv)
	if kinds == "" {
		return
	}
	os.Exit(refill(kinds, os.Getenv(configEnv)))
}

// refill fills the pool of the configuration in path with kinds, logging
// to the pool's fill.log, and returns the exit status.
func refill(kinds, path string) int {
	cfg, err := config.Load(config.Path(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cocoon pool refill:", err)
		return 1
	}
	log := logrus.New()
	log.SetLevel(cfg.Runtime.Level())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := New(path, logrus.NewEntry(log))
	m, err := sandbox.NewManager(cfg, sandbox.DefaultRoot, f.log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cocoon pool refill:", err)
		return 1
	}
	m.Factory = f
	f.MakeTemplatesNow()
	dir := f.poolDir(m)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "cocoon pool refill:", err)
		return 1
	}
	if lf, err := os.OpenFile(filepath.Join(dir, fillLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		defer lf.Close()
		log.SetOutput(lf)
	}
	var ks []Kind
	for _, k := range strings.Split(kinds, ",") {
		ks = append(ks, Kind(k))
	}
	ctx, cancel := context.WithTimeout(ctx, m.Scaled(fillTimeout))
	defer cancel()
	if !f.on(m) {
		return 0
	}
	// The templates first: a pool of none (template_pool = 0) still
	// restores from them.
	if _, err := f.ensureTemplates(ctx, m); err != nil {
		log.WithError(err).Error("making the vm templates")
		_ = os.WriteFile(filepath.Join(dir, failedFile), []byte(err.Error()+"\n"), 0o600)
		return 1
	}
	if _, err := f.Fill(ctx, m, ks...); err != nil {
		log.WithError(err).Error("refilling the sandbox pool")
		return 1
	}
	return 0
}
