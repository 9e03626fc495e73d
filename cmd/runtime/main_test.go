package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"
)

// runApp runs the CLI as main would, with a fresh root.
func runApp(t *testing.T, root string, args ...string) error {
	t.Helper()
	var logToFile bool
	return newApp(logrus.New(), &logToFile).Run(append([]string{"cocoon-runtime", "--root", root}, args...))
}

// TestCreateRejectsBadInput checks the errors that come before anything
// is created: no VM is needed, and nothing may be left under the root.
func TestCreateRejectsBadInput(t *testing.T) {
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"process":{"args":["true"],"cwd":"/"},"root":{"path":"rootfs"}}`), 0o644)
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	noArgs := t.TempDir()
	os.WriteFile(filepath.Join(noArgs, "config.json"), []byte(`{"process":{"cwd":"/"},"root":{"path":"/"}}`), 0o644)
	malformed := t.TempDir()
	os.WriteFile(filepath.Join(malformed, "config.json"), []byte(`{"process":`), 0o644)
	tty := t.TempDir()
	os.WriteFile(filepath.Join(tty, "config.json"), []byte(`{"process":{"terminal":true,"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}`), 0o644)
	os.Mkdir(filepath.Join(tty, "rootfs"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"DotDot", []string{"create", "-b", bundle, "../x"}, "invalid container id"},
		{"Slash", []string{"create", "-b", bundle, "a/b"}, "invalid container id"},
		{"Empty", []string{"create", "-b", bundle, ""}, "container id cannot be empty"},
		{"Long", []string{"create", "-b", bundle, strings.Repeat("x", 1000)}, "invalid container id"},
		{"NoID", []string{"create", "-b", bundle}, "requires exactly 1 argument"},
		{"MissingBundle", []string{"create", "-b", "/nonexistent", "c"}, "config.json does not exist"},
		{"Malformed", []string{"create", "-b", malformed, "c"}, "malformed JSON"},
		{"NoArgs", []string{"create", "-b", noArgs, "c"}, "args is missing"},
		{"TTYWithoutSocket", []string{"create", "-b", tty, "c"}, "cannot allocate tty"},
		{"SocketWithoutTTY", []string{"create", "-b", bundle, "--console-socket", "/tmp/x.sock", "c"}, "cannot use console socket"},
		{"StateUnknown", []string{"state", "nope"}, `container "nope" does not exist`},
		{"KillBadSignal", []string{"kill", "c", "NOPE"}, `unknown signal "NOPE"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			err := runApp(t, root, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line with %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("left under the root: %v", entries)
			}
		})
	}
}

func TestListEmptyAndExitCoder(t *testing.T) {
	if err := runApp(t, filepath.Join(t.TempDir(), "none"), "list", "-q"); err != nil {
		t.Fatal(err)
	}
	var ec cli.ExitCoder
	if err := cli.Exit("", 3); !errors.As(err, &ec) || ec.ExitCode() != 3 || err.Error() != "" {
		t.Fatal("exit coder")
	}
}

func TestNewSpec(t *testing.T) {
	s, err := newSpec(false)
	if err != nil || !s.Process.Terminal || s.Process.Args[0] != "sh" || s.Root.Path != "rootfs" {
		t.Fatalf("%+v %v", s, err)
	}
	r, err := newSpec(true)
	if err != nil || len(r.Linux.UIDMappings) != 1 || r.Linux.Resources != nil {
		t.Fatalf("rootless %+v %v", r.Linux, err)
	}
	for _, ns := range r.Linux.Namespaces {
		if ns.Type == "network" {
			t.Fatal("rootless spec has a network namespace")
		}
	}
}
