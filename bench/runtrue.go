package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// runTrue times `run` of busybox true, the whole life of a container
// (create, start, wait, delete), with runc and with cocoon-runtime on the
// same bundle, interleaved. runc's times are nil where runc is missing.
func (b *bench) runTrue(ctx context.Context, out, bin string, runs int) (runc, cocoon []time.Duration, err error) {
	bundle := filepath.Join(b.work, "bundle")
	if err := testutil.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		return nil, nil, err
	}
	runtime := filepath.Join(bin, "cocoon-runtime")
	if err := writeSpec(runtime, bundle, []string{"true"}); err != nil {
		return nil, nil, err
	}
	runcBin, _ := exec.LookPath("runc")
	config := filepath.Join(out, "configuration.toml")
	timeRun := func(name string, args ...string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		if o, err := exec.CommandContext(cctx, name, args...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s %v: %w: %s", name, args, err, o)
		}
		return time.Since(start), nil
	}
	for i := 0; i < runs; i++ {
		id := fmt.Sprintf("bench-true-%d", i)
		if runcBin != "" {
			d, err := timeRun(runcBin, "--root", filepath.Join(b.work, "runc"), "run", "--bundle", bundle, id)
			if err != nil {
				return nil, nil, err
			}
			runc = append(runc, d)
		}
		d, err := timeRun(runtime, "--config", config, "--root", filepath.Join(b.work, "cocoon"), "run", "--bundle", bundle, id)
		if err != nil {
			return nil, nil, err
		}
		cocoon = append(cocoon, d)
	}
	return runc, cocoon, nil
}
