//go:build integration

package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: each bad create exits 1 with one line on stderr, and
// leaves nothing: no state, no sandbox, no process.
func TestBadInput(t *testing.T) {
	good := writeBundle(t, baseSpec(t, "true"))
	noArgs := baseSpec(t)
	noArgs.Process.Args = nil
	noRootfs := baseSpec(t, "true")
	noRootfs.Root.Path = "/nonexistent/rootfs"
	malformed := t.TempDir()
	os.WriteFile(filepath.Join(malformed, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {`), 0o644)
	wrongType := t.TempDir()
	os.WriteFile(filepath.Join(wrongType, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {"args": "sh", "cwd": "/"}, "root": {"path": "/"}}`), 0o644)

	for _, tc := range []struct {
		name, bundle, id, want string
	}{
		{"MissingBundle", "/nonexistent/bundle", "bad1", "config.json does not exist"},
		{"MalformedConfig", malformed, "bad2", "malformed JSON"},
		{"WrongType", wrongType, "bad3", "args must be an array of strings"},
		{"MissingArgs", writeBundle(t, noArgs), "bad4", "args is missing"},
		{"MissingRootfs", writeBundle(t, noRootfs), "bad5", "does not exist"},
		{"DotDotID", good, "../x", "invalid"},
		{"SlashID", good, "a/b", "invalid"},
		{"EmptyID", good, "", "empty"},
		{"LongID", good, strings.Repeat("x", 1000), "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rt(t, "create", "--bundle", tc.bundle, tc.id)
			msg := strings.TrimSpace(r.stderr)
			if r.code != 1 || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("got %v; want exit 1 and one line with %q", r, tc.want)
			}
			if entries, _ := os.ReadDir(e.root); len(entries) != 0 {
				t.Errorf("left in --root: %v", entries)
			}
			if _, err := os.Stat(sandboxRoot()); err == nil {
				t.Errorf("left %s", sandboxRoot())
			}
			if ps := processesOf(sandboxRoot()); len(ps) > 0 {
				t.Errorf("left processes: %v", ps)
			}
		})
	}
	t.Run("UnknownContainer", func(t *testing.T) {
		for _, args := range [][]string{{"state", "nope"}, {"start", "nope"}, {"kill", "nope"}, {"delete", "nope"}, {"exec", "nope", "true"}} {
			r := rt(t, args...)
			if r.code != 1 || !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, "nope") {
				t.Errorf("%v: %v", args, r)
			}
		}
		if r := rt(t, "delete", "--force", "nope"); r.code != 0 {
			t.Errorf("delete --force of nothing: %v", r)
		}
	})
	t.Run("JSONLog", func(t *testing.T) {
		// containerd's way: --log <bundle>/log.json --log-format json, and
		// CRI-O's --root=R form.
		log := filepath.Join(t.TempDir(), "log.json")
		r := run(t, cmdOpts{}, e.runtime, "--config", e.config, "--root="+e.root, "--log", log, "--log-format", "json", "kill", "nope", "9")
		if r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("kill: %v", r)
		}
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		var line struct{ Level, Msg, Time string }
		if err := json.Unmarshal(data, &line); err != nil || line.Level != "error" || !strings.Contains(line.Msg, "does not exist") || line.Time == "" {
			t.Errorf("log.json %q: %v", data, err)
		}
	})
}
