package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/sirupsen/logrus"
)

// runAppOut runs the CLI and returns what it printed.
func runAppOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var logToFile bool
	var out bytes.Buffer
	app := newApp(logrus.New(), &logToFile)
	app.Writer = &out
	err := app.Run(append([]string{"cocoon-runtime", "--root", t.TempDir()}, args...))
	return out.String(), err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckReportsABadConfiguration(t *testing.T) {
	cfg := writeConfig(t, "[hypervisor]\nvcpu = 2\n")
	out, err := runAppOut(t, "--config", cfg, "check", "--json")
	if err == nil || !strings.Contains(err.Error(), "check failed") {
		t.Fatalf("check with a bad configuration: %v", err)
	}
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.OK || len(rep.Checks) == 0 || rep.Checks[0].Name != "config" || rep.Checks[0].Status != "fail" ||
		!strings.Contains(rep.Checks[0].Detail, "line 2: unknown key hypervisor.vcpu") {
		t.Fatalf("got %+v", rep.Checks)
	}
	// The text form: one line per check, then the verdict.
	out, _ = runAppOut(t, "--config", cfg, "check")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(rep.Checks)+1 || !strings.HasPrefix(lines[0], "FAIL  config") || !strings.Contains(lines[len(lines)-1], "cannot run") {
		t.Fatalf("got:\n%s", out)
	}
}

func TestEnvTOMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "[hypervisor]\nvcpus = 3\nkernel = \""+dir+"/none\"\n")
	out, err := runAppOut(t, "--config", cfg, "env")
	if err != nil {
		t.Fatal(err)
	}
	var fromTOML runtimeEnv
	if _, err := toml.Decode(out, &fromTOML); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	out, err = runAppOut(t, "--config", cfg, "env", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON runtimeEnv
	if err := json.Unmarshal([]byte(out), &fromJSON); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	for _, e := range []runtimeEnv{fromTOML, fromJSON} {
		if e.Config.Hypervisor.VCPUs != 3 || e.Runtime.Version != version || e.Runtime.ConfigPath != cfg ||
			!e.Runtime.ConfigFound || e.Kernel.Error == "" || e.Host.CPUs == 0 {
			t.Fatalf("got %+v", e)
		}
	}
	if _, err := runAppOut(t, "--config", writeConfig(t, "[agent]\nlog_level = 3\n"), "env"); err == nil ||
		!strings.Contains(err.Error(), "line 2: agent.log_level: wrong type") {
		t.Fatalf("env with a bad configuration: %v", err)
	}
}
