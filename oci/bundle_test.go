package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeBundle makes a bundle directory with config and, unless rootfs is
// empty, a rootfs directory of that name.
func writeBundle(t *testing.T, config, rootfs string) string {
	t.Helper()
	dir := t.TempDir()
	if rootfs != "" {
		if err := os.MkdirAll(filepath.Join(dir, rootfs), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const validConfig = `{
	"ociVersion": "1.0.2",
	"process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
	"root": {"path": "rootfs"},
	"hostname": "box",
	"futureField": {"anything": [1, 2]}
}`

func TestLoadBundle(t *testing.T) {
	dir := writeBundle(t, validConfig, "rootfs")
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != dir || b.Rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("bundle %s, rootfs %s", b.Dir, b.Rootfs)
	}
	if b.Spec.Hostname != "box" || b.Spec.Process.Args[0] != "sh" {
		t.Errorf("spec %+v", b.Spec)
	}

	// An absolute root.path is used as is.
	abs := t.TempDir()
	dir = writeBundle(t, strings.Replace(validConfig, `"path": "rootfs"`, `"path": "`+abs+`"`, 1), "")
	if b, err := LoadBundle(dir); err != nil || b.Rootfs != abs {
		t.Errorf("absolute rootfs: %v, %v", b, err)
	}

	// A relative bundle path is made absolute.
	dir = writeBundle(t, validConfig, "rootfs")
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	if err := os.Chdir(filepath.Dir(dir)); err != nil {
		t.Fatal(err)
	}
	if b, err := LoadBundle(filepath.Base(dir)); err != nil || b.Rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("relative bundle: %v, %v", b, err)
	}
}

func TestLoadBundleErrors(t *testing.T) {
	tests := map[string]struct {
		config string
		rootfs string // created unless empty
		want   string // the error's text after "loading bundle <dir>: "
	}{
		"malformed JSON": {
			config: "{\n  \"process\": {\"args\": [\"sh\"],}\n}", rootfs: "rootfs",
			want: "config.json: malformed JSON at line 2, column 30: invalid character '}' looking for beginning of object key string",
		},
		"truncated JSON": {
			config: `{"process": {`, rootfs: "rootfs",
			want: "config.json: malformed JSON at line 1, column 13: unexpected end of JSON input",
		},
		"trailing garbage": {
			config: validConfig + "x", rootfs: "rootfs",
			want: "config.json: malformed JSON at line 7, column 2: invalid character 'x' after top-level value",
		},
		"args not an array": {
			config: `{"process": {"args": "sh", "cwd": "/"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.args must be an array of strings, not a string",
		},
		"arg not a string": {
			config: `{"process": {"args": ["sh", 1], "cwd": "/"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.args must be a string, not a number",
		},
		"uid negative": {
			config: `{"process": {"args": ["sh"], "cwd": "/", "user": {"uid": -1}}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.user.uid must be a non-negative integer, not a number -1",
		},
		"process not an object": {
			config: `{"process": true, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process must be an object, not a boolean",
		},
		"mounts not an array": {
			config: `{"process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}, "mounts": {}}`, rootfs: "rootfs",
			want: "config.json: mounts must be an array of objects, not an object",
		},
		"not an object": {
			config: `[]`, rootfs: "rootfs",
			want: "config.json: top level must be an object, not an array",
		},
		"missing process": {
			config: `{"root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process is missing",
		},
		"missing args": {
			config: `{"process": {"cwd": "/"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.args is missing or empty",
		},
		"empty args": {
			config: `{"process": {"args": [], "cwd": "/"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.args is missing or empty",
		},
		"empty program": {
			config: `{"process": {"args": [""], "cwd": "/"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.args[0] is empty",
		},
		"missing cwd": {
			config: `{"process": {"args": ["sh"]}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: "config.json: process.cwd is missing",
		},
		"relative cwd": {
			config: `{"process": {"args": ["sh"], "cwd": "tmp"}, "root": {"path": "rootfs"}}`, rootfs: "rootfs",
			want: `config.json: process.cwd must be an absolute path, not "tmp"`,
		},
		"missing root": {
			config: `{"process": {"args": ["sh"], "cwd": "/"}}`,
			want:   "config.json: root.path is missing",
		},
		"mount without destination": {
			config: `{"process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}, "mounts": [{"type": "tmpfs", "source": "tmpfs"}]}`, rootfs: "rootfs",
			want: "config.json: mounts[0].destination is missing",
		},
		"bind without source": {
			config: `{"process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}, "mounts": [{"destination": "/v", "type": "bind"}]}`, rootfs: "rootfs",
			want: "config.json: mounts[0] (/v) is a bind mount without a source",
		},
		"nonexistent rootfs": {
			config: validConfig,
			want:   "rootfs <dir>/rootfs does not exist",
		},
		"rootfs is a file": {
			config: strings.Replace(validConfig, `"path": "rootfs"`, `"path": "config.json"`, 1),
			want:   "rootfs <dir>/config.json is not a directory",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := writeBundle(t, tc.config, tc.rootfs)
			_, err := LoadBundle(dir)
			if err == nil {
				t.Fatal("no error")
			}
			want := "loading bundle " + dir + ": " + strings.ReplaceAll(tc.want, "<dir>", dir)
			if err.Error() != want {
				t.Errorf("error\n%s\nwant\n%s", err, want)
			}
			if !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("error does not wrap ErrInvalidBundle")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line")
			}
		})
	}
}

func TestLoadBundleNoConfig(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadBundle(dir)
	if err == nil || err.Error() != "loading bundle "+dir+": config.json does not exist" || !errors.Is(err, ErrInvalidBundle) {
		t.Errorf("error %v", err)
	}
}

func TestParseProcess(t *testing.T) {
	p, err := ParseProcess("process.json", []byte(`{"args": ["ls", "-l"], "cwd": "/tmp", "terminal": true}`))
	if err != nil || p.Args[1] != "-l" || !p.Terminal {
		t.Fatalf("ParseProcess: %+v, %v", p, err)
	}
	_, err = ParseProcess("process.json", []byte(`{"args": ["ls"]}`))
	if err == nil || err.Error() != "process.json: cwd is missing" {
		t.Errorf("error %v", err)
	}
	_, err = ParseProcess("process.json", []byte(`{"args": "ls", "cwd": "/"}`))
	if err == nil || err.Error() != "process.json: args must be an array of strings, not a string" {
		t.Errorf("error %v", err)
	}
}

// TestLoadBundleRefusesRootfs: what runc refuses as "invalid rootfs" (a
// symbolic link, a path through one), the host's root, and a config.json
// larger than the agent accepts are refused with one line.
func TestLoadBundleRefusesRootfs(t *testing.T) {
	withRoot := func(path string) string {
		return strings.Replace(validConfig, `"path": "rootfs"`, `"path": "`+path+`"`, 1)
	}
	real := t.TempDir()
	linkDir := t.TempDir()
	if err := os.Symlink(real, filepath.Join(linkDir, "dir")); err != nil {
		t.Fatal(err)
	}
	slashLink := writeBundle(t, validConfig, "")
	if err := os.Symlink("/", filepath.Join(slashLink, "rootfs")); err != nil {
		t.Fatal(err)
	}
	dotdot := writeBundle(t, validConfig, "")
	if err := os.Symlink("../../../../../../../..", filepath.Join(dotdot, "rootfs")); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ dir, want string }{
		"relative symlink to /":    {slashLink, "invalid rootfs"},
		"relative symlink up":      {dotdot, "invalid rootfs"},
		"absolute symlink":         {writeBundle(t, withRoot(filepath.Join(linkDir, "dir")), ""), "invalid rootfs"},
		"through a symlink":        {writeBundle(t, withRoot(filepath.Join(linkDir, "dir", ".")), ""), "invalid rootfs"},
		"root":                     {writeBundle(t, withRoot("/"), ""), "the host's root directory"},
		"root spelled otherwise":   {writeBundle(t, withRoot("/tmp/../"), ""), "the host's root directory"},
		"root relative to bundle":  {writeBundle(t, withRoot(strings.Repeat("../", 30)), ""), "the host's root directory"},
		"config larger than agent": {writeBundle(t, withRoot("rootfs")+strings.Repeat(" ", MaxConfigSize), "rootfs"), "too large"},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := LoadBundle(tc.dir)
			if err == nil {
				t.Fatalf("loaded %+v", b)
			}
			if !errors.Is(err, ErrInvalidBundle) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v; want one line with %q wrapping ErrInvalidBundle", err, tc.want)
			}
		})
	}

	// A bundle reached through a symbolic link with a relative root is
	// fine: runc resolves root.path from inside the bundle.
	dir := writeBundle(t, validConfig, "rootfs")
	link := filepath.Join(t.TempDir(), "bundle")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if b, err := LoadBundle(link); err != nil || b.Rootfs != filepath.Join(dir, "rootfs") {
		t.Errorf("bundle through a symlink: %v, %v", b, err)
	}
	// Exactly MaxConfigSize is accepted.
	exact := withRoot("rootfs")
	exact += strings.Repeat(" ", MaxConfigSize-len(exact))
	if _, err := LoadBundle(writeBundle(t, exact, "rootfs")); err != nil {
		t.Errorf("config of MaxConfigSize bytes: %v", err)
	}
}
