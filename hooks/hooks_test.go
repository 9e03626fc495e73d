package hooks

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunInOrderWithState(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	st := &specs.State{Version: specs.Version, ID: "c1", Status: "created", Pid: 42, Bundle: "/b"}
	var hs []specs.Hook
	for _, name := range []string{"one", "two", "three"} {
		hs = append(hs, specs.Hook{
			Path: "/bin/sh",
			Args: []string{"sh", "-c", `printf '%s %s ' "$0" "$NAME" >> "$1"; cat >> "$1"; echo >> "$1"`, name, log},
			Env:  []string{"NAME=" + name},
		})
	}
	if err := Run(context.Background(), Prestart, hs, st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %q", data)
	}
	for i, name := range []string{"one", "two", "three"} {
		prefix := name + " " + name + " "
		if !strings.HasPrefix(lines[i], prefix) {
			t.Fatalf("line %d %q, want prefix %q", i, lines[i], prefix)
		}
		var got specs.State
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[i], prefix)), &got); err != nil {
			t.Fatal(err)
		}
		if got.ID != "c1" || got.Pid != 42 || got.Status != "created" || got.Bundle != "/b" {
			t.Fatalf("state %+v", got)
		}
	}
}

func TestRunStopsAtFailure(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "ran")
	hs := []specs.Hook{
		{Path: "/bin/sh", Args: []string{"sh", "-c", "echo bad >&2; exit 3"}},
		{Path: "/bin/touch", Args: []string{"touch", mark}},
	}
	err := Run(context.Background(), CreateRuntime, hs, &specs.State{ID: "x"})
	if err == nil || !strings.Contains(err.Error(), "createRuntime hook #0") || !strings.Contains(err.Error(), "stderr: bad") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("second hook ran after the first failed")
	}
}

func TestRunTimeout(t *testing.T) {
	one := 1
	start := time.Now()
	err := Run(context.Background(), Poststart, []specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "30"}, Timeout: &one}}, &specs.State{})
	if err == nil || !strings.Contains(err.Error(), "timeout of 1s") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestRunMissingBinary(t *testing.T) {
	if err := Run(context.Background(), Poststop, []specs.Hook{{Path: "/nonexistent/hook"}}, &specs.State{}); err == nil {
		t.Fatal("no error")
	}
}

func TestOf(t *testing.T) {
	h := &specs.Hooks{Poststop: []specs.Hook{{Path: "/a"}}}
	if len(Of(h, Poststop)) != 1 || len(Of(h, Prestart)) != 0 || Of(nil, Poststop) != nil {
		t.Fatal("Of")
	}
}
