// Package containerdtest runs a private containerd (Debian's 1.6 daemon,
// or the 2.x that `make containerd2` builds: Options.Containerd) for
// cocoon's containerd and CRI tests: its own root, state, socket and
// configuration under a temporary directory, bin/ first in its PATH so
// that it finds containerd-shim-cocoon-v2, and the development
// configuration of cocoon (or that configuration with VM templates on) in
// COCOON_CONFIG. It is stopped by PID.
package containerdtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/container"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// Runtime is cocoon's runtime type in containerd.
const Runtime = "io.containerd.cocoon.v2"

// HostNSRuntime is the CRI handler for pods on the host's network or IPC
// namespace: cocoon with runtime.host_namespaces = "guest", which gives
// them the VM's own (the "cocoon" handler refuses them).
const HostNSRuntime = "cocoon-hostns"

// Daemon is a running private containerd.
type Daemon struct {
	// Dir holds everything of the daemon.
	Dir string
	// Socket is its gRPC address.
	Socket string
	// Bin and Out are cocoon's bin/ and out/ directories.
	Bin, Out string
	// Major is the daemon's major version: 1 (Debian's 1.6) or 2.
	Major int
	// Version is its version, as `containerd --version` prints it
	// (e.g. 1.6.20~ds1, v2.4.2).
	Version string
	// Templates are the daemon's VM templates, with Options.Templates.
	Templates *testutil.Templates

	proc   *testutil.Daemon // the daemon's process
	ctr    string           // the ctr beside the daemon's binary
	podNet *PodNetwork
	// hostNSConfig is HostNSRuntime's configuration.
	hostNSConfig string
	log          string
	lastLog      string   // the log's tail, kept by Stop
	cniLeft      []string // what Stop found of the pod network
}

// Options say how to configure the daemon.
type Options struct {
	// Bin and Out are cocoon's bin/ and out/ directories; empty means
	// $COCOON_TEST_BIN and $COCOON_TEST_OUT.
	Bin, Out string
	// Containerd is the containerd binary to run; empty means
	// $COCOON_TEST_CONTAINERD, else the one on PATH (Debian's 1.6). The
	// ctr beside it is the tests' and, first in the daemon's PATH after
	// bin/, the shims beside it are the daemon's: Debian's runc shim does
	// not work with containerd 2.x, which brings its own.
	Containerd string
	// CRI enables the CRI plugin with runtime handlers "cocoon",
	// HostNSRuntime and "runc" and the given sandbox (pause) image;
	// otherwise the plugin is disabled.
	CRI          bool
	SandboxImage string
	// PodNetwork, with CRI, is the CNI network of the pods that do not
	// use the host's network; nil leaves the CNI configuration empty
	// (host-network pods only).
	PodNetwork *PodNetwork
	// Mirrors, with CRI, sends the pulls of registries to others: it maps
	// a registry's host (e.g. "registry.k8s.io") to the host:port of a
	// plain-HTTP registry that serves its images under the same
	// repository names (see writeRegistryHosts).
	Mirrors map[string]string
	// Templates, when not zero, turns VM templates on, in a template
	// directory of the daemon's own: the shim restores every sandbox from
	// a template. It is how many templates (one per shape: without NIC,
	// with one) the suite's sandboxes must have made; RunTests checks it,
	// then destroys them.
	Templates int
}

// Start starts a daemon in a new temporary directory.
func Start(o Options) (*Daemon, error) {
	bin, out := o.Bin, o.Out
	if bin == "" {
		bin = os.Getenv("COCOON_TEST_BIN")
	}
	if out == "" {
		out = os.Getenv("COCOON_TEST_OUT")
	}
	if bin == "" || out == "" {
		return nil, fmt.Errorf("COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
	}
	if _, err := os.Stat(filepath.Join(bin, "containerd-shim-cocoon-v2")); err != nil {
		return nil, fmt.Errorf("the shim is not built (make build): %w", err)
	}
	containerd := o.Containerd
	if containerd == "" {
		containerd = os.Getenv("COCOON_TEST_CONTAINERD")
	}
	if containerd == "" {
		containerd = "containerd"
	}
	containerd, err := exec.LookPath(containerd)
	if err != nil {
		return nil, fmt.Errorf("containerd not found (packaging/deps.sh installs Debian's, make containerd2 builds 2.x): %w", err)
	}
	version, major, err := containerdVersion(containerd)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cocoon-ctrd")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "containerd.sock"), Bin: bin, Out: out, Major: major, Version: version,
		ctr: filepath.Join(filepath.Dir(containerd), "ctr"), log: filepath.Join(dir, "containerd.log")}
	if o.CRI && o.PodNetwork != nil {
		if err := d.setupCNI(o.PodNetwork); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		d.podNet = o.PodNetwork
	}
	config := filepath.Join(out, "configuration.toml")
	if o.Templates > 0 {
		if d.Templates, err = testutil.NewTemplates(filepath.Join(bin, "cocoon-runtime"), config, dir); err == nil {
			err = d.Templates.Init()
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		config = d.Templates.Config
	}
	// HostNSRuntime's: the same with runtime.host_namespaces = "guest".
	d.hostNSConfig = filepath.Join(dir, "configuration-hostns.toml")
	if err := testutil.DeriveConfig(config, d.hostNSConfig, testutil.GuestNamespaces); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.writeRegistryHosts(o.Mirrors); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(d.config(o)), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d.proc = &testutil.Daemon{Name: "containerd", Path: containerd, Args: []string{"--config", cfg}, Log: d.log,
		Env: append(os.Environ(), "PATH="+bin+":"+filepath.Dir(containerd)+":"+os.Getenv("PATH"), "COCOON_CONFIG="+config)}
	if err := d.proc.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := d.wait(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Restart stops the daemon by its PID (TERM) and starts it again on the
// same directories, as a node's service manager restarts it: the shims and
// their sandboxes keep running, and the new daemon reconnects to them.
func (d *Daemon) Restart() error {
	d.proc.Stop(30 * time.Second)
	if err := d.proc.Start(); err != nil {
		return err
	}
	return d.wait()
}

// containerdVersion returns the version and major version of the
// containerd binary at path, from `containerd --version` ("containerd
// <module> <version> <revision>").
func containerdVersion(path string) (string, int, error) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", 0, fmt.Errorf("%s --version: %w", path, err)
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return "", 0, fmt.Errorf("%s --version: unexpected output %q", path, out)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(f[2], "v"), ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return "", 0, fmt.Errorf("%s --version: version %q: %w", path, f[2], err)
	}
	return f[2], n, nil
}

// config is the daemon's configuration: version 2 for containerd 1.x,
// version 3 for 2.x, whose CRI plugin is split into runtime and image
// plugins.
func (d *Daemon) config(o Options) string {
	if d.Major >= 2 {
		return d.configV3(o)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version = 2\nroot = %q\nstate = %q\n", filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"))
	if !o.CRI {
		// Top-level keys come before the first table.
		b.WriteString("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n")
	}
	fmt.Fprintf(&b, "[grpc]\n  address = %q\n", d.Socket)
	fmt.Fprintf(&b, "[debug]\n  level = \"debug\"\n")
	fmt.Fprintf(&b, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(d.Dir, "opt"))
	if !o.CRI {
		return b.String()
	}
	const cri = `plugins."io.containerd.grpc.v1.cri"`
	fmt.Fprintf(&b, "[%s]\n  sandbox_image = %q\n  restrict_oom_score_adj = true\n", cri, o.SandboxImage)
	fmt.Fprintf(&b, "[%s.containerd]\n  default_runtime_name = \"runc\"\n", cri)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n", cri)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.cocoon]\n  runtime_type = %q\n", cri, Runtime)
	// A handler with a configuration of its own, named in the runtime
	// options as Kata Containers' are.
	fmt.Fprintf(&b, "[%s.containerd.runtimes.%s]\n  runtime_type = %q\n", cri, HostNSRuntime, Runtime)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.%s.options]\n  ConfigPath = %q\n", cri, HostNSRuntime, d.hostNSConfig)
	fmt.Fprintf(&b, "[%s.cni]\n  bin_dir = %q\n  conf_dir = %q\n", cri, d.cniBinDir(), d.cniConfDir())
	if len(o.Mirrors) > 0 {
		fmt.Fprintf(&b, "[%s.registry]\n  config_path = %q\n", cri, d.registryHostsDir())
	}
	return b.String()
}

// configV3 is config for containerd 2.x.
func (d *Daemon) configV3(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version = 3\nroot = %q\nstate = %q\n", filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"))
	if !o.CRI {
		b.WriteString("disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.cri.v1.runtime\", \"io.containerd.cri.v1.images\"]\n")
	}
	fmt.Fprintf(&b, "[grpc]\n  address = %q\n", d.Socket)
	fmt.Fprintf(&b, "[debug]\n  level = \"debug\"\n")
	fmt.Fprintf(&b, "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = %q\n", filepath.Join(d.Dir, "opt"))
	if !o.CRI {
		return b.String()
	}
	fmt.Fprintf(&b, "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = %q\n", o.SandboxImage)
	if len(o.Mirrors) > 0 {
		fmt.Fprintf(&b, "[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n", d.registryHostsDir())
	}
	const rt = `plugins."io.containerd.cri.v1.runtime"`
	fmt.Fprintf(&b, "[%s]\n  restrict_oom_score_adj = true\n", rt)
	fmt.Fprintf(&b, "[%s.containerd]\n  default_runtime_name = \"runc\"\n", rt)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n", rt)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.cocoon]\n  runtime_type = %q\n", rt, Runtime)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.%s]\n  runtime_type = %q\n", rt, HostNSRuntime, Runtime)
	fmt.Fprintf(&b, "[%s.containerd.runtimes.%s.options]\n  ConfigPath = %q\n", rt, HostNSRuntime, d.hostNSConfig)
	fmt.Fprintf(&b, "[%s.cni]\n  bin_dirs = [%q]\n  conf_dir = %q\n", rt, d.cniBinDir(), d.cniConfDir())
	return b.String()
}

// wait waits until the daemon answers.
func (d *Daemon) wait() error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-d.proc.Exited():
			return fmt.Errorf("containerd exited: %s", d.LogTail())
		default:
		}
		if _, err := d.Ctr(context.Background(), "", "version"); err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not answer on %s within a minute: %s", d.Socket, d.LogTail())
}

// Ctr runs ctr against the daemon in namespace ns (default when empty) and
// returns its combined output.
func (d *Daemon) Ctr(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := d.CtrCommand(ctx, ns, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// CtrCommand returns the ctr command, for callers that set its stdio.
func (d *Daemon) CtrCommand(ctx context.Context, ns string, args ...string) *exec.Cmd {
	if ns == "" {
		ns = "default"
	}
	cmd := exec.CommandContext(ctx, d.ctr, append([]string{"--address", d.Socket, "--namespace", ns}, args...)...)
	// containerd 2.x's ctr warns on stderr of the host's deprecated
	// features (cgroup v1 here), which is none of the tests' business.
	cmd.Env = append(os.Environ(), "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1")
	return cmd
}

// LogTail returns the end of the daemon's log.
func (d *Daemon) LogTail() string {
	data, err := os.ReadFile(d.log)
	if err != nil {
		return d.lastLog
	}
	if len(data) > 12000 {
		data = data[len(data)-12000:]
	}
	return string(data)
}

// Stop stops the daemon by its PID (TERM, then KILL), unmounts what it
// left under its directory, removes the pod network's bridge and the
// directory. Leftovers still sees the pod network's state afterwards.
func (d *Daemon) Stop() {
	d.proc.Stop(30 * time.Second)
	d.lastLog = d.LogTail()
	for _, m := range MountsUnder(d.Dir) {
		_ = unix.Unmount(m, unix.MNT_DETACH)
	}
	if d.podNet != nil {
		d.cniLeft = d.cniLeftovers(d.podNet)
		if err := d.podNet.RemoveBridge(); err != nil {
			d.cniLeft = append(d.cniLeft, err.Error())
		}
	}
	os.RemoveAll(d.Dir)
}

// MountsUnder lists the mount points under dir, deepest first.
func MountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var under []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			under = append(under, f[4])
		}
	}
	for i, j := 0, len(under)-1; i < j; i, j = i+1, j-1 {
		under[i], under[j] = under[j], under[i]
	}
	return under
}

// SandboxRoot is where the shim keeps the VMs of the daemon's namespace
// ns.
func (d *Daemon) SandboxRoot(ns string) string {
	return container.ContainerdSandboxRoot(filepath.Join(d.Dir, "state", "io.containerd.runtime.v2.task", ns))
}

// Processes returns the host processes whose command line contains one of
// the substrings, as "PID: command line".
func Processes(substrings ...string) []string {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var found []string
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(data) == 0 {
			continue
		}
		cl := strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " ")
		for _, s := range substrings {
			if strings.Contains(cl, s) {
				found = append(found, filepath.Base(dir)+": "+cl)
				break
			}
		}
	}
	return found
}

// QEMUs returns the QEMU processes that run sandboxes under root.
func QEMUs(root string) []string {
	var qemus []string
	for _, p := range Processes(root + "/") {
		if strings.Contains(p, "qemu-system") {
			qemus = append(qemus, p)
		}
	}
	return qemus
}

// Leftovers reports what the daemon's tests left: sandbox directories of
// the namespaces, shims, QEMU and proxy processes, mounts under the
// daemon's directory, and of the pod network: address leases, interfaces
// on the bridge, the bridge after Stop.
func (d *Daemon) Leftovers(namespaces ...string) error {
	var problems []string
	subs := []string{d.Dir} // a shim's -address is the daemon's socket
	for _, ns := range namespaces {
		root := d.SandboxRoot(ns)
		if entries, err := os.ReadDir(root); err == nil {
			problems = append(problems, fmt.Sprintf("%s still exists (%d entries)", root, len(entries)))
		}
		subs = append(subs, root+"/")
	}
	for _, p := range Processes(subs...) {
		problems = append(problems, "process left: "+p)
	}
	for _, m := range MountsUnder(d.Dir) {
		if strings.Contains(m, "/io.containerd.runtime.v2.task/") {
			problems = append(problems, "mount left: "+m)
		}
	}
	if d.podNet != nil {
		if !d.proc.Running() { // Stop looked before removing the state
			problems = append(problems, d.cniLeft...)
		} else {
			problems = append(problems, d.cniLeftovers(d.podNet)...)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
