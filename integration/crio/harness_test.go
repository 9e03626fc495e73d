//go:build integration

// Package crio_test drives cocoon through a real CRI-O (built by `make
// crio` into the cache) with crictl, as the kubelet would. CRI-O runs on
// private directories and sockets (its storage root and runroot, its
// configuration and drop-in directories, exits and attach sockets, pinned
// namespaces, CNI configuration and plugins, logs), with the drop-in that
// packaging/crio/register.sh installs for users (paths adapted to bin/):
// the "cocoon" handler (cocoon-runtime under Debian's conmon) and the
// "cocoon-vm" handler (containerd-shim-cocoon-v2, runtime_type "vm"). No
// registry is reachable: the busybox and pause images are built here and
// loaded into CRI-O's storage (vfs) with podman before CRI-O starts. Every
// pod is on a CNI network (Debian's bridge and host-local plugins), since
// cocoon refuses host-network pods. VM templates are on, as in an
// install: every pod's VM is restored from one. Nothing is left behind: processes,
// mounts, pinned namespaces, CNI leases, VM state, cgroups.
package crio_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// CRIOVersion is the CRI-O that `make crio` builds.
const CRIOVersion = "1.36.3"

const (
	busybox        = containerdtest.BusyboxImage
	pause          = containerdtest.PauseImage
	commandTimeout = 3 * time.Minute
)

// podNetwork is the suite's CNI network, in the benchmarking range
// 198.18.0.0/15 (the TEST-NETs are the other suites': a bridge of each may
// be up at once).
var podNetwork = &containerdtest.PodNetwork{Name: "cocoon-crio-test", Bridge: "cocoon-crio0", Subnet: "198.18.71.0/24"}

// crioHostPaths are where CRI-O keeps state by default: the suite's CRI-O
// must not create them (its configuration moves every one under tmp).
var crioHostPaths = []string{"/etc/crio", "/var/lib/crio", "/run/crio", "/var/log/crio"}

// The suite's CRI-O, set once by TestMain.
var (
	tmp        string // everything of the suite's CRI-O
	crioPath   string
	crictlPath string
	crioPID    int
	crioExited chan struct{}
	crioLog    string
	guestRel   string // out/kernel.release
	hostRel    string
	cgParent   string // the pods' cgroup parent
	templates  *testutil.Templates
)

// Paths under tmp.
func path(elem ...string) string { return filepath.Join(append([]string{tmp}, elem...)...) }

func socket() string                  { return path("crio.sock") }
func root() string                    { return path("root") }
func runroot() string                 { return path("runroot") }
func ociRoot() string                 { return path("rt", "cocoon") } // the cocoon handler's runtime_root
func vmRoot() string                  { return ociRoot() + "-vm" }    // the cocoon-vm handler's
func nsDir() string                   { return path("ns") }           // namespaces_dir: pinns' mounts
func cniDirs() containerdtest.CNIDirs { return containerdtest.CNIDirsIn(tmp) }

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	preexisting := map[string]bool{}
	for _, p := range crioHostPaths {
		if _, err := os.Stat(p); err == nil {
			preexisting[p] = true
		}
	}
	if err := setup(bin, out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return 1
	}
	// conmon double-forks, and cocoon-runtime leaves the relays, QEMU and
	// the proxy behind on purpose: the suite adopts them, as a node's init
	// would.
	code := testutil.RunAdopting(m, func() error {
		stopCRIO()
		return leftovers(preexisting)
	})
	if code != 0 || os.Getenv("COCOON_TEST_DAEMON_LOG") != "" {
		// The whole log (debug level) is kept in out/, its tail printed.
		kept := filepath.Join(out, "crio.log")
		if data, err := os.ReadFile(crioLog); err == nil && os.WriteFile(kept, data, 0o644) == nil {
			fmt.Fprintf(os.Stderr, "--- CRI-O log: %s\n", kept)
		}
		fmt.Fprintf(os.Stderr, "--- CRI-O log tail:\n%s\n", logTail())
	}
	os.RemoveAll(tmp)
	return code
}

// setup builds the images, loads them into CRI-O's storage, writes CRI-O's
// configuration and starts it.
func setup(bin, out string) error {
	var err error
	if crioPath, err = CRIOPath(); err != nil {
		return err
	}
	if crictlPath, err = containerdtest.CrictlPath(); err != nil {
		return err
	}
	rel, err := os.ReadFile(filepath.Join(out, "kernel.release"))
	if err != nil {
		return err
	}
	guestRel = strings.TrimSpace(string(rel))
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	hostRel = unix.ByteSliceToString(uts.Release[:])
	if tmp, err = os.MkdirTemp("", "cocoon-crio"); err != nil {
		return err
	}
	cgParent = fmt.Sprintf("/cocoon-crio-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := loadImages(ctx); err != nil {
		return err
	}
	if err := podNetwork.Setup(cniDirs()); err != nil {
		return err
	}
	// VM templates on, as an installed cocoon has them: every pod's VM is
	// restored from one (factory init makes both shapes first).
	if templates, err = testutil.NewTemplates(filepath.Join(bin, "cocoon-runtime"), filepath.Join(out, "configuration.toml"), tmp); err == nil {
		err = templates.Init()
	}
	if err != nil {
		return err
	}
	if err := configure(bin, templates.Config); err != nil {
		return err
	}
	return startCRIO()
}

// CRIOPath is where `make crio` puts crio: $COCOON_CACHE/crio-<version>/bin
// (default /var/cache/cocoon), outside the clone; pinns is beside it.
func CRIOPath() (string, error) {
	cache := os.Getenv("COCOON_CACHE")
	if cache == "" {
		cache = "/var/cache/cocoon"
	}
	p := filepath.Join(cache, "crio-"+CRIOVersion, "bin", "crio")
	for _, f := range []string{p, filepath.Join(filepath.Dir(p), "pinns")} {
		if _, err := os.Stat(f); err != nil {
			return "", fmt.Errorf("CRI-O %s is not built (make crio): %w", CRIOVersion, err)
		}
	}
	return p, nil
}

// podmanEnv and podmanArgs run podman on CRI-O's storage, with a private
// configuration: what podman keeps of its own stays under tmp.
func podmanCommand(ctx context.Context, args ...string) *exec.Cmd {
	global := []string{"--root", root(), "--runroot", runroot(), "--storage-driver", "vfs",
		"--tmpdir", path("podman", "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	cmd := exec.CommandContext(ctx, "podman", append(global, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+path("podman", "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+path("storage.conf"), "CONTAINERS_REGISTRIES_CONF="+path("registries.conf"))
	return cmd
}

// loadImages builds the busybox and pause images (docker archives) and
// loads them into CRI-O's storage with podman.
func loadImages(ctx context.Context) error {
	for _, d := range []string{path("podman", "tmp"), path("images")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		path("podman", "containers.conf"): fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"none\"\ntmp_dir = %q\nstatic_dir = %q\nvolume_path = %q\n",
			path("podman", "tmp"), path("podman", "static"), path("podman", "volumes")),
		path("storage.conf"):    fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", root(), runroot()),
		path("registries.conf"): "unqualified-search-registries = []\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	busyboxRootfs, pauseRootfs := path("images", "busybox"), path("images", "pause")
	if err := testutil.BusyboxRootfs(busyboxRootfs); err != nil {
		return err
	}
	if err := containerdtest.PauseRootfs(ctx, pauseRootfs); err != nil {
		return err
	}
	defer os.RemoveAll(path("images"))
	for _, img := range []containerdtest.Image{
		{Name: busybox, Rootfs: busyboxRootfs, Cmd: []string{"sh"}},
		{Name: pause, Rootfs: pauseRootfs, Cmd: []string{"/pause"}},
	} {
		archive := img.Rootfs + ".tar"
		if err := containerdtest.WriteDockerArchive(archive, img); err != nil {
			return err
		}
		if out, err := podmanCommand(ctx, "load", "-i", archive).CombinedOutput(); err != nil {
			return fmt.Errorf("podman load %s into CRI-O's storage: %w: %s", img.Name, err, out)
		}
	}
	return nil
}

// configure writes CRI-O's configuration: crio.conf with the suite's
// directories, runc as the default handler, and the drop-in directory
// with cocoon's drop-in as packaging/crio/register.sh installs it, naming
// cocoon's configuration at config.
func configure(bin, config string) error {
	for _, d := range []string{path("crio.conf.d"), path("logs"), path("lib"), path("run"), path("hooks"), path("cdi"), path("keys"), path("rt"), path("registries.conf.d"), nsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
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
`, root(), runroot(), path("logs"), path("run", "version"), path("lib", "version"), path("lib", "clean.shutdown"),
		socket(), path("run", "exits"), path("run"), nsDir(), filepath.Join(filepath.Dir(crioPath), "pinns"),
		path("hooks"), path("cdi"), path("keys"), path("irqbalance"),
		runc, path("rt", "runc"), conmon, pause, path("policy.json"), path("tmp"),
		podNetwork.Name, cniDirs().Conf, cniDirs().Bin, path("policies"), path("auth"))
	files := map[string]string{
		path("crio.conf"):   conf,
		path("policy.json"): `{"default": [{"type": "insecureAcceptAnything"}]}` + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(path("tmp"), 0o755); err != nil {
		return err
	}
	// The drop-in users get, with the paths of this tree.
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	reg := exec.Command("bash", filepath.Join(repo, "packaging", "crio", "register.sh"), "register")
	reg.Env = append(os.Environ(), "CRIO_DROPIN_DIR="+path("crio.conf.d"), "COCOON_BINDIR="+bin,
		"COCOON_CONFIG="+config, "COCOON_RUNTIME_ROOT="+ociRoot(),
		"CONMON="+conmon, "CRIO_RESTART=no")
	if out, err := reg.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging/crio/register.sh register: %w: %s", err, out)
	}
	return nil
}

// startCRIO starts CRI-O and waits until it answers.
func startCRIO() error {
	crioLog = path("crio.log")
	logFile, err := os.Create(crioLog)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(crioPath, "--config", path("crio.conf"), "--config-dir", path("crio.conf.d"),
		"--root", root(), "--runroot", runroot(), "--listen", socket(), "--log-dir", path("logs"),
		"--cni-config-dir", cniDirs().Conf, "--cni-plugin-dir", cniDirs().Bin,
		"--pinns-path", filepath.Join(filepath.Dir(crioPath), "pinns"),
		"--registries-conf", path("registries.conf"), "--registries-conf-dir", path("registries.conf.d"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	var env []string
	for _, e := range os.Environ() {
		// With XDG_RUNTIME_DIR set, CRI-O gives a streaming exec's runtime
		// nothing else of its environment.
		if !strings.HasPrefix(e, "XDG_RUNTIME_DIR=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "CONTAINERS_STORAGE_CONF="+path("storage.conf"), "CONTAINERS_REGISTRIES_CONF="+path("registries.conf"))
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting crio: %w", err)
	}
	crioPID = cmd.Process.Pid
	crioExited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(crioExited) }()
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-crioExited:
			return fmt.Errorf("crio exited: %s", logTail())
		default:
		}
		if out, err := crictlCommand(context.Background(), "version").CombinedOutput(); err == nil && strings.Contains(string(out), CRIOVersion) {
			return nil
		} else if time.Now().After(deadline) {
			stopCRIO()
			return fmt.Errorf("crio did not answer on %s within a minute: %s: %s", socket(), out, logTail())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// stopCRIO stops CRI-O by its PID: TERM, then KILL.
func stopCRIO() {
	if crioExited == nil {
		return
	}
	_ = unix.Kill(crioPID, unix.SIGTERM)
	select {
	case <-crioExited:
	case <-time.After(30 * time.Second):
		_ = unix.Kill(crioPID, unix.SIGKILL)
		<-crioExited
	}
}

func logTail() string {
	data, err := os.ReadFile(crioLog)
	if err != nil {
		return err.Error()
	}
	if len(data) > 12000 {
		data = data[len(data)-12000:]
	}
	return string(data)
}

// leftovers reports (and removes) what the suite left: processes and
// mounts of its directories, pinned namespaces, cocoon's state, the pod
// network's leases and interfaces (and its bridge, which CNI never
// removes), cgroups under the pods' parent, and CRI-O's default state
// directories on the host that were not there before.
func leftovers(preexisting map[string]bool) error {
	var problems []string
	if templates != nil {
		if err := templates.Destroy(2); err != nil {
			problems = append(problems, err.Error())
		}
	}
	for _, p := range crioHostPaths {
		if _, err := os.Stat(p); err == nil && !preexisting[p] {
			problems = append(problems, "CRI-O made "+p)
			_ = os.RemoveAll(p)
		}
	}
	for _, p := range append(testutil.ProcessesOf(tmp+"/"), testutil.ProcessesOf(testutil.SandboxRoot(ociRoot()))...) {
		problems = append(problems, "process left: "+p)
	}
	for _, m := range containerdtest.MountsUnder(tmp) {
		problems = append(problems, "mount left: "+m)
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	for _, d := range []string{"netns", "ipcns", "utsns", "usernsns", "pidns"} {
		entries, _ := os.ReadDir(filepath.Join(nsDir(), d))
		for _, e := range entries {
			problems = append(problems, "pinned namespace left: "+filepath.Join(d, e.Name()))
		}
	}
	if entries, _ := os.ReadDir(ociRoot()); len(entries) > 0 {
		problems = append(problems, fmt.Sprintf("%s not empty: %d entries", ociRoot(), len(entries)))
	}
	if _, err := os.Stat(testutil.SandboxRoot(ociRoot())); err == nil {
		problems = append(problems, testutil.SandboxRoot(ociRoot())+" still exists")
	}
	problems = append(problems, podNetwork.Leftovers(cniDirs().State)...)
	if err := podNetwork.RemoveBridge(); err != nil {
		problems = append(problems, err.Error())
	}
	// The pods' cgroups (the parents named in their configurations) are
	// the kubelet's to make and remove, as CRI-O leaves them: the suite
	// removes them; any cgroup still in one is left by CRI-O or cocoon.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgParent)
	for _, dir := range dirs {
		pods, _ := os.ReadDir(dir)
		for _, pod := range pods {
			if !pod.IsDir() {
				continue
			}
			podDir := filepath.Join(dir, pod.Name())
			entries, _ := os.ReadDir(podDir)
			for _, e := range entries {
				if e.IsDir() {
					problems = append(problems, "cgroup left: "+filepath.Join(podDir, e.Name()))
					_ = os.Remove(filepath.Join(podDir, e.Name()))
				}
			}
			_ = os.Remove(podDir)
		}
		if err := os.Remove(dir); err != nil {
			problems = append(problems, fmt.Sprintf("removing cgroup %s: %v", dir, err))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// crictlCommand returns crictl pointed at the suite's CRI-O.
func crictlCommand(ctx context.Context, args ...string) *exec.Cmd {
	ep := "unix://" + socket()
	return exec.CommandContext(ctx, crictlPath, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "180s"}, args...)...)
}

// crictlIn runs crictl with stdin.
func crictlIn(t testing.TB, stdin string, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunClient(t, commandTimeout, stdin, func(ctx context.Context) *exec.Cmd { return crictlCommand(ctx, args...) })
}

func crictl(t testing.TB, args ...string) testutil.Result {
	t.Helper()
	return crictlIn(t, "", args...)
}

func mustCrictl(t testing.TB, args ...string) string {
	t.Helper()
	r := crictl(t, args...)
	if r.Code != 0 {
		t.Fatalf("crictl %v: %v", args, r)
	}
	return strings.TrimSpace(r.Stdout)
}
