package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// templateResults are the cold and warm (restored from a template)
// measurements, interleaved run by run.
type templateResults struct {
	made                 time.Duration // factory init (both templates)
	coldReady, warmReady []time.Duration
	coldTrue, warmTrue   []time.Duration
	coldPSS, warmPSS     []float64 // QEMU PSS, one sandbox alone
	coldPSS2, warmPSS2   []float64 // QEMU PSS of each of two sandboxes
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
	cold.Hypervisor.Templates = false
	warm := *cfg
	warm.Hypervisor.Templates = true
	warm.Hypervisor.TemplateDir = tdir
	mc, mw := *b.m, *b.m
	mc.Config, mw.Config = &cold, &warm
	mc.Root, mw.Root = filepath.Join(b.work, "cold"), filepath.Join(b.work, "warm")

	res := &templateResults{}
	start := time.Now()
	if _, err := mw.InitTemplates(ctx); err != nil {
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
	confs := map[string]string{}
	for name, c := range map[string]*config.Config{"cold": &cold, "warm": &warm} {
		p := filepath.Join(b.work, name+".toml")
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		err = toml.NewEncoder(f).Encode(c)
		f.Close()
		if err != nil {
			return nil, err
		}
		confs[name] = p
	}
	timeRun := func(conf, id string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		if o, err := exec.CommandContext(cctx, runtime, "--config", conf, "--root", filepath.Join(b.work, "tmpl-root"), "run", "--bundle", bundle, id).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("run %s: %w: %s", id, err, o)
		}
		return time.Since(start), nil
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
	}
	return res, nil
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
	row("cold: sandbox create to agent ready (s)", seconds(r.coldReady))
	row("warm: sandbox create (restore) to agent ready (s)", seconds(r.warmReady))
	row("cold: cocoon-runtime run of busybox true (s)", seconds(r.coldTrue))
	row("warm: cocoon-runtime run of busybox true (s)", seconds(r.warmTrue))
	row("cold: QEMU PSS, one sandbox (MiB)", r.coldPSS)
	row("warm: QEMU PSS, one sandbox (MiB)", r.warmPSS)
	row("cold: QEMU PSS, each of two sandboxes (MiB)", r.coldPSS2)
	row("warm: QEMU PSS, each of two sandboxes (MiB)", r.warmPSS2)
}
