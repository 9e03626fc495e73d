package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// sharedFSes are the values of hypervisor.shared_fs compared.
var sharedFSes = []string{"9p", "virtio-fs"}

// readMiB is the size of the file read through the share.
const readMiB = 64

// sharedFSResult is one shared file system's measurements.
type sharedFSResult struct {
	boot       []time.Duration // sandbox create to agent ready
	pss        []float64       // idle sandbox: QEMU + proxy + virtiofsd, MiB
	cold, warm []float64       // MiB/s of the first and second read of the file
}

// sharedFS compares 9p and virtio-fs, interleaved: sandbox boot (Create
// to agent ready, virtiofsd included), the idle sandbox's memory, and the read throughput of a 64 MiB
// file of the container's root file system (which reaches the guest
// through the share), `dd` to /dev/null inside the container, timed by
// busybox's time, twice (the second read shows the guest's page cache).
func (b *bench) sharedFS(ctx context.Context, cfg *config.Config, bin string, runs int) (map[string]*sharedFSResult, error) {
	bundle := filepath.Join(b.work, "fsbundle")
	rootfs := filepath.Join(bundle, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return nil, err
	}
	if err := writeRandom(filepath.Join(rootfs, "big"), readMiB<<20); err != nil {
		return nil, err
	}
	runtime := filepath.Join(bin, "cocoon-runtime")
	script := "cd / && time dd if=big of=/dev/null bs=1M && time dd if=big of=/dev/null bs=1M"
	if err := writeSpec(runtime, bundle, []string{"sh", "-c", script}); err != nil {
		return nil, err
	}
	res := map[string]*sharedFSResult{}
	configs := map[string]string{}
	for _, fs := range sharedFSes {
		res[fs] = &sharedFSResult{}
		p, err := writeConfig(b.work, cfg, fs)
		if err != nil {
			return nil, err
		}
		configs[fs] = p
	}
	for i := 0; i < runs; i++ {
		for _, fs := range sharedFSes {
			c := *cfg
			c.Hypervisor.SharedFS = fs
			m := *b.m
			m.Config = &c
			start := time.Now()
			sb, err := m.Create(ctx, fmt.Sprintf("fs-%d", i))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fs, err)
			}
			res[fs].boot = append(res[fs].boot, time.Since(start))
			time.Sleep(time.Second)
			st := sb.State()
			res[fs].pss = append(res[fs].pss, pssMiB(st.VM.PID)+pssMiB(st.ProxyPID)+pssMiB(st.VirtiofsdPID))
			if err := sb.Destroy(ctx); err != nil {
				return nil, fmt.Errorf("%s: %w", fs, err)
			}

			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			out, err := exec.CommandContext(cctx, runtime, "--config", configs[fs], "--root", filepath.Join(b.work, "fsroot"),
				"run", "--bundle", bundle, fmt.Sprintf("fs-read-%d", i)).CombinedOutput()
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%s: read run: %w: %s", fs, err, out)
			}
			secs := realTimes(string(out))
			if len(secs) != 2 {
				return nil, fmt.Errorf("%s: no timings in %q", fs, out)
			}
			res[fs].cold = append(res[fs].cold, readMiB/secs[0])
			res[fs].warm = append(res[fs].warm, readMiB/secs[1])
		}
	}
	return res, nil
}

// sharedFSRows prints the comparison.
func sharedFSRows(res map[string]*sharedFSResult) {
	fmt.Printf("| %-50s | %-22s |\n", "measurement", "min / median / max")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 52), strings.Repeat("-", 24))
	for _, fs := range sharedFSes {
		row(fs+": sandbox create to agent ready (s)", seconds(res[fs].boot))
	}
	for _, fs := range sharedFSes {
		row(fs+": idle sandbox PSS, all processes (MiB)", res[fs].pss)
	}
	for _, fs := range sharedFSes {
		row(fmt.Sprintf("%s: dd %d MiB from rootfs, 1st (MiB/s)", fs, readMiB), res[fs].cold)
		row(fmt.Sprintf("%s: dd %d MiB from rootfs, 2nd (MiB/s)", fs, readMiB), res[fs].warm)
	}
}

// realRE matches busybox time's "real	0m 0.42s".
var realRE = regexp.MustCompile(`real\s+(\d+)m\s*([0-9.]+)s`)

// realTimes returns the "real" times that busybox's time printed, in s.
func realTimes(out string) []float64 {
	var v []float64
	for _, m := range realRE.FindAllStringSubmatch(out, -1) {
		min, _ := strconv.ParseFloat(m[1], 64)
		sec, _ := strconv.ParseFloat(m[2], 64)
		// busybox prints hundredths: a read faster than that counts as 5 ms.
		v = append(v, max(min*60+sec, 0.005))
	}
	return v
}

// writeConfig writes cfg's assets with shared_fs fs as a configuration
// file, with absolute paths.
func writeConfig(dir string, cfg *config.Config, fs string) (string, error) {
	virtiofsd, qemu := cfg.Hypervisor.Virtiofsd, cfg.Hypervisor.Path
	if virtiofsd == "" {
		d, q, err := testutil.Virtiofsd()
		if err != nil {
			return "", err
		}
		virtiofsd = d
		if q != "" {
			qemu = q
		}
	}
	// Cold boots: what the shared file system costs, not the pool.
	text := fmt.Sprintf("[hypervisor]\npath = %q\nshared_fs = %q\nvirtiofsd = %q\nkernel = %q\ninitrd = %q\nmachine = %q\ntemplates = false\n[runtime]\nproxy_path = %q\n",
		qemu, fs, virtiofsd, cfg.Hypervisor.Kernel, cfg.Hypervisor.Initrd, cfg.Hypervisor.Machine, cfg.Runtime.ProxyPath)
	p := filepath.Join(dir, "config-"+fs+".toml")
	return p, os.WriteFile(p, []byte(text), 0o644)
}

// writeSpec writes `cocoon-runtime spec`'s config.json into bundle, with
// args and no terminal.
func writeSpec(runtime, bundle string, args []string) error {
	if o, err := exec.Command(runtime, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("cocoon-runtime spec: %w: %s", err, o)
	}
	return editSpec(filepath.Join(bundle, "config.json"), args)
}

// editSpec sets the process args of a config.json, without a terminal.
func editSpec(path string, args []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return err
	}
	p := spec["process"].(map[string]any)
	p["terminal"] = false
	p["args"] = args
	if data, err = json.Marshal(spec); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// writeRandom writes n bytes that no file system compresses or dedups.
func writeRandom(path string, n int) error {
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(f, buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}
