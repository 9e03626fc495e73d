// Package criotest runs a private CRI-O (built by `make crio` into the
// cache) for cocoon's tests: the CRI-O suite drives it with crictl, the
// kubelet suite puts a kubelet on it. CRI-O runs on private directories
// and sockets (its storage root and runroot, its configuration and drop-in
// directories, exits and attach sockets, pinned namespaces, CNI
// configuration and plugins, logs), with the drop-in that
// packaging/crio/register.sh installs for users (paths adapted to bin/):
// the "cocoon" handler (cocoon-runtime under Debian's conmon) and the
// "cocoon-vm" handler (containerd-shim-cocoon-v2, runtime_type "vm"), runc
// the default. No registry is reachable: the busybox and pause images are
// built here and loaded into CRI-O's storage (vfs) with podman before
// CRI-O starts. Every pod is on a CNI network (Debian's bridge and
// host-local plugins), since cocoon refuses host-network pods. CRI-O is
// stopped by its PID, and Leftovers reports what it or cocoon left.
package criotest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Version is the CRI-O that `make crio` builds.
const Version = "1.36.3"

// The handlers of packaging/crio/50-cocoon.conf.
const (
	OCIHandler = "cocoon"    // cocoon-runtime under conmon
	VMHandler  = "cocoon-vm" // containerd-shim-cocoon-v2, runtime_type "vm"
)

// hostPaths are where CRI-O keeps state by default: the suites' CRI-O
// must not create them (its configuration moves every one under its
// directory).
var hostPaths = []string{"/etc/crio", "/var/lib/crio", "/run/crio", "/var/log/crio"}

// Options configure a Daemon.
type Options struct {
	// Bin and Out are the tree's bin/ (cocoon's binaries) and out/ (its
	// configuration.toml).
	Bin, Out string
	// Repo is the tree's root, for packaging/crio/register.sh.
	Repo string
	// PodNetwork is the CNI network of the pods, CRI-O's default.
	PodNetwork *containerdtest.PodNetwork
	// Templates turns VM templates on, as an installed cocoon has them:
	// every pod's VM is restored from one (factory init makes both shapes
	// before CRI-O starts).
	Templates bool
}

// Daemon is a running CRI-O.
type Daemon struct {
	// Dir holds everything of it.
	Dir string
	// Socket is its CRI socket.
	Socket string
	// Templates are cocoon's VM templates (Options.Templates), else nil.
	Templates *testutil.Templates

	proc        *testutil.Daemon
	path        string // crio
	crictl      string
	podNet      *containerdtest.PodNetwork
	preexisting map[string]bool // of hostPaths
}

// Path is where `make crio` puts crio: $COCOON_CACHE/crio-<version>/bin
// (default /var/cache/cocoon), outside the clone; pinns is beside it.
func Path() (string, error) {
	p, err := testutil.CacheFile(filepath.Join("crio-"+Version, "bin", "crio"), "CRI-O "+Version, "make crio")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "pinns")); err != nil {
		return "", fmt.Errorf("CRI-O %s's pinns is not built (make crio): %w", Version, err)
	}
	return p, nil
}

// Start loads the images into a new CRI-O's storage, sets up the pod
// network, writes CRI-O's configuration with cocoon's drop-in and starts
// CRI-O. On failure nothing is left.
func Start(ctx context.Context, o Options) (_ *Daemon, retErr error) {
	path, err := Path()
	if err != nil {
		return nil, err
	}
	crictl, err := containerdtest.CrictlPath()
	if err != nil {
		return nil, err
	}
	d := &Daemon{path: path, crictl: crictl, podNet: o.PodNetwork, preexisting: map[string]bool{}}
	for _, p := range hostPaths {
		if _, err := os.Stat(p); err == nil {
			d.preexisting[p] = true
		}
	}
	if d.Dir, err = os.MkdirTemp("", "cocoon-crio"); err != nil {
		return nil, err
	}
	d.Socket = d.Path("crio.sock")
	defer func() {
		if retErr != nil {
			d.Stop()
			_ = d.Leftovers()
			d.Remove()
		}
	}()
	if err := d.loadImages(ctx); err != nil {
		return nil, err
	}
	if err := o.PodNetwork.Setup(d.CNIDirs()); err != nil {
		return nil, err
	}
	config := filepath.Join(o.Out, "configuration.toml")
	if o.Templates {
		if d.Templates, err = testutil.NewTemplates(filepath.Join(o.Bin, "cocoon-runtime"), config, d.Dir); err == nil {
			err = d.Templates.Init()
		}
		if err != nil {
			return nil, err
		}
		config = d.Templates.Config
	}
	if err := d.configure(o, config); err != nil {
		return nil, err
	}
	if err := d.start(); err != nil {
		return nil, err
	}
	return d, nil
}

// Path is a path under the daemon's directory.
func (d *Daemon) Path(elem ...string) string {
	return filepath.Join(append([]string{d.Dir}, elem...)...)
}

// Root and Runroot are CRI-O's storage root and runroot.
func (d *Daemon) Root() string    { return d.Path("root") }
func (d *Daemon) Runroot() string { return d.Path("runroot") }

// OCIRoot is the cocoon handler's runtime_root, VMRoot the cocoon-vm
// handler's.
func (d *Daemon) OCIRoot() string { return d.Path("rt", "cocoon") }
func (d *Daemon) VMRoot() string  { return d.OCIRoot() + "-vm" }

// NSDir is CRI-O's namespaces_dir: pinns' mounts.
func (d *Daemon) NSDir() string { return d.Path("ns") }

// CNIDirs are CRI-O's CNI directories.
func (d *Daemon) CNIDirs() containerdtest.CNIDirs { return containerdtest.CNIDirsIn(d.Dir) }

// CRISocket is the CRI socket (kubetest.Runtime).
func (d *Daemon) CRISocket() string { return d.Socket }

// SandboxDir is where cocoon keeps the VM of pod id under the cocoon
// handler.
func (d *Daemon) SandboxDir(id string) string {
	return filepath.Join(testutil.SandboxRoot(d.OCIRoot()), container.SandboxIDFor(id))
}

// VMSandboxDir is where the shim of the cocoon-vm handler keeps the VM of
// pod id: beside the pod's bundles.
func (d *Daemon) VMSandboxDir(id string) string {
	return container.ContainerdSandboxRoot(filepath.Join(d.Runroot(), "vfs-containers", id))
}

// CrictlCommand returns crictl pointed at the daemon.
func (d *Daemon) CrictlCommand(ctx context.Context, args ...string) *exec.Cmd {
	return containerdtest.CrictlCommandOn(ctx, d.crictl, d.Socket, args...)
}

// podmanCommand runs podman on CRI-O's storage, with a private
// configuration: what podman keeps of its own stays under the daemon's
// directory.
func (d *Daemon) podmanCommand(ctx context.Context, args ...string) *exec.Cmd {
	global := []string{"--root", d.Root(), "--runroot", d.Runroot(), "--storage-driver", "vfs",
		"--tmpdir", d.Path("podman", "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	cmd := exec.CommandContext(ctx, "podman", append(global, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+d.Path("podman", "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+d.Path("storage.conf"), "CONTAINERS_REGISTRIES_CONF="+d.Path("registries.conf"))
	return cmd
}

// loadImages builds the busybox and pause images (docker archives) and
// loads them into CRI-O's storage with podman.
func (d *Daemon) loadImages(ctx context.Context) error {
	for _, dir := range []string{d.Path("podman", "tmp"), d.Path("images")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		d.Path("podman", "containers.conf"): fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\ntmp_dir = %q\nstatic_dir = %q\nvolume_path = %q\n",
			d.Path("podman", "tmp"), d.Path("podman", "static"), d.Path("podman", "volumes")),
		d.Path("storage.conf"):    fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", d.Root(), d.Runroot()),
		d.Path("registries.conf"): "unqualified-search-registries = []\n",
	}
	if err := writeFiles(files); err != nil {
		return err
	}
	busyboxRootfs, pauseRootfs := d.Path("images", "busybox"), d.Path("images", "pause")
	if err := testutil.BusyboxRootfs(busyboxRootfs); err != nil {
		return err
	}
	if err := containerdtest.PauseRootfs(ctx, pauseRootfs); err != nil {
		return err
	}
	defer os.RemoveAll(d.Path("images"))
	for _, img := range []containerdtest.Image{
		{Name: containerdtest.BusyboxImage, Rootfs: busyboxRootfs, Cmd: []string{"sh"}},
		{Name: containerdtest.PauseImage, Rootfs: pauseRootfs, Cmd: []string{"/pause"}},
	} {
		archive := img.Rootfs + ".tar"
		if err := containerdtest.WriteDockerArchive(archive, img); err != nil {
			return err
		}
		if out, err := d.podmanCommand(ctx, "load", "-i", archive).CombinedOutput(); err != nil {
			return fmt.Errorf("podman load %s into CRI-O's storage: %w: %s", img.Name, err, out)
		}
	}
	return nil
}

func writeFiles(files map[string]string) error {
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// configure writes CRI-O's configuration: crio.conf with the daemon's
// directories, runc as the default handler, and the drop-in directory
// with cocoon's drop-in as packaging/crio/register.sh installs it, naming
// cocoon's configuration at config.
func (d *Daemon) configure(o Options, config string) error {
	for _, dir := range []string{d.Path("crio.conf.d"), d.Path("logs"), d.Path("lib"), d.Path("run"), d.Path("hooks"), d.Path("cdi"), d.Path("keys"), d.Path("rt"), d.Path("registries.conf.d"), d.Path("tmp"), d.NSDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	conmon, err := exec.LookPath("conmon")
	if err != nil {
		return fmt.Errorf("conmon not found (packaging/deps.sh installs it): %w", err)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("runc not found (packaging/deps.sh installs it): %w", err)
	}
	conf := fmt.Sprintf(`[crio]
root = %[1]q
runroot = %[2]q
storage_driver = "vfs"
log_dir = %[3]q
version_file = %[4]q
version_file_persist = %[5]q
clean_shutdown_file = %[6]q

[crio.api]
listen = %[7]q
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
log_level = "debug"
container_exits_dir = %[8]q
container_attach_socket_dir = %[9]q
namespaces_dir = %[10]q
pinns_path = %[11]q
hooks_dir = [%[12]q]
cdi_spec_dirs = [%[13]q]
decryption_keys_path = %[14]q
irqbalance_config_file = %[15]q
irqbalance_config_restore_file = "disable"

[crio.runtime.runtimes.runc]
runtime_path = %[16]q
runtime_type = "oci"
runtime_root = %[17]q
monitor_path = %[18]q
monitor_cgroup = "pod"

[crio.image]
pause_image = %[19]q
pause_command = "/pause"
signature_policy = %[20]q
signature_policy_dir = %[25]q
namespaced_auth_dir = %[26]q
big_files_temporary_dir = %[21]q

[crio.network]
cni_default_network = %[22]q
network_dir = %[23]q
plugin_dirs = [%[24]q]

[crio.nri]
enable_nri = false
`, d.Root(), d.Runroot(), d.Path("logs"), d.Path("run", "version"), d.Path("lib", "version"), d.Path("lib", "clean.shutdown"),
		d.Socket, d.Path("run", "exits"), d.Path("run"), d.NSDir(), d.pinns(),
		d.Path("hooks"), d.Path("cdi"), d.Path("keys"), d.Path("irqbalance"),
		runc, d.Path("rt", "runc"), conmon, containerdtest.PauseImage, d.Path("policy.json"), d.Path("tmp"),
		o.PodNetwork.Name, d.CNIDirs().Conf, d.CNIDirs().Bin, d.Path("policies"), d.Path("auth"))
	if err := writeFiles(map[string]string{
		d.Path("crio.conf"):   conf,
		d.Path("policy.json"): `{"default": [{"type": "insecureAcceptAnything"}]}` + "\n",
	}); err != nil {
		return err
	}
	// The drop-in users get, with the paths of this tree.
	reg := exec.Command("bash", filepath.Join(o.Repo, "packaging", "crio", "register.sh"), "register")
	reg.Env = append(os.Environ(), "CRIO_DROPIN_DIR="+d.Path("crio.conf.d"), "COCOON_BINDIR="+o.Bin,
		"COCOON_CONFIG="+config, "COCOON_RUNTIME_ROOT="+d.OCIRoot(),
		"CONMON="+conmon, "CRIO_RESTART=no")
	if out, err := reg.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging/crio/register.sh register: %w: %s", err, out)
	}
	return nil
}

func (d *Daemon) pinns() string { return filepath.Join(filepath.Dir(d.path), "pinns") }

// start starts CRI-O and waits until it answers.
func (d *Daemon) start() error {
	var env []string
	for _, e := range os.Environ() {
		// With XDG_RUNTIME_DIR set, CRI-O gives a streaming exec's runtime
		// nothing else of its environment.
		if !strings.HasPrefix(e, "XDG_RUNTIME_DIR=") {
			env = append(env, e)
		}
	}
	d.proc = &testutil.Daemon{Name: "crio", Path: d.path, Log: d.Path("crio.log"),
		Env: append(env, "CONTAINERS_STORAGE_CONF="+d.Path("storage.conf"), "CONTAINERS_REGISTRIES_CONF="+d.Path("registries.conf")),
		Args: []string{"--config", d.Path("crio.conf"), "--config-dir", d.Path("crio.conf.d"),
			"--root", d.Root(), "--runroot", d.Runroot(), "--listen", d.Socket, "--log-dir", d.Path("logs"),
			"--cni-config-dir", d.CNIDirs().Conf, "--cni-plugin-dir", d.CNIDirs().Bin,
			"--pinns-path", d.pinns(),
			"--registries-conf", d.Path("registries.conf"), "--registries-conf-dir", d.Path("registries.conf.d")}}
	return d.run()
}

// run starts CRI-O's process and waits until it answers.
func (d *Daemon) run() error {
	if err := d.proc.Start(); err != nil {
		return err
	}
	return d.proc.Poll(time.Minute, func() error {
		out, err := d.CrictlCommand(context.Background(), "version").CombinedOutput()
		if err == nil && !strings.Contains(string(out), Version) {
			err = fmt.Errorf("not CRI-O %s", Version)
		}
		if err != nil {
			return fmt.Errorf("crictl version: %w: %s", err, out)
		}
		return nil
	})
}

// Restart stops CRI-O (TERM, as a service manager does) and starts it
// again; pods keep running meanwhile.
func (d *Daemon) Restart() error {
	d.Stop()
	return d.run()
}

// Stop stops CRI-O by its PID: TERM, then KILL after 30 s.
func (d *Daemon) Stop() {
	if d.proc != nil {
		d.proc.Stop(30 * time.Second)
	}
}

// LogTail returns the end of CRI-O's log (debug level).
func (d *Daemon) LogTail() string {
	if d.proc == nil {
		return "crio did not start"
	}
	return d.proc.LogTail(12000)
}

// SaveLog copies CRI-O's log to dst.
func (d *Daemon) SaveLog(dst string) error {
	data, err := os.ReadFile(d.Path("crio.log"))
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// Leftovers reports (and removes) what CRI-O and cocoon left, after Stop:
// VM templates (destroyed), processes and mounts of the daemon's
// directories, pinned namespaces, cocoon's state, the pod network's
// leases and interfaces (and its bridge, which CNI never removes), and
// CRI-O's default state directories on the host that were not there
// before.
func (d *Daemon) Leftovers() []string {
	var problems []string
	if d.Templates != nil {
		if err := d.Templates.Destroy(2); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Stat(p); err == nil && !d.preexisting[p] {
			problems = append(problems, "CRI-O made "+p)
			_ = os.RemoveAll(p)
		}
	}
	for _, p := range append(testutil.ProcessesOf(d.Dir+"/"), testutil.ProcessesOf(testutil.SandboxRoot(d.OCIRoot()))...) {
		problems = append(problems, "process left: "+p)
	}
	for _, m := range containerdtest.MountsUnder(d.Dir) {
		problems = append(problems, "mount left: "+m)
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	for _, ns := range []string{"netns", "ipcns", "utsns", "usernsns", "pidns"} {
		entries, _ := os.ReadDir(filepath.Join(d.NSDir(), ns))
		for _, e := range entries {
			problems = append(problems, "pinned namespace left: "+filepath.Join(ns, e.Name()))
		}
	}
	if entries, _ := os.ReadDir(d.OCIRoot()); len(entries) > 0 {
		problems = append(problems, fmt.Sprintf("%s not empty: %d entries", d.OCIRoot(), len(entries)))
	}
	if _, err := os.Stat(testutil.SandboxRoot(d.OCIRoot())); err == nil {
		problems = append(problems, testutil.SandboxRoot(d.OCIRoot())+" still exists")
	}
	if d.podNet != nil {
		problems = append(problems, d.podNet.Leftovers(d.CNIDirs().State)...)
		if err := d.podNet.RemoveBridge(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems
}

// Remove removes the daemon's directory, after Stop and Leftovers.
func (d *Daemon) Remove() { os.RemoveAll(d.Dir) }
