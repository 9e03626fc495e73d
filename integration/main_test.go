//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/internal/proc"
)

// env describes where `make` put the assets under test.
type env struct {
	out string // vmlinux, initrd.img, kernel.release, configuration.toml
	bin string // cocoon-runtime, cocoon-proxy, cocoon-agent
}

func testEnv(t testing.TB) env {
	t.Helper()
	e := env{out: os.Getenv("COCOON_TEST_OUT"), bin: os.Getenv("COCOON_TEST_BIN")}
	if e.out == "" {
		e.out, _ = filepath.Abs("../out")
	}
	if e.bin == "" {
		e.bin, _ = filepath.Abs("../bin")
	}
	for _, f := range []string{filepath.Join(e.out, "vmlinux"), filepath.Join(e.out, "initrd.img"), filepath.Join(e.bin, "cocoon-proxy")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("missing test asset (run `make kernel image` or `make test`): %v", err)
		}
	}
	return e
}

func TestMain(m *testing.M) {
	// Every sandbox of this suite lives under t.TempDir(), hence under this
	// run's own TMPDIR: the leak check looks for processes naming it, so
	// that cocoon VMs run by anything else on the machine don't count.
	tmp, err := os.MkdirTemp("", "cocoon-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", tmp)
	code := m.Run()
	if leaks := leftovers(tmp); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "integration: left behind after the suite:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	if err := os.Remove(tmp); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %s not empty after the suite: %v\n", tmp, err)
		code = 1
	}
	os.Exit(code)
}

// leftovers lists cocoon processes of this run still running: QEMU,
// proxies and shims whose command line names dir. Every test must clean up
// after itself.
func leftovers(dir string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := proc.Cmdline(pid)
		if err != nil || !proc.Alive(pid) {
			continue
		}
		if !strings.Contains(cl, dir) {
			continue
		}
		if strings.Contains(cl, "cocoon-proxy") || strings.Contains(cl, "cocoon-relay") || strings.Contains(cl, "qemu-system") {
			found = append(found, fmt.Sprintf("pid %d: %s", pid, cl))
		}
	}
	return found
}
