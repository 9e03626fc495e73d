package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ text, want string }{
		"unknown key":  {"[hypervisor]\nvcpu = 2\n", "unknown key hypervisor.vcpu"},
		"wrong type":   {"[hypervisor]\nvcpus = \"two\"\n", "line 2"},
		"bad choice":   {"[hypervisor]\nmachine = \"pc\"\n", `hypervisor.machine: "pc" is not one of`},
		"bad duration": {"[agent]\nboot_timeout = \"soon\"\n", "bad duration"},
		"range":        {"[hypervisor]\nvcpus = 0\n", "hypervisor.vcpus"},
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
