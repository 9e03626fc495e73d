package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/internal/statedir"
	"github.com/cocoon-containers/cocoon/internal/testutil"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// Density bench parameters.
const (
	// densityExecLimit is how long `exec <id> true` may take for a
	// sandbox to count as answering.
	densityExecLimit = 5 * time.Second
	// densitySettle lets the newest sandboxes finish restoring and their
	// relays settle before anything idle is measured.
	densitySettle = 5 * time.Second
	// densityCPUWindow is the idle window over which host CPU is counted.
	densityCPUWindow = 20 * time.Second
	// clockTicks is USER_HZ, the unit of utime and stime in /proc: 100
	// on every Linux architecture this runs on.
	clockTicks = 100
)

// densityPoint is what was measured with n idle containers alive.
type densityPoint struct {
	n int
	// pss is each sandbox's QEMU + proxy PSS (MiB).
	pss []float64
	// cpu is each sandbox's host CPU (QEMU, proxy, relays) over the idle
	// window, in millicores; nil where CPU was not measured at n.
	cpu []float64
	// exec is how long `exec <id> true` took for each container, up to
	// the first that failed (execErr).
	exec    []time.Duration
	execErr error
}

// densityResults are the density bench's measurements.
type densityResults struct {
	max int
	// starts are the start times (`run -d`) of container 1, 2, ...
	starts []time.Duration
	points []densityPoint
	// held is the largest n at which every container answered exec true
	// within densityExecLimit.
	held int
	// stopped says why the ramp stopped before max; empty if it did not.
	stopped string
	chart   string
}

// densityIDs are the containers of a density run, in start order.
func densityID(i int) string { return fmt.Sprintf("density-%03d", i) }

// density starts up to max idle busybox containers (`cocoon-runtime run
// -d` of sleep) with VM templates on, one after the other, and at each
// checkpoint measures their memory, their idle host CPU (at cpuAt) and
// whether every one of them still answers `exec true` within
// densityExecLimit. It stops at max or at the first container that fails
// to start or to answer, then deletes them all and checks that nothing is
// left. chartDir receives density.png.
func (b *bench) density(ctx context.Context, cfg *config.Config, bin, chartDir string, max int) (*densityResults, error) {
	tdir, err := os.MkdirTemp("/run", "cocoon-bench-density-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tdir)
	warm := *cfg
	warm.Hypervisor.Templates = config.On
	warm.Hypervisor.TemplateDir = tdir
	// Restored containers only: no ready sandboxes idling beside them.
	warm.Hypervisor.TemplatePool = 0
	conf := filepath.Join(b.work, "density.toml")
	if err := encodeConfig(conf, &warm); err != nil {
		return nil, err
	}
	bundle := filepath.Join(b.work, "density-bundle")
	if err := testutil.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		return nil, err
	}
	d := &densityRun{
		runtime: filepath.Join(bin, "cocoon-runtime"),
		conf:    conf,
		root:    filepath.Join(b.work, "density-root"),
		bundle:  bundle,
		tdir:    tdir,
	}
	if err := writeSpec(d.runtime, bundle, []string{"sleep", "1000000"}); err != nil {
		return nil, err
	}
	// Templates are made first so that the first container's start is a
	// restore like the others'.
	if _, err := d.cli(ctx, 5*time.Minute, "factory", "init"); err != nil {
		return nil, err
	}
	res := &densityResults{max: max}
	started := 0
	defer func() {
		if started > 0 {
			// On an early return the error at hand is the one to see;
			// cleanup below reports its own on the normal path.
			_ = d.cleanup(context.Background(), started)
		}
	}()
	for i := 1; i <= max; i++ {
		start := time.Now()
		if _, err := d.cli(ctx, 5*time.Minute, "run", "-d", "--bundle", bundle, densityID(i)); err != nil {
			res.stopped = fmt.Sprintf("container %d did not start: %v", i, err)
			break
		}
		res.starts = append(res.starts, time.Since(start))
		started = i
		if !densityCheckpoint(i, max) {
			continue
		}
		p, err := d.measure(ctx, i, densityCPUAt(i, max))
		if err != nil {
			return nil, err
		}
		res.points = append(res.points, p)
		slowest := time.Duration(0)
		for _, e := range p.exec {
			slowest = maxDuration(slowest, e)
		}
		if len(p.exec) < i || slowest > densityExecLimit {
			res.stopped = fmt.Sprintf("with %d alive, %d of them answered exec true within %s (slowest %.2fs)", i, countWithin(p.exec, densityExecLimit), densityExecLimit, slowest.Seconds())
			if p.execErr != nil {
				res.stopped += fmt.Sprintf("; container %d: %v", len(p.exec)+1, p.execErr)
			}
			break
		}
		res.held = i
	}
	started = 0
	if err := d.cleanup(ctx, len(res.starts)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return nil, err
	}
	res.chart = filepath.Join(chartDir, "density.png")
	if err := densityChart(res, res.chart); err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	return res, nil
}

// densityCheckpoint says whether n containers alive is a checkpoint:
// 1, 10, every 10 after that, and max.
func densityCheckpoint(n, max int) bool { return n == 1 || n%10 == 0 || n == max }

// densityCPUAt says whether idle CPU is measured with n alive: at 1, 10,
// 20, 30 and max (each costs densityCPUWindow).
func densityCPUAt(n, max int) bool { return n == 1 || n == 10 || n == 20 || n == 30 || n == max }

func countWithin(ds []time.Duration, limit time.Duration) int {
	n := 0
	for _, d := range ds {
		if d <= limit {
			n++
		}
	}
	return n
}

func maxDuration(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// densityRun is one density run's cocoon-runtime setup.
type densityRun struct {
	runtime, conf, root, bundle, tdir string
}

// cli runs cocoon-runtime with the run's configuration and root. Its
// output goes to a file, not a pipe: `run -d` leaves a relay behind that
// holds the caller's stdio, and a pipe would never reach EOF.
func (d *densityRun) cli(ctx context.Context, timeout time.Duration, args ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := os.CreateTemp("", "cocoon-bench-density-out-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.CommandContext(ctx, d.runtime, append([]string{"--config", d.conf, "--root", d.root}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if err != nil {
		msg, _ := os.ReadFile(out.Name())
		return took, fmt.Errorf("cocoon-runtime %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(msg)))
	}
	return took, nil
}

// measure takes a densityPoint with containers 1..n alive.
func (d *densityRun) measure(ctx context.Context, n int, cpu bool) (densityPoint, error) {
	p := densityPoint{n: n}
	time.Sleep(densitySettle)
	procs := make([][]int, n)
	for i := 1; i <= n; i++ {
		sb, shim, err := d.pids(densityID(i))
		if err != nil {
			return p, err
		}
		qemu, proxy := pssMiB(sb.VM.PID), pssMiB(sb.ProxyPID)
		if qemu == 0 || proxy == 0 {
			// Gone, or unreadable: either way not an idle sandbox.
			return p, fmt.Errorf("container %s: no memory to read of qemu %d (%.1f MiB) or proxy %d (%.1f MiB)", densityID(i), sb.VM.PID, qemu, sb.ProxyPID, proxy)
		}
		p.pss = append(p.pss, qemu+proxy)
		procs[i-1] = append([]int{sb.VM.PID, sb.ProxyPID}, descendants(shim)...)
	}
	if cpu {
		before := make([]int64, n)
		for i, ps := range procs {
			before[i] = cpuTicks(ps)
		}
		start := time.Now()
		time.Sleep(densityCPUWindow)
		window := time.Since(start).Seconds()
		for i, ps := range procs {
			p.cpu = append(p.cpu, float64(cpuTicks(ps)-before[i])*1000/clockTicks/window)
		}
	}
	for i := 1; i <= n; i++ {
		// The limit given to the command is twice the one checked, so
		// that a slow answer is measured rather than cut off.
		took, err := d.cli(ctx, 2*densityExecLimit, "exec", densityID(i), "true")
		if err != nil {
			p.execErr = err
			return p, nil
		}
		p.exec = append(p.exec, took)
	}
	return p, nil
}

// pids returns a container's sandbox state (QEMU's and the proxy's PIDs)
// and its relay's PID (the container PID of `state`).
func (d *densityRun) pids(id string) (sandbox.State, int, error) {
	var st sandbox.State
	sbRoot := container.RuntimeSandboxRoot(d.root)
	if err := statedir.ReadJSON(filepath.Join(sbRoot, container.SandboxIDFor(id), "state.json"), &st); err != nil {
		return st, 0, fmt.Errorf("sandbox of %s: %w", id, err)
	}
	var cs struct {
		PID int `json:"pid"`
	}
	if err := statedir.ReadJSON(filepath.Join(d.root, id, "state.json"), &cs); err != nil {
		return st, 0, fmt.Errorf("container %s: %w", id, err)
	}
	if st.VM.PID <= 0 || st.ProxyPID <= 0 || cs.PID <= 0 {
		return st, 0, fmt.Errorf("container %s: qemu %d, proxy %d, relay %d: a process is missing", id, st.VM.PID, st.ProxyPID, cs.PID)
	}
	return st, cs.PID, nil
}

// descendants returns pid and every process below it.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", out[i]))
		for _, t := range tasks {
			data, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(data)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// cpuTicks sums the user and system time of pids (all their threads), in
// clock ticks. A process that has gone counts nothing.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name may hold spaces: fields count from after it.
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + st
		}
	}
	return sum
}

// cleanup deletes containers 1..n and checks that nothing of them is
// left: no process that names their sandboxes or templates, no mount
// under them, no state directory. Then it removes the templates.
func (d *densityRun) cleanup(ctx context.Context, n int) error {
	var errs []error
	for i := 1; i <= n; i++ {
		if _, err := d.cli(ctx, 2*time.Minute, "delete", "-f", densityID(i)); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := d.cli(ctx, time.Minute, "factory", "destroy"); err != nil {
		errs = append(errs, err)
	}
	sbRoot := container.RuntimeSandboxRoot(d.root)
	marks := []string{sbRoot, d.tdir, d.root + "/", d.bundle}
	// Processes may take a moment to be reaped after delete returns.
	deadline := time.Now().Add(10 * time.Second)
	var left []string
	for {
		left = densityLeftovers(marks)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range left {
		errs = append(errs, errors.New(l))
	}
	for _, dir := range []string{sbRoot, d.root} {
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
		for _, e := range entries {
			errs = append(errs, fmt.Errorf("left behind: %s", filepath.Join(dir, e.Name())))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("after deleting the density containers: %w", err)
	}
	return nil
}

// densityLeftovers lists the processes whose command line and the mounts
// whose mount point or source contain one of marks.
func densityLeftovers(marks []string) []string {
	var left []string
	has := func(s string) bool {
		for _, m := range marks {
			if strings.Contains(s, m) {
				return true
			}
		}
		return false
	}
	self := os.Getpid()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || len(data) == 0 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if pid != self && has(cmdline) {
			left = append(left, fmt.Sprintf("left running: pid %d: %.200s", pid, cmdline))
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return append(left, fmt.Sprintf("reading mounts: %v", err))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point; the bundle's rootfs shows as the
		// root (field 4) of a bind mount.
		fs := strings.Fields(sc.Text())
		if len(fs) > 4 && (has(fs[4]) || has(fs[3]+"/")) {
			left = append(left, "left mounted: "+fs[4])
		}
	}
	return left
}

// densityRows prints the density table.
func densityRows(r *densityResults) {
	fmt.Printf("| %-58s | %-24s |\n", "measurement (containers alive)", "min / median / max")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 60), strings.Repeat("-", 26))
	prev := 0
	for _, p := range r.points {
		if p.cpu == nil {
			continue
		}
		row3(fmt.Sprintf("N=%d: start of containers %d-%d (s)", p.n, prev+1, p.n), seconds(r.starts[prev:p.n]))
		fmt.Printf("| %-58s | %24.2f |\n", fmt.Sprintf("N=%d: start of the Nth container (s)", p.n), r.starts[p.n-1].Seconds())
		row3(fmt.Sprintf("N=%d: PSS per sandbox, QEMU + proxy (MiB)", p.n), p.pss)
		row3(fmt.Sprintf("N=%d: idle host CPU per sandbox, %ds (millicores)", p.n, int(densityCPUWindow.Seconds())), p.cpu)
		fmt.Printf("| %-58s | %24.1f |\n", fmt.Sprintf("N=%d: idle host CPU, all sandboxes (millicores)", p.n), sum(p.cpu))
		if len(p.exec) > 0 {
			row3(fmt.Sprintf("N=%d: exec true, each container (s)", p.n), seconds(p.exec))
		}
		prev = p.n
	}
	fmt.Printf("\nPSS per sandbox, QEMU + proxy, median (MiB) at N alive:")
	for _, p := range r.points {
		v := append([]float64(nil), p.pss...)
		sort.Float64s(v)
		fmt.Printf(" %d: %.1f", p.n, v[len(v)/2])
	}
	fmt.Println()
	fmt.Printf("largest N alive with every container answering exec true within %s: %d (tried up to %d)\n", densityExecLimit, r.held, r.max)
	if r.stopped != "" {
		fmt.Printf("stopped: %s\n", r.stopped)
	}
	fmt.Printf("all deleted, nothing left (processes, mounts, state directories)\nchart: %s\n", r.chart)
}

// row3 is row with a wider name column.
func row3(name string, v []float64) {
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	fmt.Printf("| %-58s | %6.2f / %6.2f / %6.2f |\n", name, v[0], v[len(v)/2], v[len(v)-1])
}

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}
