//go:build integration

package runtime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestConfigChangedAfterCreate empties the bundle's config.json between
// create and start, as the runtime spec allows ("changes to config.json
// after create do not affect the container"): start, kill and delete with
// its poststop hook work the same under runc and cocoon-runtime; cocoon's
// exec also takes the container's process as create read it.
func TestConfigChangedAfterCreate(t *testing.T) {
	for _, r := range runtimes(t) {
		t.Run(r.name, func(t *testing.T) {
			id := "snapshot-" + r.name
			marker := filepath.Join(t.TempDir(), "poststop")
			s := baseSpec(t, "sleep", "60")
			s.Process.Env = append(s.Process.Env, "FROM_CREATE=yes")
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo ran > " + marker}}}}
			bundle := writeBundle(t, s)
			cmd, res := command(t, cmdOpts{}, r.bin, r.args("create", "--bundle", bundle, id)...)
			if err := cmd.Run(); err != nil {
				t.Fatalf("create: %v (%v)", err, res())
			}
			defer run(t, cmdOpts{}, r.bin, r.args("delete", "--force", id)...)
			if err := os.WriteFile(filepath.Join(bundle, "config.json"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if st := run(t, cmdOpts{}, r.bin, r.args("start", id)...); st.code != 0 {
				t.Fatalf("start after config.json was emptied: %v", st)
			}
			deadline := time.Now().Add(commandTimeout)
			for !strings.Contains(r.state(t, id), `"running"`) {
				if time.Now().After(deadline) {
					t.Fatalf("%s never ran", id)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r.name == "cocoon" {
				// runc's exec (without -p) reads config.json again, and
				// fails here ("exec failed: EOF"); cocoon's takes the
				// process that create read.
				ex := run(t, cmdOpts{}, r.bin, r.args("exec", id, "sh", "-c", "echo $FROM_CREATE")...)
				if ex.code != 0 || strings.TrimSpace(ex.stdout) != "yes" {
					t.Errorf("exec after config.json was emptied: %v, want the environment create read", ex)
				}
			}
			if k := run(t, cmdOpts{}, r.bin, r.args("kill", id, "KILL")...); k.code != 0 {
				t.Fatalf("kill: %v", k)
			}
			for !strings.Contains(r.state(t, id), `"stopped"`) {
				if time.Now().After(deadline) {
					t.Fatalf("%s never stopped", id)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if d := run(t, cmdOpts{}, r.bin, r.args("delete", id)...); d.code != 0 {
				t.Fatalf("delete: %v", d)
			}
			if data, err := os.ReadFile(marker); err != nil || string(data) != "ran\n" {
				t.Errorf("poststop hook of the spec create read: %q, %v", data, err)
			}
		})
	}
}
