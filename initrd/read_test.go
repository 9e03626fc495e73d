package initrd

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInspectVersion(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	if err := os.WriteFile(agent, []byte("\x7fELF fake agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{CompressionNone, CompressionGzip} {
		for _, version := range []string{"v1.2.3-4-gabcdef", ""} {
			out := filepath.Join(dir, string(c)+version+".img")
			if err := Build(Options{AgentPath: agent, Output: out, Compression: c, Version: version}); err != nil {
				t.Fatal(err)
			}
			info, err := Inspect(out)
			if err != nil {
				t.Fatal(err)
			}
			if !info.HasInit || info.Version != version || info.Compression != c {
				t.Fatalf("%s %q: got %+v", c, version, info)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "junk"), []byte("not an archive at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(filepath.Join(dir, "junk")); err == nil {
		t.Fatal("a file that is not a cpio archive must be an error")
	}
}
