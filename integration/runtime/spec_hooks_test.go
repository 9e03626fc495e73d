//go:build integration

package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// TestSpecRuns runs the config.json that spec writes as it is: a shell
// on a terminal, which run allocates and relays (stdin is not one here).
func TestSpecRuns(t *testing.T) {
	dir := t.TempDir()
	mustRT(t, "spec", "--bundle", dir)
	// A copy, not a symbolic link to the suite's rootfs: runc refuses a
	// rootfs that is a link, and so does cocoon (TestHostileBundles).
	if err := testutil.BusyboxRootfs(filepath.Join(dir, "rootfs")); err != nil {
		t.Fatal(err)
	}
	r := run(t, cmdOpts{stdin: "echo from-spec-$((1+1))\nexit 6\n"}, e.runtime, rtArgs("run", "--bundle", dir, "spec")...)
	if r.code != 6 || !strings.Contains(r.stdout, "from-spec-2") {
		t.Errorf("run of spec's config.json: %v", r)
	}
	if r := rt(t, "spec", "--bundle", dir); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("spec over an existing config.json: %v", r)
	}
}

// TestHooks runs every host hook kind and checks the order, and the state
// each got on stdin.
func TestHooks(t *testing.T) {
	log := filepath.Join(t.TempDir(), "hooks.log")
	hook := func(name string) specs.Hook {
		return specs.Hook{
			Path: "/bin/sh",
			Args: []string{"sh", "-c", `printf '%s %s\n' "$0" "$(cat)" >> "$1"`, name, log},
		}
	}
	s := baseSpec(t, "sh", "-c", "echo in-container")
	s.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{hook("prestart")}, //nolint:staticcheck // Docker still sends it
		CreateRuntime:   []specs.Hook{hook("createRuntime1"), hook("createRuntime2")},
		CreateContainer: []specs.Hook{hook("createContainer")},
		Poststart:       []specs.Hook{hook("poststart")},
		Poststop:        []specs.Hook{hook("poststop")},
	}
	bundle := writeBundle(t, s)
	if r := rt(t, "run", "--bundle", bundle, "hooks"); r.code != 0 || r.stdout != "in-container\n" {
		t.Fatalf("run: %v", r)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := []struct{ name, status string }{
		{"prestart", "creating"}, {"createRuntime1", "creating"}, {"createRuntime2", "creating"},
		{"createContainer", "creating"}, {"poststart", "running"}, {"poststop", "stopped"},
	}
	if len(lines) != len(want) {
		t.Fatalf("hooks ran: %q", lines)
	}
	for i, w := range want {
		name, js, _ := strings.Cut(lines[i], " ")
		var st specs.State
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatalf("hook %s got %q: %v", name, js, err)
		}
		if name != w.name || st.ID != "hooks" || string(st.Status) != w.status || st.Bundle != bundle || st.Pid <= 0 {
			t.Errorf("hook %d: %s with %+v, want %s with status %s", i, name, st, w.name, w.status)
		}
	}

	t.Run("FailingHookUndoesCreate", func(t *testing.T) {
		s := baseSpec(t, "true")
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no way >&2; exit 1"}}}}
		r := rt(t, "create", "--bundle", writeBundle(t, s), "failhook")
		if r.code != 1 || !strings.Contains(r.stderr, "no way") {
			t.Errorf("create with a failing hook: %v", r)
		}
		if r := rt(t, "state", "failhook"); r.code != 1 {
			t.Errorf("state after a failed create: %v", r)
		}
	})
}
