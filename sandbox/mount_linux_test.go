package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cocoon-containers/cocoon/oci"
)

func TestUnescapeMountPoint(t *testing.T) {
	tests := map[string]string{
		`/run/cocoon/plain`:        "/run/cocoon/plain",
		`/tmp/with\040space`:       "/tmp/with space",
		`/tmp/tab\011and\012nl`:    "/tmp/tab\tand\nnl",
		`/tmp/back\134slash`:       `/tmp/back\slash`,
		`/tmp/not\08octal`:         `/tmp/not\08octal`,
		`/tmp/trailing\04`:         `/tmp/trailing\04`,
		`/tmp/\040\040two-leading`: "/tmp/  two-leading",
		`/tmp/end-with-escape\040`: "/tmp/end-with-escape ",
	}
	for in, want := range tests {
		if got := unescapeMountPoint(in); got != want {
			t.Errorf("unescapeMountPoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnmountAllOddNames mounts under a directory whose name needs
// escaping in mountinfo, nested, and checks that everything is found,
// unmounted and removed without touching the sources.
func TestUnmountAllOddNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for bind mounts")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "odd name\twith tab")
	outer := oci.Bind{Source: src, Target: filepath.Join(dir, "a b")}
	inner := oci.Bind{Source: src, Target: filepath.Join(dir, "a b", "inner")}
	for _, b := range []oci.Bind{outer, inner} {
		if err := bindMount(b); err != nil {
			t.Fatal(err)
		}
	}
	mps, err := mountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 2 || mps[0] != inner.Target || mps[1] != outer.Target {
		t.Fatalf("mounts under %q: %q", dir, mps)
	}
	if err := removeUnmounted(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dir, err)
	}
	if got, err := os.ReadFile(filepath.Join(src, "keep")); err != nil || string(got) != "x" {
		t.Errorf("source damaged: %q, %v", got, err)
	}
	if err := removeUnmounted(dir); err != nil {
		t.Errorf("removing a missing directory: %v", err)
	}
}
