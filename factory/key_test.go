package factory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/internal/statedir"
)

// keyFixture is a VM config whose QEMU binary, kernel and initrd are files
// of the test's own.
func keyFixture(t *testing.T) hypervisor.VMConfig {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return hypervisor.VMConfig{
		Binary:       write("qemu", "#!/bin/sh\n", 0o755),
		Kernel:       write("vmlinux", "kernel", 0o644),
		Initrd:       write("initrd.img", "initrd", 0o644),
		Machine:      "microvm",
		Accelerator:  hypervisor.TCG,
		VCPUs:        1,
		MemoryMiB:    1024,
		KernelParams: []string{"cocoon.log=info"},
		NICs:         make([]hypervisor.NIC, 1),
	}
}

// TestTemplateKey: the key is stable, and changes with everything a saved
// guest depends on: the files (by size, time or inode), the machine's
// shape, the kernel parameters, the shared file system.
func TestTemplateKey(t *testing.T) {
	base := keyFixture(t)
	k0, err := keyOf(base, "9p")
	if err != nil {
		t.Fatal(err)
	}
	if k1, _ := keyOf(base, "9p"); k1.Hash() != k0.Hash() {
		t.Fatalf("the key of one config changed: %s, %s", k0.Hash(), k1.Hash())
	}
	// A new guest ABI (CPU model, fixed devices) must not restore an old
	// template.
	if k0.GuestABI != qemu.GuestABI {
		t.Errorf("key has guest abi %d, qemu's is %d", k0.GuestABI, qemu.GuestABI)
	}
	newABI := k0
	newABI.GuestABI++
	if newABI.Hash() == k0.Hash() {
		t.Error("the key did not change with the guest abi")
	}
	changes := map[string]func(c *hypervisor.VMConfig) string{
		"vcpus":         func(c *hypervisor.VMConfig) string { c.VCPUs = 2; return "9p" },
		"memory":        func(c *hypervisor.VMConfig) string { c.MemoryMiB = 2048; return "9p" },
		"machine":       func(c *hypervisor.VMConfig) string { c.Machine = "q35"; return "9p" },
		"accelerator":   func(c *hypervisor.VMConfig) string { c.Accelerator = hypervisor.KVM; return "9p" },
		"nics":          func(c *hypervisor.VMConfig) string { c.NICs = nil; return "9p" },
		"kernel params": func(c *hypervisor.VMConfig) string { c.KernelParams = []string{"cocoon.log=debug"}; return "9p" },
		"debug":         func(c *hypervisor.VMConfig) string { c.Debug = true; return "9p" },
		"shared fs":     func(c *hypervisor.VMConfig) string { return "virtio-fs" },
		"kernel": func(c *hypervisor.VMConfig) string {
			if err := os.WriteFile(c.Kernel, []byte("a new kernel"), 0o644); err != nil {
				t.Fatal(err)
			}
			return "9p"
		},
		"initrd replaced": func(c *hypervisor.VMConfig) string {
			// Same size and content, a new file (new inode, new time).
			tmp := c.Initrd + ".new"
			if err := os.WriteFile(tmp, []byte("initrd"), 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(tmp, old, old); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, c.Initrd); err != nil {
				t.Fatal(err)
			}
			return "9p"
		},
	}
	for name, change := range changes {
		c := keyFixture(t)
		k, err := keyOf(c, "9p")
		if err != nil {
			t.Fatal(err)
		}
		fs := change(&c)
		k2, err := keyOf(c, fs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k2.Hash() == k.Hash() {
			t.Errorf("%s: the key did not change", name)
		}
	}
	c := keyFixture(t)
	c.Kernel = filepath.Join(t.TempDir(), "missing")
	if _, err := keyOf(c, "9p"); err == nil {
		t.Error("a missing kernel gave a key")
	}
}

// TestReadTemplate: a template is found only whole.
func TestReadTemplate(t *testing.T) {
	dir := t.TempDir()
	key, err := keyOf(keyFixture(t), "9p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readTemplate(dir); err == nil {
		t.Fatal("an empty directory is a template")
	}
	want := &Template{Key: key, MACs: []string{"02:00:00:00:00:01"}, Created: time.Now().UTC()}
	if err := statedir.WriteJSON(filepath.Join(dir, templateMeta), want); err != nil {
		t.Fatal(err)
	}
	if _, err := readTemplate(dir); err == nil {
		t.Fatal("a template without memory and state files is a template")
	}
	for _, f := range []string{templateMemory, templateState} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readTemplate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key.Hash() != key.Hash() || got.Dir != dir || len(got.MACs) != 1 {
		t.Errorf("read %+v", got)
	}
	want.MACs = nil
	if err := statedir.WriteJSON(filepath.Join(dir, templateMeta), want); err != nil {
		t.Fatal(err)
	}
	if _, err := readTemplate(dir); err == nil || !strings.Contains(err.Error(), "macs") {
		t.Errorf("a template with no mac for its nic: %v", err)
	}
}
