//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/api"

	"github.com/cocoon-containers/cocoon/config"
	"github.com/cocoon-containers/cocoon/hypervisor/qemu"
	"github.com/cocoon-containers/cocoon/internal/proc"
	"github.com/cocoon-containers/cocoon/sandbox"
)

func newManager(t *testing.T, e env, root string) *sandbox.Manager {
	t.Helper()
	cfg, err := config.Load(filepath.Join(e.out, "configuration.toml"))
	if err != nil {
		t.Fatal(err)
	}
	accel, why := qemu.DetectAccelerator()
	t.Logf("accelerator %s: %s", accel, why)
	return &sandbox.Manager{
		Root:        root,
		Config:      cfg,
		Hypervisor:  qemu.New(),
		Accelerator: accel,
		Log:         logrus.NewEntry(logrus.StandardLogger()),
	}
}

// TestBootAgentVersion boots a real VM with the built kernel and initrd,
// waits for the agent, checks what it reports, destroys the sandbox and
// checks that nothing is left.
func TestBootAgentVersion(t *testing.T) {
	e := testEnv(t)
	root := t.TempDir()
	m := newManager(t, e, root)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	sb, err := m.Create(ctx, "boot-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent ready %.2fs after create", time.Since(start).Seconds())
	st := sb.State()
	dir := sb.Dir()
	destroyed := false
	defer func() {
		if !destroyed {
			_ = sb.Destroy(context.Background())
		}
	}()

	ag, err := sb.Agent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ag.Version(ctx, &api.VersionRequest{})
	ag.Close()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(e.out, "kernel.release"))
	if err != nil {
		t.Fatal(err)
	}
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	hostRelease := unix.ByteSliceToString(host.Release[:])
	if v.KernelRelease != strings.TrimSpace(string(want)) {
		t.Errorf("guest kernel %q, built kernel %q", v.KernelRelease, want)
	}
	if v.KernelRelease == hostRelease {
		t.Errorf("guest reports the host's kernel %q", hostRelease)
	}
	if v.AgentVersion == "" || v.ApiVersion == 0 || v.UptimeSeconds <= 0 {
		t.Errorf("incomplete version reply: %+v", v)
	}

	if err := sb.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	destroyed = true
	for _, pid := range []int{st.VM.PID, st.ProxyPID} {
		if pid > 0 && proc.Alive(pid) {
			t.Errorf("process %d still running after destroy", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox directory %s left behind (%v)", dir, err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("root not empty after destroy: %v", entries)
	}
}

// TestProbeCommand runs the README's run command path: cocoon-runtime probe.
func TestProbeCommand(t *testing.T) {
	e := testEnv(t)
	root := t.TempDir()
	cmd := exec.Command(filepath.Join(e.bin, "cocoon-runtime"), "--root", root,
		"--config", filepath.Join(e.out, "configuration.toml"), "probe")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	t.Logf("probe output:\n%s", out)
	want, _ := os.ReadFile(filepath.Join(e.out, "kernel.release"))
	if !regexp.MustCompile(`(?m)^guest kernel: +` + regexp.QuoteMeta(strings.TrimSpace(string(want))) + `$`).Match(out) {
		t.Errorf("probe did not print the guest kernel %q", want)
	}
	if !regexp.MustCompile(`(?m)^agent version: +\S+ \(api [1-9]`).Match(out) {
		t.Errorf("probe did not print the agent version")
	}
	entries, _ := os.ReadDir(filepath.Join(root, "sandboxes"))
	if len(entries) != 0 {
		t.Errorf("probe left sandboxes behind: %v", entries)
	}
}
