package factory

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/sandbox"
)

// TestTemplatesOn: true and false decide; "auto" asks the QEMU whether it
// maps a template read-only for its clones.
func TestTemplatesOn(t *testing.T) {
	dir := t.TempDir()
	versionCache = filepath.Join(dir, "cache")
	defer func() { versionCache = qemu.VersionCacheDir }()
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hypervisor.Templates != config.Auto || cfg.Hypervisor.TemplatePool != 1 {
		t.Errorf("defaults: templates %q, pool %d; want auto, 1", cfg.Hypervisor.Templates, cfg.Hypervisor.TemplatePool)
	}
	for version, want := range map[string]bool{"7.2.22": false, "8.2.0": true, "10.0.2": true} {
		bin := filepath.Join(dir, "qemu-"+version)
		if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'QEMU emulator version "+version+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.Hypervisor.Path = bin
		cfg.Hypervisor.Templates = config.Auto
		if on, why := TemplatesOn(context.Background(), cfg); on != want || !strings.Contains(why, version) {
			t.Errorf("auto with QEMU %s: %t (%s), want %t", version, on, why, want)
		}
		cfg.Hypervisor.Templates = config.On
		if on, _ := TemplatesOn(context.Background(), cfg); !on {
			t.Errorf("true with QEMU %s: off", version)
		}
		cfg.Hypervisor.Templates = config.Off
		if on, _ := TemplatesOn(context.Background(), cfg); on {
			t.Errorf("false with QEMU %s: on", version)
		}
	}
}

// TestApplies: what never restores from a template, and why.
func TestApplies(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	m := &sandbox.Manager{Config: cfg}
	h := cfg.Hypervisor
	vm := hypervisor.VMConfig{VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, SharedDirs: []hypervisor.SharedDir{{Tag: sandbox.ShareTag, HostPath: "/s"}}}
	if ok, why := applies(m, vm); !ok {
		t.Errorf("templates on: refused: %s", why)
	}
	for name, c := range map[string]hypervisor.VMConfig{
		"vsock":     {VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, VsockCID: 9},
		"virtio-fs": {VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, SharedDirs: []hypervisor.SharedDir{{Tag: sandbox.ShareTag, HostPath: "/s", Socket: "/s.sock"}}},
		"two nics":  {VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB, NICs: make([]hypervisor.NIC, 2)},
		"sized":     {VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB + 256},
	} {
		if ok, _ := applies(m, c); ok {
			t.Errorf("%s: restored from a template", name)
		}
	}
}

// TestKindOf: only sandboxes of the configured size, with no network or a
// namespace of their own, fit a kind of the pool.
func TestKindOf(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	m := &sandbox.Manager{Config: cfg}
	h := &cfg.Hypervisor
	for name, tc := range map[string]struct {
		o    sandbox.Options
		want Kind
	}{
		"no network":          {sandbox.Options{}, NoNIC},
		"host network":        {sandbox.Options{Network: sandbox.Network{Host: true}}, NoNIC},
		"new namespace":       {sandbox.Options{Network: sandbox.Network{New: true}}, NewNetwork},
		"default size":        {sandbox.Options{Size: sandbox.Size{VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB}}, NoNIC},
		"more vcpus":          {sandbox.Options{Size: sandbox.Size{VCPUs: h.VCPUs + 1}}, ""},
		"more memory":         {sandbox.Options{Size: sandbox.Size{MemoryMiB: h.MemoryMiB + 256}}, ""},
		"a namespace to scan": {sandbox.Options{Network: sandbox.Network{NSPath: filepath.Join(t.TempDir(), "missing")}}, ""},
	} {
		if k := kindOf(m, tc.o); k != tc.want {
			t.Errorf("%s: kind %q, want %q", name, k, tc.want)
		}
	}
	h.Templates, h.TemplatePool = config.Off, 1
	if n := New("", nil).poolSize(m); n != 0 {
		t.Errorf("templates off, pool on: size %d", n)
	}
}

// TestPoolEntries: ready entries are those whose ready file names their
// kind; the others are taken or being made; a disabled pool's directory
// goes with its last sandbox, an enabled one's stays.
func TestPoolEntries(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hypervisor.Templates, cfg.Hypervisor.TemplatePool = config.On, 2
	cfg.Hypervisor.TemplateDir = t.TempDir()
	m := &sandbox.Manager{Config: cfg}
	f := New("", nil)
	dir := filepath.Join(poolRoot(m), "key")
	entry := func(name string, file string, kind Kind) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if file != "" {
			if err := os.WriteFile(filepath.Join(p, file), []byte(kind), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	entry(entryPrefix+"a", readyFile, NoNIC)
	entry(entryPrefix+"b", readyFile, NewNetwork)
	entry(entryPrefix+"c", readyFile, NoNIC)
	entry(entryPrefix+"d", takenFile, NoNIC)
	entry(entryPrefix+"e", "", "") // being made
	if got := readyEntries(dir, NoNIC); len(got) != 2 {
		t.Errorf("ready without nic: %v", got)
	}
	if got := readyEntries(dir, NewNetwork); len(got) != 1 || filepath.Base(got[0]) != entryPrefix+"b" {
		t.Errorf("ready with a network: %v", got)
	}
	if got := readyEntries(dir, ""); len(got) != 3 {
		t.Errorf("ready of any kind: %v", got)
	}

	// A taken sandbox of an enabled pool goes: the pool stays.
	for _, n := range []string{"a", "b", "c", "e"} {
		if err := os.RemoveAll(filepath.Join(dir, entryPrefix+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, fillLock), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(dir, entryPrefix+"d")
	f.Released(taken)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("an enabled pool was removed: %v", err)
	}
	// Disabled (factory destroy), the pool goes with its last sandbox.
	if err := os.WriteFile(filepath.Join(dir, disabledFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.Released(taken)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a pool with a sandbox left was removed: %v", err)
	}
	if err := os.RemoveAll(taken); err != nil {
		t.Fatal(err)
	}
	f.Released(taken)
	if _, err := os.Stat(poolRoot(m)); !os.IsNotExist(err) {
		t.Errorf("an empty disabled pool and the pools' directory are left: %v", err)
	}
}
