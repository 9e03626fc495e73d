//go:build integration

package runtime_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunIsOneAttach runs `true` in the foreground with --debug and reads
// the log: one `run` loads the configuration once and talks to its
// sandbox's agent over one connection, from the boot's readiness check to
// the sandbox's destruction (the relay's connection is its own process's).
func TestRunIsOneAttach(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "runtime.log")
	bundle := writeBundle(t, baseSpec(t, "true"))
	r := rt(t, "--debug", "--log", logFile, "--log-format", "json", "run", "--bundle", bundle, "one-attach")
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var loads, conns int
	for _, line := range strings.Split(string(data), "\n") {
		// The relay logs to the same file; only the runtime's lines
		// count.
		if strings.Contains(line, `"guard"`) || strings.Contains(line, `"exec"`) {
			continue
		}
		if strings.Contains(line, `"msg":"configuration loaded"`) {
			loads++
		}
		if strings.Contains(line, `"msg":"connected to the agent`) {
			conns++
		}
	}
	if loads != 1 || conns != 1 {
		t.Errorf("run of true loaded the configuration %d times and connected to the agent %d times, want 1 and 1; log:\n%s", loads, conns, data)
	}
}
