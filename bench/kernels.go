package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/factory"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// kernelResult is what one guest kernel costs: boot to a ready agent,
// restore from a VM template to a ready agent, and an idle sandbox's
// QEMU + proxy PSS after each.
type kernelResult struct {
	name    string // "old" or "new"
	path    string // vmlinux
	size    int64  // vmlinux's size in bytes
	boot    []time.Duration
	restore []time.Duration
	bootPSS []float64
	warmPSS []float64
}

// kernels compares the configured guest kernel (new) with an old one:
// oldKernel if set, else the kernel that kernel/build.sh builds (into the
// same cache) from kernel/fragments as they are at git revision base, by
// default the parent of the last commit that changed them. Runs are
// interleaved: each run boots and restores a sandbox of each kernel.
func (b *bench) kernels(ctx context.Context, cfg *config.Config, base, oldKernel string, runs int) ([]*kernelResult, string, error) {
	what := oldKernel
	if oldKernel == "" {
		var err error
		if oldKernel, what, err = buildOldKernel(ctx, base); err != nil {
			return nil, "", err
		}
	}
	res := []*kernelResult{{name: "old", path: oldKernel}, {name: "new", path: cfg.Hypervisor.Kernel}}
	tdir, err := os.MkdirTemp("/run", "cocoon-bench-kernels-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tdir)
	type side struct {
		cold, warm *sandbox.Manager
	}
	var sides []side
	for _, r := range res {
		fi, err := os.Stat(r.path)
		if err != nil {
			return nil, "", err
		}
		r.size = fi.Size()
		cold := *cfg
		cold.Hypervisor.Kernel = r.path
		cold.Hypervisor.Templates = config.Off
		warm := cold
		warm.Hypervisor.Templates = config.On
		warm.Hypervisor.TemplatePool = 0
		warm.Hypervisor.TemplateDir = filepath.Join(tdir, r.name)
		mc, mw := *b.m, *b.m
		mc.Config, mw.Config = &cold, &warm
		mc.Root, mw.Root = filepath.Join(b.work, "kernel-"+r.name+"-cold"), filepath.Join(b.work, "kernel-"+r.name+"-warm")
		f := factory.New("", b.m.Log)
		mw.Factory = f
		if _, err := f.Init(ctx, &mw); err != nil {
			return nil, "", fmt.Errorf("templates of the %s kernel: %w", r.name, err)
		}
		defer func() { _ = f.Destroy(context.Background(), &mw) }()
		sides = append(sides, side{&mc, &mw})
	}
	for i := 0; i < runs; i++ {
		for j, r := range res {
			d, pss, err := idleSandbox(ctx, sides[j].cold, fmt.Sprintf("kernel-%s-%d", r.name, i))
			if err != nil {
				return nil, "", fmt.Errorf("%s kernel, boot: %w", r.name, err)
			}
			r.boot, r.bootPSS = append(r.boot, d), append(r.bootPSS, pss)
			if d, pss, err = idleSandbox(ctx, sides[j].warm, fmt.Sprintf("kernel-%s-%d", r.name, i)); err != nil {
				return nil, "", fmt.Errorf("%s kernel, restore: %w", r.name, err)
			}
			r.restore, r.warmPSS = append(r.restore, d), append(r.warmPSS, pss)
		}
	}
	return res, what, nil
}

// idleSandbox times the creation of a sandbox of m (to a ready agent),
// measures its QEMU + proxy PSS after a second idle, and destroys it.
func idleSandbox(ctx context.Context, m *sandbox.Manager, id string) (time.Duration, float64, error) {
	start := time.Now()
	sb, err := m.Create(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	d := time.Since(start)
	defer sb.Destroy(context.Background())
	time.Sleep(time.Second)
	st := sb.State()
	mem := pssMiB(st.VM.PID) + pssMiB(st.ProxyPID)
	return d, mem, sb.Destroy(ctx)
}

// buildOldKernel builds (or finds in the cache) the kernel of
// kernel/fragments at git revision base (default: the parent of the last
// commit that changed them) with kernel/build.sh, and returns its vmlinux
// and a description of it.
func buildOldKernel(ctx context.Context, base string) (string, string, error) {
	git := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "git", args...).Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	top, err := git("rev-parse", "--show-toplevel")
	if err != nil {
		return "", "", err
	}
	if base == "" {
		last, err := git("-C", top, "log", "-1", "--format=%H", "--", "kernel/fragments")
		if err != nil {
			return "", "", err
		}
		base = last + "^"
	}
	rev, err := git("-C", top, "rev-parse", "--short", base)
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp("", "cocoon-bench-fragments-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dir)
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" kernel/fragments | tar -x -C "$3"`, "sh", top, rev, dir)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("kernel/fragments at %s: %w: %s", rev, err, out)
	}
	fmt.Fprintf(os.Stderr, "bench: the old kernel: kernel/fragments at %s (kernel/build.sh; a build takes minutes unless cached)\n", rev)
	build := exec.CommandContext(ctx, "bash", filepath.Join(top, "kernel", "build.sh"))
	build.Env = append(os.Environ(), "KERNEL_FRAGMENTS="+filepath.Join(dir, "kernel", "fragments"))
	var stdout bytes.Buffer
	build.Stdout, build.Stderr = &stdout, os.Stderr
	if err := build.Run(); err != nil {
		return "", "", fmt.Errorf("building the kernel of %s: %w", rev, err)
	}
	out := strings.TrimSpace(stdout.String())
	return filepath.Join(out, "vmlinux"), fmt.Sprintf("kernel/fragments at %s (%s)", rev, out), nil
}

func kernelRows(res []*kernelResult, what string) {
	old, cur := res[0], res[1]
	fmt.Printf("old kernel: %s\nnew kernel: %s\n", what, cur.path)
	fmt.Printf("vmlinux: old %.2f MiB, new %.2f MiB (%+.1f %%)\n\n", float64(old.size)/(1<<20), float64(cur.size)/(1<<20),
		100*(float64(cur.size)/float64(old.size)-1))
	fmt.Printf("| %-44s | %-22s | %-22s | %-8s |\n", "measurement", "old: min / median / max", "new: min / median / max", "median")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 46), strings.Repeat("-", 24), strings.Repeat("-", 24), strings.Repeat("-", 10))
	pair("boot: sandbox create to agent ready (s)", seconds(old.boot), seconds(cur.boot))
	pair("restore from a template to agent ready (s)", seconds(old.restore), seconds(cur.restore))
	pair("idle after boot: QEMU + proxy PSS (MiB)", old.bootPSS, cur.bootPSS)
	pair("idle after restore: QEMU + proxy PSS (MiB)", old.warmPSS, cur.warmPSS)
}

// pair prints a row of old and new measurements and the change of the
// median.
func pair(name string, old, cur []float64) {
	o, c := minMedMax(old), minMedMax(cur)
	fmt.Printf("| %-44s | %6.2f / %6.2f / %6.2f | %6.2f / %6.2f / %6.2f | %+6.1f %% |\n", name, o[0], o[1], o[2], c[0], c[1], c[2], 100*(c[1]/o[1]-1))
}

// minMedMax returns the minimum, median and maximum of v (sorted in a copy).
func minMedMax(v []float64) [3]float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return [3]float64{s[0], s[len(s)/2], s[len(s)-1]}
}
