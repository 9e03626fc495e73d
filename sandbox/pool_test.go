package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cocoon-containers/cocoon/config"
)

// TestPoolKind: only sandboxes of the configured size, with no network or
// a namespace of their own, fit a kind of the pool, and only with
// templates and a pool on.
func TestPoolKind(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{Config: cfg}
	h := &cfg.Hypervisor
	none := createOptions{}
	if k := m.poolKind(none); k != "" {
		t.Errorf("templates and pool off: kind %q", k)
	}
	h.Templates, h.TemplatePool = true, 1
	for name, tc := range map[string]struct {
		o    createOptions
		want PoolKind
	}{
		"no network":          {none, PoolNoNIC},
		"host network":        {createOptions{network: Network{Host: true}}, PoolNoNIC},
		"new namespace":       {createOptions{network: Network{New: true}}, PoolNewNetwork},
		"default size":        {createOptions{size: Size{VCPUs: h.VCPUs, MemoryMiB: h.MemoryMiB}}, PoolNoNIC},
		"more vcpus":          {createOptions{size: Size{VCPUs: h.VCPUs + 1}}, ""},
		"more memory":         {createOptions{size: Size{MemoryMiB: h.MemoryMiB + 256}}, ""},
		"a namespace to scan": {createOptions{network: Network{NSPath: filepath.Join(t.TempDir(), "missing")}}, ""},
	} {
		if k := m.poolKind(tc.o); k != tc.want {
			t.Errorf("%s: kind %q, want %q", name, k, tc.want)
		}
	}
	h.Templates = false
	if k := m.poolKind(none); k != "" {
		t.Errorf("templates off, pool on: kind %q", k)
	}
}

// TestPoolEntries: ready entries are those whose ready file names their
// kind; the others are taken or being made; a pool directory goes once it
// holds nothing but locks.
func TestPoolEntries(t *testing.T) {
	cfg, err := config.Parse(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hypervisor.Templates, cfg.Hypervisor.TemplatePool = true, 2
	cfg.Hypervisor.TemplateDir = t.TempDir()
	m := &Manager{Config: cfg}
	dir := filepath.Join(m.poolRoot(), "key")
	entry := func(name string, ready PoolKind) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if ready != "" {
			if err := os.WriteFile(filepath.Join(p, poolReadyFile), []byte(ready), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	entry(poolIDPrefix+"a", PoolNoNIC)
	entry(poolIDPrefix+"b", PoolNewNetwork)
	entry(poolIDPrefix+"c", PoolNoNIC)
	entry(poolIDPrefix+"d", "") // taken
	if got := m.readyEntriesIn(dir, PoolNoNIC); len(got) != 2 {
		t.Errorf("ready without nic: %v", got)
	}
	if got := m.readyEntriesIn(dir, PoolNewNetwork); len(got) != 1 || filepath.Base(got[0]) != poolIDPrefix+"b" {
		t.Errorf("ready with a network: %v", got)
	}
	if got := m.readyEntriesIn(dir, ""); len(got) != 3 {
		t.Errorf("ready of any kind: %v", got)
	}

	removeDisabledPool(dir)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a pool with sandboxes was removed: %v", err)
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		if err := os.RemoveAll(filepath.Join(dir, poolIDPrefix+n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{poolFillLock, poolEnabled} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removeDisabledPool(dir)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("an enabled pool was removed: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, poolEnabled)); err != nil {
		t.Fatal(err)
	}
	removeDisabledPool(dir)
	if _, err := os.Stat(m.poolRoot()); !os.IsNotExist(err) {
		t.Errorf("an empty pool and the pools' directory are left: %v", err)
	}
}
