package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// debianConfig is Debian 12's /etc/containerd/config.toml, with a comment.
const debianConfig = `version = 2

# kept as it is
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
`

func decode(t *testing.T, p string) map[string]any {
	t.Helper()
	var m map[string]any
	if _, err := toml.DecodeFile(p, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRegisterKeepsEverythingIdempotent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(debianConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(p, "cocoon", "io.containerd.cocoon.v2", true); err != nil {
		t.Fatal(err)
	}
	once, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(once), debianConfig) {
		t.Fatalf("the original text is not kept:\n%s", once)
	}
	m := decode(t, p)
	if got := lookup(m, []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "cocoon", "runtime_type"}); got != "io.containerd.cocoon.v2" {
		t.Fatalf("runtime_type = %v", got)
	}
	if got := lookup(m, []string{"plugins", "io.containerd.grpc.v1.cri", "cni", "bin_dir"}); got != "/usr/lib/cni" {
		t.Fatalf("bin_dir = %v", got)
	}
	if err := run(p, "cocoon", "io.containerd.cocoon.v2", true); err != nil {
		t.Fatal(err)
	}
	twice, _ := os.ReadFile(p)
	if string(twice) != string(once) {
		t.Fatalf("register is not idempotent:\n%s\n---\n%s", once, twice)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v not kept", st.Mode())
	}
	for i := 0; i < 2; i++ {
		if err := run(p, "cocoon", "", false); err != nil {
			t.Fatal(err)
		}
		back, _ := os.ReadFile(p)
		if string(back) != debianConfig {
			t.Fatalf("unregister #%d does not restore the file:\n%q", i+1, back)
		}
	}
}

func TestVersions(t *testing.T) {
	for name, tc := range map[string]struct {
		before string
		path   []string
	}{
		"new file":  {"", []string{"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "cocoon"}},
		"version 1": {"root = \"/var/lib/containerd\"\n", []string{"plugins", "cri", "containerd", "runtimes", "cocoon"}},
		"version 3": {"version = 3\n", []string{"plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "cocoon"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "etc", "config.toml")
			if tc.before != "" {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(tc.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := run(p, "cocoon", "io.containerd.cocoon.v2", true); err != nil {
				t.Fatal(err)
			}
			if lookup(decode(t, p), tc.path) == nil {
				b, _ := os.ReadFile(p)
				t.Fatalf("handler not at %v:\n%s", tc.path, b)
			}
		})
	}
}

func TestRefusesWithoutChange(t *testing.T) {
	for name, text := range map[string]string{
		"defined by hand": debianConfig + "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cocoon]\n  runtime_type = \"x\"\n",
		"not toml":        "version = = 2\n",
		"bad version":     "version = \"two\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := run(p, "cocoon", "io.containerd.cocoon.v2", true); err == nil {
				t.Fatal("want an error")
			}
			if b, _ := os.ReadFile(p); string(b) != text {
				t.Fatalf("file changed:\n%s", b)
			}
		})
	}
}

func TestUnregisterMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := run(p, "cocoon", "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("unregister created the file")
	}
}
