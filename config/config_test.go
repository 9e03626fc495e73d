package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"
)

func TestDefaultParses(t *testing.T) {
	c, err := Parse(Default())
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.VCPUs != 1 || c.Agent.BootTimeout.Seconds() != 6 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

// TestLoadErrors: every error names the key, and the line where the
// decoder knows it, in one line.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ text, want string }{
		"wrong type":      {"[hypervisor]\nvcpus = \"two\"\n", "line 2"},
		"bad choice":      {"[hypervisor]\nmachine = \"pc\"\n", `hypervisor.machine: "pc" is not one of`},
		"bad duration":    {"[agent]\nboot_timeout = \"soon\"\n", "bad duration"},
		"range":           {"[hypervisor]\nvcpus = 0\n", "hypervisor.vcpus"},
		"pool":            {"[hypervisor]\ntemplate_pool = 17\n", "hypervisor.template_pool: 17 is not between 0 and 16"},
		"unknown key":     {"# c\n[hypervisor]\nvcpus = 2\nvcpu = 2\n", "line 4: unknown key hypervisor.vcpu"},
		"unknown table":   {"[hypervisor]\n[hypervsor]\nvcpus = 2\n", "line 2: unknown key hypervsor"},
		"top level key":   {"debug = true\n", "line 1: unknown key debug"},
		"string for int":  {"[hypervisor]\n\nvcpus = \"two\"\n", "line 3: hypervisor.vcpus: wrong type"},
		"int for string":  {"[hypervisor]\nkernel = 5\n", "line 2: hypervisor.kernel: wrong type"},
		"string for list": {"[hypervisor]\nkernel_params = \"quiet\"\n", "line 2: hypervisor.kernel_params: wrong type"},
		"int duration":    {"[agent]\n\n\ncall_timeout = 5\n", "line 4: agent.call_timeout"},
		"bool as string":  {"[hypervisor]\ndebug_console = \"yes\"\n", "line 2: hypervisor.debug_console: wrong type"},
		"syntax":          {"[hypervisor]\nvcpus = \n", "line 2"},
		"log level":       {"[runtime]\nlog_level = \"loud\"\n", `runtime.log_level: "loud" is not one of`},
		"host namespaces": {"[runtime]\nhost_namespaces = \"share\"\n", `runtime.host_namespaces: "share" is not one of refuse, guest`},
		"agent log level": {"[agent]\nlog_level = \"trace\"\n", `agent.log_level: "trace"`},
		"transport":       {"[agent]\ntransport = \"tcp\"\n", `agent.transport: "tcp"`},
		"accelerator":     {"[hypervisor]\naccelerator = \"hvf\"\n", `hypervisor.accelerator: "hvf"`},
		"memory":          {"[hypervisor]\nmemory_mib = 32\n", "hypervisor.memory_mib: 32 is below 64"},
		"zero timeout":    {"[agent]\ncall_timeout = \"0s\"\n", "agent.call_timeout: 0s is not positive"},
		"template dir":    {"[hypervisor]\ntemplates = true\ntemplate_dir = \"templates\"\n", `hypervisor.template_dir: "templates" is not an absolute path`},
		"no virtiofsd": {"[hypervisor]\nshared_fs = \"virtio-fs\"\nvirtiofsd = \"/nonexistent/virtiofsd\"\n",
			`needs virtiofsd, but hypervisor.virtiofsd /nonexistent/virtiofsd is missing: install the "virtiofsd" package`},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".toml")
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadOverridesAndResolves(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[hypervisor]\nkernel = \"k/vmlinux\"\nvcpus = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.Kernel != filepath.Join(dir, "k/vmlinux") || c.Hypervisor.VCPUs != 2 || c.Hypervisor.MemoryMiB != 1024 {
		t.Fatalf("got %+v", c.Hypervisor)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Fatal("a missing explicit file must be an error")
	}
}

func TestVirtioFSWithDaemon(t *testing.T) {
	dir := t.TempDir()
	daemon := filepath.Join(dir, "virtiofsd")
	if err := os.WriteFile(daemon, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[hypervisor]\nshared_fs = \"virtio-fs\"\nvirtiofsd = \""+daemon+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.SharedFS != "virtio-fs" || c.Hypervisor.Virtiofsd != daemon {
		t.Fatalf("hypervisor %+v", c.Hypervisor)
	}
	if err := os.Chmod(daemon, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "is not an executable file") {
		t.Fatalf("non-executable virtiofsd: got %v", err)
	}
}

// TestEveryOptionDocumented checks that the installed file documents every
// key: each key of the embedded default has a comment line above it.
func TestEveryOptionDocumented(t *testing.T) {
	lines := strings.Split(string(Default()), "\n")
	md, err := toml.Decode(string(Default()), &Config{})
	if err != nil {
		t.Fatal(err)
	}
	pos := keyLines(Default())
	want := []string{
		"hypervisor.path", "hypervisor.machine", "hypervisor.accelerator", "hypervisor.vcpus",
		"hypervisor.memory_mib", "hypervisor.max_vcpus", "hypervisor.max_memory_mib", "hypervisor.kernel", "hypervisor.initrd", "hypervisor.kernel_params",
		"hypervisor.shared_fs", "hypervisor.virtiofsd", "hypervisor.debug_console", "hypervisor.templates", "hypervisor.template_dir", "hypervisor.template_pool", "agent.transport",
		"agent.boot_timeout", "agent.call_timeout", "agent.health_timeout", "agent.log_level", "runtime.proxy_path", "runtime.log_level",
		"runtime.command_timeout", "runtime.delete_timeout", "runtime.host_namespaces",
	}
	if got := len(md.Keys()) - 3; got != len(want) { // minus the three tables
		t.Fatalf("the default has %d keys, the test knows %d: document and test the new one", got, len(want))
	}
	for _, k := range want {
		n, ok := pos[k]
		if !ok {
			t.Errorf("%s missing from the default configuration", k)
			continue
		}
		// Walk up over the keys of a group to the comment that documents it.
		i := n - 2
		for i >= 0 && !strings.HasPrefix(lines[i], "#") && strings.Contains(lines[i], "=") {
			i--
		}
		if i < 0 || !strings.HasPrefix(lines[i], "#") {
			t.Errorf("%s (line %d) has no comment above it", k, n)
		}
	}
}

func TestRuntimeLevel(t *testing.T) {
	if got := (Runtime{LogLevel: "debug"}).Level(); got != logrus.DebugLevel {
		t.Fatalf("got %v", got)
	}
}
