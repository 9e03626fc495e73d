//go:build integration

// Package conmon_test drives cocoon-runtime through Debian's conmon the way
// CRI-O drives an "oci" runtime (package integration/conmontest holds CRI-O's
// calls), against real VMs, restored from a VM template that the suite's
// first sandbox made (templates on).
package conmon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/conmontest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// commandTimeout bounds one step (a VM boot under TCG).
const commandTimeout = 3 * time.Minute

// env is set once by TestMain.
type env struct {
	rt        *conmontest.Runtime
	rootfs    string
	tmp       string
	templates *testutil.Templates
}

var e env

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	conmonPath, err := exec.LookPath("conmon")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conmon is missing (packaging/deps.sh installs it):", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "cocoon-conmon-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// VM templates on, in a template directory of the suite's own: every
	// sandbox is restored from the template that the first one made.
	templates, err := testutil.NewTemplates(filepath.Join(bin, "cocoon-runtime"), filepath.Join(out, "configuration.toml"), tmp)
	if err == nil {
		err = templates.Init()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e = env{
		rt: &conmontest.Runtime{
			Conmon: conmonPath,
			Path:   filepath.Join(bin, "cocoon-runtime"),
			Root:   filepath.Join(tmp, "root"),
			// The development configuration with templates on;
			// installed, cocoon reads /etc/cocoon/configuration.toml and
			// needs no environment.
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"COCOON_CONFIG=" + templates.Config,
			},
			ExitDir:   filepath.Join(tmp, "exits"),
			SocketDir: filepath.Join(tmp, "sockets"),
		},
		rootfs:    filepath.Join(tmp, "rootfs"),
		tmp:       tmp,
		templates: templates,
	}
	if err := testutil.BusyboxRootfs(e.rootfs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return testutil.RunAdopting(m, leftovers)
}

// reapAll reaps the adopted processes that have exited.
func reapAll() {
	for {
		if pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

// sandboxRoot is where cocoon-runtime puts the sandboxes of the suite's
// root.
func sandboxRoot() string { return testutil.SandboxRoot(e.rt.Root) }

// leftovers reports what the suite left: state under the root, sandbox
// directories, QEMU, proxy, shim or conmon processes; and destroys the
// suite's template (one: its sandboxes have no NIC), leaving nothing of it.
func leftovers() error {
	reapAll()
	var problems []string
	if err := e.templates.Destroy(1); err != nil {
		problems = append(problems, err.Error())
	}
	if entries, _ := os.ReadDir(e.rt.Root); len(entries) > 0 {
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		problems = append(problems, fmt.Sprintf("--root not empty: %v", names))
	}
	if _, err := os.Stat(sandboxRoot()); err == nil {
		problems = append(problems, sandboxRoot()+" still exists")
	}
	for _, s := range []string{sandboxRoot(), e.rt.Root} {
		if ps := processesOf(s); len(ps) > 0 {
			problems = append(problems, fmt.Sprintf("processes left: %v", ps))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// processesOf lists live processes whose command line mentions s.
func processesOf(s string) []string { return testutil.ProcessesOf(s) }

// qemuCount counts the QEMU processes of the suite's sandboxes.
func qemuCount() int { return testutil.QEMUCount(sandboxRoot()) }

// restored checks that every QEMU of the suite's sandboxes, at least one,
// runs a VM restored from the suite's template.
func restored(t *testing.T) {
	t.Helper()
	n := 0
	for _, p := range processesOf(sandboxRoot() + "/") {
		var pid int
		if strings.Contains(p, "qemu-system") {
			if _, err := fmt.Sscanf(p, "%d:", &pid); err != nil {
				t.Fatal(err)
			}
			if err := e.templates.Restored(pid); err != nil {
				t.Error(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no QEMU of the suite's sandboxes runs")
	}
}

// ctx bounds one step.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), commandTimeout)
	t.Cleanup(cancel)
	return c
}

// baseSpec is `cocoon-runtime spec` on the suite's rootfs, running args
// without a terminal.
func baseSpec(t *testing.T, args ...string) *specs.Spec {
	t.Helper()
	dir := t.TempDir()
	if _, err := e.rt.Run(ctx(t), nil, "spec", "--bundle", dir); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Root.Path = e.rootfs
	s.Process.Terminal = false
	s.Process.Args = args
	return &s
}

// newContainer writes spec into a new bundle and describes the container
// CRI-O would create from it: its log, its directory.
func newContainer(t *testing.T, id string, s *specs.Spec) *conmontest.Container {
	t.Helper()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle")
	if err := os.Mkdir(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return &conmontest.Container{
		ID:       id,
		Name:     "k8s_" + id,
		Bundle:   bundle,
		LogPath:  filepath.Join(dir, "logs", id+".log"),
		Dir:      filepath.Join(dir, "userdata"),
		Terminal: s.Process.Terminal,
	}
}

// create creates c through conmon and registers its cleanup: delete
// --force, then conmon's exit. It returns the container's PID.
func create(t *testing.T, c *conmontest.Container) int {
	t.Helper()
	rt := e.rt
	pid, err := rt.Create(ctx(t), c)
	if err != nil {
		t.Fatalf("create %s: %v", c.ID, err)
	}
	t.Cleanup(func() { removeWith(t, rt, c) })
	return pid
}

// remove is CRI-O's DeleteContainer (delete --force, "not found" is
// fine), then waits for the container's conmon to exit.
func remove(t *testing.T, c *conmontest.Container) {
	t.Helper()
	removeWith(t, e.rt, c)
}

func removeWith(t *testing.T, rt *conmontest.Runtime, c *conmontest.Container) {
	t.Helper()
	cpid, _ := rt.ConmonPid(c)
	if _, err := rt.Run(ctx(t), nil, "delete", "--force", c.ID); err != nil {
		var ce *conmontest.CmdError
		if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "does not exist") {
			t.Errorf("delete --force %s: %v", c.ID, err)
		}
	}
	if cpid > 0 {
		waitGone(t, cpid)
	}
}

// waitGone waits for pid, a process the test adopted, to exit and reaps
// it.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for time.Now().Before(deadline) {
		got, err := unix.Wait4(pid, nil, unix.WNOHANG, nil)
		if got == pid || errors.Is(err, unix.ECHILD) && unix.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("process %d (%s) did not exit", pid, cmdline(pid))
}

// cmdline returns the command line of pid.
func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(data), "\x00", " ")
}

// mustRun runs a direct runtime command and fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.rt.Run(ctx(t), nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// status returns the container's status as `state` reports it.
func status(t *testing.T, id string) *conmontest.State {
	t.Helper()
	s, err := e.rt.State(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readLog reads the container's k8s-file log.
func readLog(t *testing.T, c *conmontest.Container) (stdout, stderr string) {
	t.Helper()
	data, err := os.ReadFile(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	o, e := conmontest.ParseLog(data)
	return string(o), string(e)
}

// waitLog waits until the container's stdout in its log contains want.
func waitLog(t *testing.T, c *conmontest.Container, want string) {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		data, _ := os.ReadFile(c.LogPath)
		if o, _ := conmontest.ParseLog(data); strings.Contains(string(o), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: log %q without %q", c.ID, data, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitCode waits for the exit status conmon writes to the exit directory.
func exitCode(t *testing.T, id string) int {
	t.Helper()
	code, err := e.rt.ExitCode(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// notRunning checks that err is the runtime's "container not running"
// with exit status 1, which CRI-O takes for a container already gone.
func notRunning(t *testing.T, what string, err error) {
	t.Helper()
	var ce *conmontest.CmdError
	var ee *exec.ExitError
	if !errors.As(err, &ce) || !ce.NotFound() || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("%s: %v, want exit 1 with \"container not running\"", what, err)
	}
}
