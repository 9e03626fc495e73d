//go:build integration

package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/cocoon-containers/cocoon/config"
)

// TestProbe boots a throw-away sandbox with the suite's QEMU, as make run
// does, and reads what its agent reports.
func TestProbe(t *testing.T) {
	r := rt(t, "probe")
	if r.code != 0 || !strings.Contains(r.stdout, "agent version:") || !strings.Contains(r.stdout, "guest kernel:") {
		t.Fatalf("probe: %v", r)
	}
	t.Logf("probe:\n%s", r.stdout)
}

// TestCheckTemplates: with hypervisor.templates = "auto", check says
// whether sandboxes are restored from templates, and why: on with a QEMU
// that maps them read-only for their clones (8.2 and later), off with a
// warning and what to install with an older one (7.2).
func TestCheckTemplates(t *testing.T) {
	cfg, err := config.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hypervisor.Templates = config.Auto
	p := filepath.Join(t.TempDir(), "auto.toml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := toml.NewEncoder(f).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := run(t, cmdOpts{}, e.runtime, "--config", p, "--root", e.root, "check", "--json")
	var rep struct {
		Checks []struct{ Name, Status, Detail, Fix string } `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("check --json: %v: %v", err, r)
	}
	var qemu, templates string
	var status, fix string
	for _, c := range rep.Checks {
		switch c.Name {
		case "qemu":
			qemu = c.Detail
		case "templates":
			templates, status, fix = c.Detail, c.Status, c.Fix
		}
	}
	t.Logf("qemu: %s\ntemplates: %s %s", qemu, status, templates)
	old := strings.Contains(qemu, "version 7.")
	switch {
	case old && (status != "warn" || !strings.HasPrefix(templates, "off: QEMU 7.") || !strings.Contains(fix, "10.0")):
		t.Errorf("templates with %s: %s %q (fix %q); want a warning that they are off, why, and what to install", qemu, status, templates, fix)
	case !old && (status != "pass" || !strings.HasPrefix(templates, "on: QEMU")):
		t.Errorf("templates with %s: %s %q; want on, and why", qemu, status, templates)
	}
}
