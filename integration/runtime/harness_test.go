//go:build integration

// Package runtime_test drives the cocoon-runtime binary as Docker,
// containerd and CRI-O drive runc, against real VMs, and compares it with
// runc itself.
package runtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/internal/testutil"
)

// commandTimeout bounds one runtime command (a VM boot under TCG).
const commandTimeout = 3 * time.Minute

// env is what every test uses: set once by TestMain.
type env struct {
	runtime string // cocoon-runtime
	config  string // out/configuration.toml
	root    string // --root of every cocoon-runtime call
	rootfs  string // busybox root file system shared by the bundles
	tmp     string
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
	tmp, err := os.MkdirTemp("", "cocoon-runtime-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	e = env{
		runtime: filepath.Join(bin, "cocoon-runtime"),
		config:  filepath.Join(out, "configuration.toml"),
		root:    filepath.Join(tmp, "root"),
		rootfs:  filepath.Join(tmp, "rootfs"),
		tmp:     tmp,
	}
	if err := testutil.BusyboxRootfs(e.rootfs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if q := os.Getenv("COCOON_TEST_QEMU"); q != "" {
		// The suite again with another QEMU (make integration runs it
		// with Debian 12's 7.2 beside the system's 10).
		c, err := testutil.WithQEMU(e.config, q, tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		e.config = c
		fmt.Printf("QEMU: %s\n", q)
	}
	return testutil.RunAdopting(m, leftovers)
}

// sandboxRoot is where cocoon-runtime puts the sandboxes of the suite's
// root.
func sandboxRoot() string { return testutil.SandboxRoot(e.root) }

// leftovers reports what the suite's containers left: state under the
// root, sandbox directories, QEMU, proxy or shim processes.
func leftovers() error {
	var problems []string
	if entries, _ := os.ReadDir(e.root); len(entries) > 0 {
		var names []string
		for _, en := range entries {
			names = append(names, en.Name())
		}
		problems = append(problems, fmt.Sprintf("--root not empty: %v", names))
	}
	if _, err := os.Stat(sandboxRoot()); err == nil {
		problems = append(problems, sandboxRoot()+" still exists")
	}
	if ps := processesOf(sandboxRoot()); len(ps) > 0 {
		problems = append(problems, fmt.Sprintf("processes left: %v", ps))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// processesOf lists live processes whose command line mentions s.
func processesOf(s string) []string { return testutil.ProcessesOf(s) }

// result is what a command left.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// cmdOpts are a command's stdin and extra descriptors.
type cmdOpts struct {
	stdin string
	extra []*os.File
}

// command prepares bin with args; stdout and stderr go to files, not
// pipes: shims inherit them and outlive the runtime, as with runc.
func command(t *testing.T, o cmdOpts, bin string, args ...string) (*exec.Cmd, func() result) {
	t.Helper()
	dir := t.TempDir()
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if o.stdin != "" {
		cmd.Stdin = strings.NewReader(o.stdin)
	}
	cmd.ExtraFiles = o.extra
	return cmd, func() result {
		stdout.Close()
		stderr.Close()
		out, _ := os.ReadFile(stdout.Name())
		errOut, _ := os.ReadFile(stderr.Name())
		code := 0
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
			if ws, ok := cmd.ProcessState.Sys().(unix.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		return result{stdout: string(out), stderr: string(errOut), code: code}
	}
}

// run runs a command to its end.
func run(t *testing.T, o cmdOpts, bin string, args ...string) result {
	t.Helper()
	cmd, res := command(t, o, bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(commandTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v: timed out", bin, args)
	}
	return res()
}

// rt runs cocoon-runtime with the suite's configuration and root.
func rt(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, cmdOpts{}, e.runtime, rtArgs(args...)...)
}

func rtArgs(args ...string) []string {
	return append([]string{"--config", e.config, "--root", e.root}, args...)
}

// mustRT runs cocoon-runtime and fails the test unless it exits 0.
func mustRT(t *testing.T, args ...string) result {
	t.Helper()
	r := rt(t, args...)
	if r.code != 0 {
		t.Fatalf("cocoon-runtime %v: %v", args, r)
	}
	return r
}

// baseSpec is the spec of `cocoon-runtime spec` (runc's) on the suite's
// rootfs, without a terminal, running args.
func baseSpec(t *testing.T, args ...string) *specs.Spec {
	t.Helper()
	dir := t.TempDir()
	mustRT(t, "spec", "--bundle", dir)
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

// writeBundle writes spec into a new bundle directory.
func writeBundle(t *testing.T, s *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// containerState is the output of state.
type containerState struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
}

func stateOf(t *testing.T, id string) containerState {
	t.Helper()
	r := mustRT(t, "state", id)
	var s containerState
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("state %s: %v in %q", id, err, r.stdout)
	}
	return s
}

// waitStatus polls state until the container has status want.
func waitStatus(t *testing.T, id, want string) containerState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for {
		s := stateOf(t, id)
		if s.Status == want {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: status %s, want %s", id, s.Status, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reap waits for pid, a process the test adopted, and returns its exit
// status as runc reports it.
func reap(t *testing.T, pid int) int {
	t.Helper()
	deadline := time.Now().Add(commandTimeout)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil {
			t.Fatalf("waiting for %d: %v", pid, err)
		}
		if got == pid {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readPid reads a pid file.
func readPid(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		t.Fatalf("pid file %s: %q", path, data)
	}
	return pid
}

// cmdline returns the command line of pid.
func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(bytes.ReplaceAll(data, []byte{0}, []byte{' '}))
}

// forceDelete removes a container whatever its state, for cleanups.
func forceDelete(t *testing.T, id string) {
	t.Helper()
	if r := rt(t, "delete", "--force", id); r.code != 0 {
		t.Errorf("delete --force %s: %v", id, r)
	}
}
