// Command bench measures cocoon side by side with its floors: the time from
// nothing to an agent that answers, beside a bare QEMU boot of the same
// kernel whose /init powers off at once (the VM floor), and the memory an
// idle sandbox costs the host; last, how many idle sandboxes the host holds
// (density, -density alone; its chart goes to <out>/bench/density.png).
// The guest kernel section (-kernels alone) sets the configured kernel
// beside an older one (by default the one kernel/fragments built before
// their last change): boot, restore from a template, idle memory.
// `make bench` runs it; it prints tables.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/initrd"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
	"github.com/cocoon-containers/cocoon/sandbox"
)

func main() {
	out := flag.String("out", "out", "directory with vmlinux, initrd.img and configuration.toml")
	bin := flag.String("bin", "bin", "directory with the cocoon binaries")
	runs := flag.Int("runs", 5, "runs per measurement")
	netOnly := flag.Bool("net", false, "only the network bench")
	fsOnly := flag.Bool("sharedfs", false, "only the shared file system bench: 9p against virtio-fs")
	tmplOnly := flag.Bool("templates", false, "only the VM template bench: warm start against cold boot")
	densOnly := flag.Bool("density", false, "only the density bench: many idle containers from VM templates")
	densMax := flag.Int("density-max", 100, "the most idle containers the density bench starts (0: no density bench)")
	kernOnly := flag.Bool("kernels", false, "only the guest kernel bench: the configured kernel against an older one")
	kernBase := flag.String("kernel-base", "", "git revision whose kernel/fragments build the older kernel (default: the parent of the last commit that changed them)")
	kubeOnly := flag.Bool("kubelet", false, "only the kubelet bench: pod start through a kubelet, runc against cocoon")
	oldKernel := flag.String("old-kernel", "", "the older kernel's vmlinux, instead of building it (-kernel-base)")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	sel := selection{net: *netOnly, sharedFS: *fsOnly, templates: *tmplOnly, density: *densOnly, densityMax: *densMax,
		kernels: *kernOnly, kubelet: *kubeOnly, kernelBase: *kernBase, oldKernel: *oldKernel}
	if err := run(context.Background(), *out, *bin, *runs, sel); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// selection says which benches run: one section alone, or all of them.
type selection struct {
	net, sharedFS, templates, density, kernels, kubelet bool
	// kernelBase and oldKernel pick the kernels bench's older kernel.
	kernelBase, oldKernel string
	// densityMax bounds the density bench; 0 leaves it out of a full run.
	densityMax int
}

type bench struct {
	m       *sandbox.Manager
	work    string
	floorRD string
}

func run(ctx context.Context, out, bin string, runs int, sel selection) error {
	cfg, err := config.Load(filepath.Join(out, "configuration.toml"))
	if err != nil {
		return err
	}
	accel, why := qemu.DetectAccelerator()
	work, err := os.MkdirTemp("", "cocoon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{
		work: work,
		m: &sandbox.Manager{
			Root:        filepath.Join(work, "sandboxes"),
			Config:      cfg,
			Hypervisor:  qemu.New(),
			Accelerator: accel,
			Log:         logrus.NewEntry(logrus.StandardLogger()),
		},
	}
	if sel.density {
		return b.densitySection(ctx, cfg, out, bin, sel.densityMax)
	}
	if sel.net {
		runcNet, cocoonNet, err := b.network(ctx, out, bin, runs)
		if err != nil {
			return err
		}
		fmt.Printf("cocoon network bench: %s, machine %s, %d runs\n\n", accel, cfg.Hypervisor.Machine, runs)
		netRows(runcNet, cocoonNet)
		return nil
	}
	if sel.templates {
		res, err := b.templates(ctx, cfg, bin, runs)
		if err != nil {
			return fmt.Errorf("templates: %w", err)
		}
		fmt.Printf("cocoon template bench: %s, machine %s, %d MiB, %d runs, interleaved\n\n", accel, cfg.Hypervisor.Machine, cfg.Hypervisor.MemoryMiB, runs)
		templateRows(res)
		return nil
	}
	if sel.kernels {
		return b.kernelSection(ctx, cfg, sel, runs)
	}
	if sel.kubelet {
		kube, err := b.kubeletPodStart(ctx, out, bin, runs)
		if err != nil {
			return fmt.Errorf("pod start through the kubelet: %w", err)
		}
		fmt.Printf("cocoon kubelet bench: %s, machine %s, Kubernetes %s, kubectl create to Running, %d runs, interleaved\n\n", accel, cfg.Hypervisor.Machine, kubetest.Version, runs)
		fmt.Printf("| %-50s | %-22s |\n", "measurement", "min / median / max")
		fmt.Printf("|%s|%s|\n", strings.Repeat("-", 52), strings.Repeat("-", 24))
		kubeletRows(kube)
		return nil
	}
	if sel.sharedFS {
		res, err := b.sharedFS(ctx, cfg, bin, runs)
		if err != nil {
			return fmt.Errorf("shared fs: %w", err)
		}
		fmt.Printf("cocoon shared file system bench: %s, machine %s, %d MiB, %d runs, interleaved\n\n", accel, cfg.Hypervisor.Machine, cfg.Hypervisor.MemoryMiB, runs)
		sharedFSRows(res)
		return nil
	}
	if err := b.buildFloor(); err != nil {
		return err
	}
	fmt.Printf("cocoon bench: %s (%s), machine %s, %d vCPU, %d MiB, %d runs, interleaved\n\n",
		accel, why, cfg.Hypervisor.Machine, cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, runs)

	var floor, floorOff, ready []time.Duration
	var pss []float64
	for i := 0; i < runs; i++ {
		up, off, err := b.floorBoot(ctx, i)
		if err != nil {
			return err
		}
		floor = append(floor, up)
		floorOff = append(floorOff, off)
		d, mem, err := b.sandboxBoot(ctx, i)
		if err != nil {
			return err
		}
		ready = append(ready, d)
		pss = append(pss, mem)
	}
	runcTrue, cocoonTrue, err := b.runTrue(ctx, out, bin, runs)
	if err != nil {
		return err
	}
	runcPod, cocoonPod, err := b.podStart(ctx, out, bin, runs, nil)
	if err != nil {
		return fmt.Errorf("pod start: %w", err)
	}
	runcPodNet, cocoonPodNet, err := b.podStart(ctx, out, bin, runs, benchPodNetwork)
	if err != nil {
		return fmt.Errorf("pod start with a CNI network: %w", err)
	}
	kube, err := b.kubeletPodStart(ctx, out, bin, runs)
	if err != nil {
		return fmt.Errorf("pod start through the kubelet: %w", err)
	}
	runcConmon, cocoonConmon, err := b.conmonTrue(ctx, filepath.Join(b.work, "bundle"), out, bin, runs)
	if err != nil {
		return fmt.Errorf("conmon: %w", err)
	}
	runcNet, cocoonNet, err := b.network(ctx, out, bin, runs)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	fsRes, err := b.sharedFS(ctx, cfg, bin, runs)
	if err != nil {
		return fmt.Errorf("shared fs: %w", err)
	}
	tmplRes, err := b.templates(ctx, cfg, bin, runs)
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	fmt.Printf("| %-50s | %-22s |\n", "measurement", "min / median / max")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 52), strings.Repeat("-", 24))
	row("VM floor: QEMU start to /init on the port (s)", seconds(floor))
	row("VM floor: QEMU start to QEMU exit (s)", seconds(floorOff))
	row("cocoon: sandbox create to agent ready (s)", seconds(ready))
	row("idle sandbox memory, QEMU + proxy PSS (MiB)", pss)
	if len(runcTrue) > 0 {
		row("runc run of busybox true (s)", seconds(runcTrue))
	}
	row("cocoon-runtime run of busybox true (s)", seconds(cocoonTrue))
	row("CRI runp + create + start, runc (s)", seconds(runcPod))
	row("CRI runp + create + start, cocoon (s)", seconds(cocoonPod))
	row("same, CNI bridge pod network, runc (s)", seconds(runcPodNet))
	row("same, CNI bridge pod network, cocoon (s)", seconds(cocoonPodNet))
	kubeletRows(kube)
	if len(runcConmon) > 0 {
		row("conmon (CRI-O) create+start, true, runc (s)", seconds(runcConmon))
	}
	if len(cocoonConmon) > 0 {
		row("conmon (CRI-O) create+start, true, cocoon (s)", seconds(cocoonConmon))
	}
	netRows(runcNet, cocoonNet)
	fmt.Println()
	sharedFSRows(fsRes)
	fmt.Println()
	templateRows(tmplRes)
	fmt.Println()
	if err := b.kernelSection(ctx, cfg, sel, runs); err != nil {
		return err
	}
	if sel.densityMax > 0 {
		fmt.Println()
		return b.densitySection(ctx, cfg, out, bin, sel.densityMax)
	}
	return nil
}

// kernelSection runs the guest kernel bench and prints its table.
func (b *bench) kernelSection(ctx context.Context, cfg *config.Config, sel selection, runs int) error {
	res, what, err := b.kernels(ctx, cfg, sel.kernelBase, sel.oldKernel, runs)
	if err != nil {
		return fmt.Errorf("kernels: %w", err)
	}
	fmt.Printf("cocoon guest kernel bench: %s, machine %s, %d vCPU, %d MiB, %d runs, interleaved\n\n",
		b.m.Accelerator, cfg.Hypervisor.Machine, cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, runs)
	kernelRows(res, what)
	return nil
}

// densitySection runs the density bench and prints its table; the chart
// goes to <out>/bench.
func (b *bench) densitySection(ctx context.Context, cfg *config.Config, out, bin string, max int) error {
	if max < 1 {
		return fmt.Errorf("density: -density-max %d: at least one container", max)
	}
	res, err := b.density(ctx, cfg, bin, filepath.Join(out, "bench"), max)
	if err != nil {
		return fmt.Errorf("density: %w", err)
	}
	fmt.Printf("cocoon density bench: %s, machine %s, %d vCPU, %d MiB, VM templates on, idle busybox sleep, up to %d containers\n\n",
		b.m.Accelerator, cfg.Hypervisor.Machine, cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, max)
	densityRows(res)
	return nil
}

func row(name string, v []float64) {
	sort.Float64s(v)
	fmt.Printf("| %-50s | %6.2f / %6.2f / %6.2f |\n", name, v[0], v[len(v)/2], v[len(v)-1])
}

func seconds(ds []time.Duration) []float64 {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = d.Seconds()
	}
	return v
}

// buildFloor makes an initrd whose /init powers off at once.
func (b *bench) buildFloor() error {
	initBin := filepath.Join(b.work, "floorinit")
	cmd := exec.Command("go", "build", "-o", initBin, "./bench/floorinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building floorinit: %w: %s", err, out)
	}
	b.floorRD = filepath.Join(b.work, "floor.img")
	return initrd.Build(initrd.Options{AgentPath: initBin, Output: b.floorRD})
}

// floorBoot boots the configured kernel with the floor initrd, the same
// machine and devices as a sandbox, and times it until QEMU exits.
func (b *bench) floorBoot(ctx context.Context, i int) (up, off time.Duration, err error) {
	h := b.m.Config.Hypervisor
	dir := filepath.Join(b.work, fmt.Sprintf("floor-%d", i))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second*b.m.Accelerator.TimeoutScale()/10)
	defer cancel()
	start := time.Now()
	vm, err := b.m.Hypervisor.Start(ctx, hypervisor.VMConfig{
		ID: fmt.Sprintf("floor-%d", i), Dir: dir, Binary: h.Path, Machine: h.Machine,
		Accelerator: b.m.Accelerator, VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB,
		Kernel: h.Kernel, Initrd: b.floorRD, ConsoleLog: filepath.Join(dir, "console.log"),
		AgentSocket: filepath.Join(dir, "agent.sock"),
		SharedDirs:  []hypervisor.SharedDir{{Tag: sandbox.ShareTag, HostPath: dir}},
		Debug:       os.Getenv("COCOON_BENCH_DEBUG") != "",
	})
	if err != nil {
		return 0, 0, fmt.Errorf("floor boot: %w", err)
	}
	defer vm.Stop(context.Background())
	conn, err := awaitUp(ctx, filepath.Join(dir, "agent.sock"))
	if err != nil {
		console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		return 0, 0, fmt.Errorf("floor boot: %w; console:\n%s", err, console)
	}
	upAt := time.Since(start)
	// The connection stays open until the guest is gone: closing it could
	// drop the acknowledgement before the guest has read it.
	defer conn.Close()
	if err := vm.Wait(ctx); err != nil {
		console, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		return 0, 0, fmt.Errorf("floor boot: guest did not power off: %w; console:\n%s", err, console)
	}
	return upAt, time.Since(start), vm.Stop(ctx)
}

// awaitUp connects to the agent port's socket and waits for the line the
// floor's /init writes, then acknowledges it. The caller closes the
// connection.
func awaitUp(ctx context.Context, sock string) (net.Conn, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "unix", sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to %s: %w", sock, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		conn.Close()
		return nil, fmt.Errorf("waiting for the guest's /init: %w", err)
	}
	if _, err := conn.Write([]byte("k")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("acknowledging the guest's /init: %w", err)
	}
	return conn, nil
}

// sandboxBoot times Manager.Create (QEMU, proxy, agent ready) and measures
// the idle sandbox's memory before destroying it.
func (b *bench) sandboxBoot(ctx context.Context, i int) (time.Duration, float64, error) {
	start := time.Now()
	sb, err := b.m.Create(ctx, fmt.Sprintf("bench-%d", i))
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

// pssMiB reads a process's proportional set size.
func pssMiB(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "Pss: %f kB", &kb); err == nil {
			return kb / 1024
		}
	}
	return 0
}
