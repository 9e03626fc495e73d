package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// templateResults are the cold and warm (restored from a template)
// measurements, interleaved run by run.
type templateResults struct {
	made                 time.Duration // factory init (both templates)
	coldReady, warmReady []time.Duration
	coldTrue, warmTrue   []time.Duration
	poolTrue             []time.Duration // warm, taking a sandbox of the pool
	refill               []time.Duration // a taken sandbox's replacement ready
	defaultFirst         time.Duration   // the default configuration's first run (cold; starts the refill)
	defaultTrue          []time.Duration // the default configuration's later runs
	readyPSS, readyCPU   []float64       // a ready sandbox of the pool: QEMU PSS (MiB), idle CPU (millicores)
	coldPSS, warmPSS     []float64       // QEMU PSS, one sandbox alone
	coldPSS2, warmPSS2   []float64       // QEMU PSS of each of two sandboxes
}

// templates measures warm start against cold boot: Manager.Create to a
// ready agent, `cocoon-runtime run` of busybox true, and QEMU's PSS.
func (b *bench) templates(ctx context.Context, cfg *config.Config, bin string, runs int) (*templateResults, error) {
	tdir, err := os.MkdirTemp("/run", "cocoon-bench-templates-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tdir)
	cold := *cfg
	cold.Hypervisor.Templates = config.Off
	warm := *cfg
	warm.Hypervisor.Templates = config.On
	warm.Hypervisor.TemplateDir = tdir
	// Restored, never taken from a pool: the pool is its own row.
	warm.Hypervisor.TemplatePool = 0
	mc, mw := *b.m, *b.m
	mc.Config, mw.Config = &cold, &warm
	mc.Root, mw.Root = filepath.Join(b.work, "cold"), filepath.Join(b.work, "warm")

	f := factory.New("", b.m.Log)
	mw.Factory = f
	res := &templateResults{}
	start := time.Now()
	if _, err := f.Init(ctx, &mw); err != nil {
		return nil, err
	}
	res.made = time.Since(start)

	for i := 0; i < runs; i++ {
		for _, side := range []struct {
			m         *sandbox.Manager
			ready     *[]time.Duration
			pss, pss2 *[]float64
		}{{&mc, &res.coldReady, &res.coldPSS, &res.coldPSS2}, {&mw, &res.warmReady, &res.warmPSS, &res.warmPSS2}} {
			d, one, two, err := createPair(ctx, side.m, i)
			if err != nil {
				return nil, err
			}
			*side.ready = append(*side.ready, d)
			*side.pss = append(*side.pss, one)
			*side.pss2 = append(*side.pss2, two)
		}
	}

	bundle := filepath.Join(b.work, "templates-bundle")
	if err := testutil.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		return nil, err
	}
	runtime := filepath.Join(bin, "cocoon-runtime")
	if err := writeSpec(runtime, bundle, []string{"true"}); err != nil {
		return nil, err
	}
	pool := warm
	pool.Hypervisor.TemplatePool = 1
	// What an install gets: the embedded defaults (templates "auto",
	// template_pool 1), but for the assets and a template directory of
	// the bench's own. Nothing is made beforehand: its first run boots
	// cold and starts the refill that makes the templates and the pool.
	def, err := config.Parse(config.Default())
	if err != nil {
		return nil, err
	}
	def.Hypervisor.Kernel, def.Hypervisor.Initrd, def.Hypervisor.Path = cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd, cfg.Hypervisor.Path
	def.Runtime.ProxyPath = cfg.Runtime.ProxyPath
	def.Hypervisor.TemplateDir = filepath.Join(tdir, "default")
	confs := map[string]string{}
	for name, c := range map[string]*config.Config{"cold": &cold, "warm": &warm, "pool": &pool, "default": def} {
		p := filepath.Join(b.work, name+".toml")
		if err := encodeConfig(p, c); err != nil {
			return nil, err
		}
		confs[name] = p
	}
	root := filepath.Join(b.work, "tmpl-root")
	rt := func(conf string, args ...string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		o, err := exec.CommandContext(cctx, runtime, append([]string{"--config", conf, "--root", root}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %w: %s", args, err, o)
		}
		return string(o), nil
	}
	timeRun := func(conf, id string) (time.Duration, error) {
		start := time.Now()
		if _, err := rt(conf, "run", "--bundle", bundle, id); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	// poolReadyOf waits for the pool of configuration conf to hold its
	// ready sandbox again.
	poolReadyOf := func(conf string) (time.Duration, error) {
		start := time.Now()
		for time.Since(start) < 2*time.Minute {
			o, err := rt(conf, "factory", "status")
			if err != nil {
				return 0, err
			}
			if strings.Contains(o, testutil.PoolFull) {
				return time.Since(start), nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return 0, errors.New("the sandbox pool was not refilled within 2 minutes")
	}
	poolReady := func() (time.Duration, error) { return poolReadyOf(confs["pool"]) }
	if _, err := rt(confs["pool"], "factory", "init"); err != nil {
		return nil, err
	}
	defer func() {
		_, _ = rt(confs["pool"], "factory", "destroy")
	}()
	if _, err := poolReady(); err != nil {
		return nil, err
	}
	// What a ready sandbox costs while it waits: its QEMU's PSS, and its
	// idle CPU over 10 s.
	for _, pid := range readyQEMUs(tdir) {
		res.readyPSS = append(res.readyPSS, pssMiB(pid))
		before := cpuTicks([]int{pid})
		time.Sleep(10 * time.Second)
		res.readyCPU = append(res.readyCPU, float64(cpuTicks([]int{pid})-before)*1000/clockTicks/10)
	}
	defer func() {
		_, _ = rt(confs["default"], "factory", "destroy")
	}()
	if res.defaultFirst, err = timeRun(confs["default"], "default-first"); err != nil {
		return nil, err
	}
	for i := 0; i < runs; i++ {
		d, err := timeRun(confs["cold"], fmt.Sprintf("cold-true-%d", i))
		if err != nil {
			return nil, err
		}
		res.coldTrue = append(res.coldTrue, d)
		if d, err = timeRun(confs["warm"], fmt.Sprintf("warm-true-%d", i)); err != nil {
			return nil, err
		}
		res.warmTrue = append(res.warmTrue, d)
		if d, err = timeRun(confs["pool"], fmt.Sprintf("pool-true-%d", i)); err != nil {
			return nil, err
		}
		res.poolTrue = append(res.poolTrue, d)
		// The next run finds the pool full, as a user's next command
		// would after the replacement's ~1 s.
		if d, err = poolReady(); err != nil {
			return nil, err
		}
		res.refill = append(res.refill, d)
		// The default configuration, once its pool is full: a user's
		// next command, a moment after the last.
		if _, err := poolReadyOf(confs["default"]); err != nil {
			return nil, err
		}
		if d, err = timeRun(confs["default"], fmt.Sprintf("default-true-%d", i)); err != nil {
			return nil, err
		}
		res.defaultTrue = append(res.defaultTrue, d)
	}
	return res, nil
}

// readyQEMUs lists the QEMU processes of the ready sandboxes of the pools
// under template directory dir.
func readyQEMUs(dir string) []int {
	var pids []int
	names, _ := filepath.Glob(filepath.Join(dir, ".pool", "*", "pool-*", "ready"))
	for _, n := range names {
		var st struct {
			VM struct {
				PID int `json:"pid"`
			} `json:"vm"`
		}
		if data, err := os.ReadFile(filepath.Join(filepath.Dir(n), "state.json")); err == nil && json.Unmarshal(data, &st) == nil && st.VM.PID > 0 {
			pids = append(pids, st.VM.PID)
		}
	}
	return pids
}

// createPair times the creation of a sandbox of m, measures its QEMU's PSS
// alone, then again beside a second sandbox, and destroys both.
func createPair(ctx context.Context, m *sandbox.Manager, i int) (time.Duration, float64, float64, error) {
	start := time.Now()
	a, err := m.Create(ctx, fmt.Sprintf("a-%d", i))
	if err != nil {
		return 0, 0, 0, err
	}
	d := time.Since(start)
	defer a.Destroy(context.Background())
	time.Sleep(time.Second)
	one := pssMiB(a.State().VM.PID)
	b, err := m.Create(ctx, fmt.Sprintf("b-%d", i))
	if err != nil {
		return 0, 0, 0, err
	}
	defer b.Destroy(context.Background())
	time.Sleep(time.Second)
	two := (pssMiB(a.State().VM.PID) + pssMiB(b.State().VM.PID)) / 2
	return d, one, two, nil
}

func templateRows(r *templateResults) {
	fmt.Printf("templates made (factory init, 2 templates): %.2f s\n\n", r.made.Seconds())
	fmt.Printf("| %-50s | %-22s |\n", "measurement", "min / median / max")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 52), strings.Repeat("-", 24))
	row("cold: sandbox create to agent ready (s)", seconds(r.coldReady))
	row("warm: sandbox create (restore) to agent ready (s)", seconds(r.warmReady))
	row("cold: cocoon-runtime run of busybox true (s)", seconds(r.coldTrue))
	row("warm: cocoon-runtime run of busybox true (s)", seconds(r.warmTrue))
	row("warm, from the pool: run of busybox true (s)", seconds(r.poolTrue))
	row("pool: replacement ready after the run (s)", seconds(r.refill))
	row("default config: first run of true, cold (s)", seconds([]time.Duration{r.defaultFirst}))
	row("default config: later runs of true, pool (s)", seconds(r.defaultTrue))
	row("pool: a ready sandbox's QEMU PSS (MiB)", r.readyPSS)
	row("pool: a ready sandbox's idle CPU (millicores)", r.readyCPU)
	row("cold: QEMU PSS, one sandbox (MiB)", r.coldPSS)
	row("warm: QEMU PSS, one sandbox (MiB)", r.warmPSS)
	row("cold: QEMU PSS, each of two sandboxes (MiB)", r.coldPSS2)
	row("warm: QEMU PSS, each of two sandboxes (MiB)", r.warmPSS2)
}

// encodeConfig writes configuration c to path, for cocoon-runtime --config.
func encodeConfig(path string, c *config.Config) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = toml.NewEncoder(f).Encode(c)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
