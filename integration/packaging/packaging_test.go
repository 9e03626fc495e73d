//go:build integration

// Package packaging tests the host setup of cocoon the way CI and the
// Vagrant VMs run it: packaging/setup-host.sh builds, installs (into a
// DESTDIR) and registers cocoon with Docker, containerd, CRI-O and
// Kubernetes (files moved to a temporary directory by their environment
// variables, each holding settings of its own that must survive), twice,
// then unregisters and uninstalls; the installed runtime's check and env
// run against the installed assets; every shell script passes shellcheck;
// both Vagrantfiles pass `vagrant validate`.
package packaging

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// top is the source tree.
func top(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "packaging", "setup-host.sh")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot maps every file under the roots to its content.
func snapshot(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			m[p] = string(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
}

const (
	daemonJSON = `{"log-level": "warn", "storage-driver": "overlay2", "runtimes": {"other": {"path": "/usr/bin/other-runtime"}}}`
	// Debian 12's /etc/containerd/config.toml, with a comment to keep.
	containerdTOML = `version = 2

# a comment the registration must keep
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`
	otherDropIn = "[crio.runtime]\nlog_level = \"info\"\n"
)

// containerdDump is the part of `containerd config dump` the tests read.
type containerdDump struct {
	Plugins map[string]struct {
		CNI struct {
			BinDir string `toml:"bin_dir"`
		} `toml:"cni"`
		Containerd struct {
			Runtimes map[string]struct {
				Type string `toml:"runtime_type"`
			} `toml:"runtimes"`
		} `toml:"containerd"`
	} `toml:"plugins"`
}

func TestSetupHostInstallRegisterUninstall(t *testing.T) {
	src := top(t)
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "dest")
	files := struct{ daemon, containerd, crioDir, runtimeClass string }{
		filepath.Join(tmp, "docker", "daemon.json"),
		filepath.Join(tmp, "containerd", "config.toml"),
		filepath.Join(tmp, "crio.conf.d"),
		filepath.Join(tmp, "k8s", "runtimeclass.yaml"),
	}
	write(t, files.daemon, daemonJSON)
	write(t, files.containerd, containerdTOML)
	write(t, filepath.Join(files.crioDir, "10-other.conf"), otherDropIn)
	env := []string{
		"DESTDIR=" + dest,
		"DOCKER_DAEMON_JSON=" + files.daemon,
		"DOCKER_PIDFILE=" + filepath.Join(tmp, "no-dockerd.pid"),
		"CONTAINERD_CONFIG=" + files.containerd,
		"CONTAINERD_RESTART=no",
		"CRIO_DROPIN_DIR=" + files.crioDir,
		"CRIO_RESTART=no",
		"RUNTIMECLASS_OUT=" + files.runtimeClass,
	}
	engines := "--register=docker,containerd,crio,kubernetes"

	run(t, src, env, "bash", "packaging/setup-host.sh", engines)
	first := snapshot(t, dest, filepath.Dir(files.daemon), filepath.Dir(files.containerd), files.crioDir, filepath.Dir(files.runtimeClass))
	run(t, src, env, "bash", "packaging/setup-host.sh", engines)
	second := snapshot(t, dest, filepath.Dir(files.daemon), filepath.Dir(files.containerd), files.crioDir, filepath.Dir(files.runtimeClass))
	if len(first) != len(second) {
		t.Fatalf("the second run changed the set of files: %d, then %d", len(first), len(second))
	}
	for p, b := range first {
		if second[p] != b {
			t.Errorf("the second run changed %s", p)
		}
	}

	t.Run("installed", func(t *testing.T) {
		for _, b := range []string{"cocoon-runtime", "cocoon-proxy", "cocoon-relay"} {
			st, err := os.Stat(filepath.Join(dest, "usr/local/bin", b))
			if err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("%s: %v %v", b, err, st)
			}
		}
		if _, err := os.Stat(filepath.Join(src, "bin", "containerd-shim-cocoon-v2")); err == nil {
			if _, err := os.Stat(filepath.Join(dest, "usr/local/bin/containerd-shim-cocoon-v2")); err != nil {
				t.Errorf("the built shim v2 is not installed: %v", err)
			}
		}
		for _, f := range []string{"vmlinux", "bzImage", "initrd.img", "kernel.release"} {
			if _, err := os.Stat(filepath.Join(dest, "usr/share/cocoon", f)); err != nil {
				t.Error(err)
			}
		}
		if got, want := read(t, filepath.Join(dest, "etc/cocoon/configuration.toml")), read(t, filepath.Join(src, "config/configuration.toml")); got != want {
			t.Error("the installed configuration is not the documented default")
		}
	})

	t.Run("docker", func(t *testing.T) {
		var cfg map[string]any
		if err := json.Unmarshal([]byte(read(t, files.daemon)), &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg["log-level"] != "warn" || cfg["storage-driver"] != "overlay2" {
			t.Errorf("other keys lost: %v", cfg)
		}
		rts, _ := cfg["runtimes"].(map[string]any)
		cocoon, _ := rts["cocoon"].(map[string]any)
		if rts["other"] == nil || cocoon["path"] != "/usr/local/bin/cocoon-runtime" {
			t.Errorf("runtimes: %v", rts)
		}
	})

	t.Run("containerd", func(t *testing.T) {
		text := read(t, files.containerd)
		if !strings.HasPrefix(text, containerdTOML) {
			t.Errorf("the original settings and comment are not kept:\n%s", text)
		}
		// containerd itself reads the file: its merged configuration has
		// the handler (config dump starts no daemon).
		dump := run(t, tmp, nil, "containerd", "--config", files.containerd, "config", "dump")
		var cfg containerdDump
		if _, err := toml.Decode(dump, &cfg); err != nil {
			t.Fatal(err)
		}
		cri := cfg.Plugins["io.containerd.grpc.v1.cri"]
		if cri.Containerd.Runtimes["cocoon"].Type != "io.containerd.cocoon.v2" {
			t.Errorf("containerd's runtimes: %+v", cri.Containerd.Runtimes)
		}
		if cri.CNI.BinDir != "/usr/lib/cni" {
			t.Errorf("cni bin_dir: %q", cri.CNI.BinDir)
		}
	})

	t.Run("crio", func(t *testing.T) {
		var cfg struct {
			Crio struct {
				Runtime struct {
					Runtimes map[string]map[string]any `toml:"runtimes"`
				} `toml:"runtime"`
			} `toml:"crio"`
		}
		if _, err := toml.DecodeFile(filepath.Join(files.crioDir, "50-cocoon.conf"), &cfg); err != nil {
			t.Fatal(err)
		}
		oci, vm := cfg.Crio.Runtime.Runtimes["cocoon"], cfg.Crio.Runtime.Runtimes["cocoon-vm"]
		if oci["runtime_type"] != "oci" || oci["runtime_path"] != "/usr/local/bin/cocoon-runtime" || !strings.HasSuffix(oci["monitor_path"].(string), "conmon") {
			t.Errorf("cocoon handler: %v", oci)
		}
		if vm["runtime_type"] != "vm" || vm["runtime_path"] != "/usr/local/bin/containerd-shim-cocoon-v2" {
			t.Errorf("cocoon-vm handler: %v", vm)
		}
		// CRI-O gives the oci handler's runtime monitor_env only: the
		// configuration is named there.
		env, _ := oci["monitor_env"].([]any)
		if !slices.Contains(env, any("COCOON_CONFIG=/etc/cocoon/configuration.toml")) || oci["runtime_root"] != "/run/cocoon" ||
			vm["runtime_config_path"] != "/etc/cocoon/configuration.toml" || vm["runtime_root"] != "/run/cocoon-vm" {
			t.Errorf("handlers' configuration and roots: %v, %v", oci, vm)
		}
		if read(t, filepath.Join(files.crioDir, "10-other.conf")) != otherDropIn {
			t.Error("another drop-in was changed")
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		rc := read(t, files.runtimeClass)
		for _, want := range []string{"kind: RuntimeClass", "\n  name: cocoon\n", "\nhandler: cocoon\n", "\n  name: cocoon-vm\n", "\nhandler: cocoon-vm\n", "podFixed:", `memory: "210Mi"`, `cpu: "100m"`} {
			if !strings.Contains(rc, want) {
				t.Errorf("RuntimeClass lacks %q:\n%s", want, rc)
			}
		}
	})

	t.Run("check and env of the install", func(t *testing.T) {
		share := filepath.Join(dest, "usr/share/cocoon")
		cfg := filepath.Join(tmp, "installed.toml")
		write(t, cfg, "[hypervisor]\nkernel = \""+share+"/vmlinux\"\ninitrd = \""+share+"/initrd.img\"\n")
		rt := filepath.Join(dest, "usr/local/bin/cocoon-runtime")
		var rep struct {
			OK     bool `json:"ok"`
			Checks []struct {
				Name, Status, Detail, Fix string
			} `json:"checks"`
		}
		if err := json.Unmarshal([]byte(run(t, tmp, nil, rt, "--config", cfg, "check", "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.OK {
			t.Fatalf("check fails on this host: %+v", rep.Checks)
		}
		for _, c := range rep.Checks {
			t.Logf("%s %s: %s", c.Status, c.Name, c.Detail)
			switch c.Name {
			case "kernel", "initrd", "qemu", "qemu-9p", "tc", "tun":
				if c.Status != "pass" {
					t.Errorf("%s: %s %s", c.Name, c.Status, c.Detail)
				}
			case "accelerator":
				if cpu, _ := os.ReadFile("/proc/cpuinfo"); !bytes.Contains(cpu, []byte(" vmx")) && !bytes.Contains(cpu, []byte(" svm")) {
					if c.Status != "warn" || !strings.Contains(c.Detail, "tcg") || !strings.Contains(c.Detail, "vmx/svm") {
						t.Errorf("without vmx/svm check must warn about TCG naming vmx/svm: %+v", c)
					}
				}
			}
		}
		var env struct {
			Runtime struct{ Version string }
			Agent   struct {
				Version        string
				MatchesRuntime bool `json:"matches_runtime"`
			}
			Kernel     struct{ Release string }
			Hypervisor struct{ Version string }
			Config     struct {
				Hypervisor struct{ Kernel string }
			}
		}
		if err := json.Unmarshal([]byte(run(t, tmp, nil, rt, "--config", cfg, "env", "--json")), &env); err != nil {
			t.Fatal(err)
		}
		release := strings.TrimSpace(read(t, filepath.Join(share, "kernel.release")))
		if !env.Agent.MatchesRuntime || env.Agent.Version != env.Runtime.Version || env.Kernel.Release != release ||
			env.Hypervisor.Version == "" || env.Config.Hypervisor.Kernel != share+"/vmlinux" {
			t.Errorf("env: %+v (kernel.release %s)", env, release)
		}
		if _, err := toml.Decode(run(t, tmp, nil, rt, "--config", cfg, "env"), &map[string]any{}); err != nil {
			t.Errorf("env is not TOML: %v", err)
		}
	})

	for i := 0; i < 2; i++ {
		run(t, src, env, "bash", "packaging/setup-host.sh", "--uninstall", engines)
	}
	t.Run("uninstalled", func(t *testing.T) {
		left := snapshot(t, dest)
		if len(left) != 0 {
			t.Errorf("left in DESTDIR: %v", keys(left))
		}
		var cfg map[string]any
		if err := json.Unmarshal([]byte(read(t, files.daemon)), &cfg); err != nil {
			t.Fatal(err)
		}
		var orig map[string]any
		_ = json.Unmarshal([]byte(daemonJSON), &orig)
		if a, b := mustJSON(cfg), mustJSON(orig); a != b {
			t.Errorf("daemon.json: %s, was %s", a, b)
		}
		if got := read(t, files.containerd); got != containerdTOML {
			t.Errorf("containerd config not restored:\n%s", got)
		}
		if _, err := os.Stat(filepath.Join(files.crioDir, "50-cocoon.conf")); !os.IsNotExist(err) {
			t.Errorf("CRI-O drop-in left: %v", err)
		}
		if read(t, filepath.Join(files.crioDir, "10-other.conf")) != otherDropIn {
			t.Error("another drop-in was changed")
		}
		if _, err := os.Stat(files.runtimeClass); !os.IsNotExist(err) {
			t.Errorf("RuntimeClass left: %v", err)
		}
	})
}

// TestUninstallKeepsEditedConfiguration: make uninstall removes what make
// install put in place, except a configuration the user edited.
func TestUninstallKeepsEditedConfiguration(t *testing.T) {
	src := top(t)
	dest := t.TempDir()
	vars := []string{"DESTDIR=" + dest, "PREFIX=/opt/cocoon", "SHAREDIR=/opt/cocoon/share", "CONFDIR=/opt/cocoon/etc"}
	run(t, src, nil, "make", append([]string{"--no-print-directory", "install"}, vars...)...)
	conf := filepath.Join(dest, "opt/cocoon/etc/configuration.toml")
	text := read(t, conf)
	if !strings.Contains(text, `kernel = "/opt/cocoon/share/vmlinux"`) {
		t.Fatalf("the installed configuration does not name SHAREDIR's kernel:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(dest, "opt/cocoon/bin/cocoon-runtime")); err != nil {
		t.Fatal(err)
	}
	write(t, conf, strings.Replace(text, "vcpus = 1", "vcpus = 2", 1))
	out := run(t, src, nil, "make", append([]string{"--no-print-directory", "uninstall"}, vars...)...)
	if !strings.Contains(out, "keeping") {
		t.Errorf("uninstall did not say it keeps the edited file: %s", out)
	}
	left := snapshot(t, dest)
	if len(left) != 1 || left[conf] == "" {
		t.Fatalf("left after uninstall: %v", keys(left))
	}
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestShellcheck checks every shell script of the tree, the Vagrant
// provisioning scripts included.
func TestShellcheck(t *testing.T) {
	src := top(t)
	var scripts []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "out" || d.Name() == ".vagrant") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".sh") {
			scripts = append(scripts, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"packaging/setup-host.sh", "packaging/deps.sh", "packaging/vagrant/provision-dev.sh", "packaging/vagrant/k8s/common.sh"} {
		found := false
		for _, s := range scripts {
			found = found || s == filepath.Join(src, want)
		}
		if !found {
			t.Fatalf("%s not found among %v", want, scripts)
		}
	}
	t.Logf("%d scripts", len(scripts))
	run(t, src, nil, "shellcheck", append([]string{"-x"}, scripts...)...)
	// shellcheck finds faults: a script with one is refused.
	bad := filepath.Join(t.TempDir(), "bad.sh")
	write(t, bad, "#!/bin/bash\nrm -rf $1/*\n")
	if err := exec.Command("shellcheck", bad).Run(); err == nil {
		t.Fatal("shellcheck passed a script with an unquoted variable")
	}
}

// TestVagrantValidate validates both Vagrantfiles with Debian's vagrant:
// offline, no box, no VM; once with the provider configuration (libvirt,
// whose plugin is installed) and once with --ignore-provider as VirtualBox.
func TestVagrantValidate(t *testing.T) {
	src := top(t)
	home := t.TempDir()
	for _, dir := range []string{src, filepath.Join(src, "packaging/vagrant/k8s")} {
		for _, args := range [][]string{{"validate"}, {"validate", "--ignore-provider"}} {
			env := []string{"VAGRANT_HOME=" + filepath.Join(home, "home"), "VAGRANT_DOTFILE_PATH=" + filepath.Join(home, "dot"), "VAGRANT_CHECKPOINT_DISABLE=1"}
			if len(args) == 2 {
				env = append(env, "VAGRANT_DEFAULT_PROVIDER=virtualbox")
			}
			out := run(t, dir, env, "vagrant", args...)
			if !strings.Contains(out, "validated successfully") {
				t.Errorf("%s: vagrant %v: %s", dir, args, out)
			}
		}
	}
	// vagrant validate does reject a wrong Vagrantfile.
	bad := t.TempDir()
	text := read(t, filepath.Join(src, "Vagrantfile"))
	text = strings.Replace(text, `require_relative "packaging/vagrant/providers"`, `require "`+src+`/packaging/vagrant/providers"`, 1)
	broken := strings.Replace(text, `config.vm.hostname = "cocoon-dev"`, `config.vm.hostname = "cocoon-dev"; config.vm.no_such_option = 1`, 1)
	if broken == text {
		t.Fatal("the Vagrantfile no longer sets the hostname: update the test")
	}
	write(t, filepath.Join(bad, "Vagrantfile"), broken)
	cmd := exec.Command("vagrant", "validate")
	cmd.Dir = bad
	cmd.Env = append(os.Environ(), "VAGRANT_HOME="+filepath.Join(home, "home"), "VAGRANT_DOTFILE_PATH="+filepath.Join(home, "dot2"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no_such_option") {
		t.Fatalf("vagrant validate did not reject the unknown option (%v):\n%s", err, out)
	}
}

// TestContainerdDefaultConfig registers cocoon into the configuration that
// `containerd config default` writes (what the Kubernetes Vagrant nodes
// start from) and has containerd read the result back.
func TestContainerdDefaultConfig(t *testing.T) {
	src := top(t)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "config.toml")
	def := run(t, tmp, nil, "containerd", "config", "default")
	write(t, file, def)
	env := []string{"CONTAINERD_CONFIG=" + file, "CONTAINERD_RESTART=no"}
	run(t, src, env, "make", "--no-print-directory", "build")
	for i := 0; i < 2; i++ {
		run(t, src, env, "bash", "packaging/containerd/register.sh", "register")
	}
	var cfg containerdDump
	if _, err := toml.Decode(run(t, tmp, nil, "containerd", "--config", file, "config", "dump"), &cfg); err != nil {
		t.Fatal(err)
	}
	rts := cfg.Plugins["io.containerd.grpc.v1.cri"].Containerd.Runtimes
	if rts["cocoon"].Type != "io.containerd.cocoon.v2" || rts["runc"].Type != "io.containerd.runc.v2" {
		t.Fatalf("runtimes: %+v", rts)
	}
	run(t, src, env, "bash", "packaging/containerd/register.sh", "unregister")
	if read(t, file) != def {
		t.Fatal("unregister did not restore containerd's default configuration")
	}
}
