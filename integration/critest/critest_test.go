//go:build integration

package critest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/critest"
)

// namespace is the CRI plugin's containerd namespace.
const namespace = "k8s.io"

// suiteTimeout bounds one run of the suite (ginkgo's -timeout).
const suiteTimeout = 20 * time.Minute

// podNetwork is the pods' CNI network (198.18.0.0/15 is for benchmarks:
// no other suite's).
var podNetwork = &containerdtest.PodNetwork{Name: "cocoon-critest", Bridge: "cocoon-crit0", Subnet: "198.18.0.0/24"}

// exceptions are the specs that pass under runc and fail under cocoon by
// design (README, "Where cocoon differs from runc").
var exceptions = []critest.Exception{
	{Spec: "runtime should support HostNetwork is true",
		Reason: "a VM cannot share the host's network namespace: the cocoon handler refuses host-network pods"},
	{Spec: "runtime should support portforward in host network",
		Reason: "a host-network pod: the cocoon handler refuses it"},
	{Spec: "runtime should support HostIpc is true",
		Reason: "a VM cannot share the host's IPC namespace: the cocoon handler refuses host-IPC pods"},
	{Spec: "mount with 'rshared' should support propagation from host to container and vice versa",
		Reason: "a mount made in the VM cannot reach the host"},
}

var (
	daemon      *containerdtest.Daemon
	critestPath string
	crictlPath  string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	if critestPath, err = critest.Path(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if crictlPath, err = containerdtest.CrictlPath(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reg, err := critest.ServeRegistry()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer reg.Close()
	mirrors := map[string]string{}
	for _, r := range critest.Registries {
		mirrors[r] = reg.Addr
	}
	// VM templates of both shapes (factory init makes them): the pods on
	// the CNI network have a NIC.
	opts := containerdtest.Options{CRI: true, SandboxImage: critest.SandboxImage, PodNetwork: podNetwork, Templates: 2, Mirrors: mirrors}
	return containerdtest.RunTests(m, opts, namespace, func(ctx context.Context, d *containerdtest.Daemon) error {
		daemon = d
		programs, err := buildPrograms(ctx, filepath.Join(d.Dir, "programs"))
		if err != nil {
			return err
		}
		return reg.PushImages(ctx, programs)
	})
}

// buildPrograms builds the images' programs into dir.
func buildPrograms(ctx context.Context, dir string) (critest.Programs, error) {
	busybox, err := critest.BusyboxPath()
	if err != nil {
		return critest.Programs{}, err
	}
	p := critest.Programs{
		Busybox:   busybox,
		Pause:     filepath.Join(dir, "pause"),
		Webserver: filepath.Join(dir, "webserver"),
		NNP:       filepath.Join(dir, "nnp"),
	}
	if err := containerdtest.PauseRootfs(ctx, dir); err != nil {
		return p, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dir, "./webserver", "./nnp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return p, fmt.Errorf("building the images' programs: %w: %s", err, out)
	}
	return p, nil
}

// TestCRIValidation runs the CRI validation suite with the runc handler,
// then with cocoon's, on the same containerd, and fails where cocoon does
// worse than runc: a spec that passed under runc and did not under
// cocoon, or that runc ran and cocoon skipped, but for the exceptions.
// COCOON_TEST_CRITEST_FOCUS, when set, runs only the specs whose names
// match it (ginkgo's -focus), for both handlers.
func TestCRIValidation(t *testing.T) {
	reports := map[string]critest.Report{}
	for _, handler := range []string{"runc", "cocoon"} {
		r, err := runSuite(t, handler)
		if err != nil {
			t.Fatalf("critest with the %s handler: %v", handler, err)
		}
		reports[handler] = r
	}
	ref, got := reports["runc"], reports["cocoon"]
	// A reference that passes little compares nothing: the setup (the
	// images, the registry, the network) broke.
	passed, ran := len(ref.Names(critest.Passed)), len(ref)-len(ref.Names(critest.Skipped))
	if passed == 0 || passed < ran/2 {
		t.Errorf("runc passed %d of the %d specs it ran: the suite's setup is broken; failed: %s", passed, ran, strings.Join(ref.Names(critest.Failed), "; "))
	}
	c := critest.Compare(ref, got, exceptions)
	for _, s := range ref.Names(critest.Failed) {
		fmt.Printf("critest: fails under runc too: %s: %s\n", s, oneLine(ref[s].Message))
	}
	for _, s := range c.Excused {
		fmt.Printf("critest: exception: %s\n", s)
	}
	for _, s := range c.Passing {
		fmt.Printf("critest: exception passes under cocoon: %s\n", s)
	}
	for _, s := range c.Better {
		fmt.Printf("critest: passes under cocoon, not under runc: %s\n", s)
	}
	for _, s := range c.Regressions {
		t.Errorf("cocoon does worse than runc: %s", s)
	}
}

// runSuite runs critest with handler against the daemon, keeps its output
// and JUnit report in out/, removes the pods it left, prints the tally and
// the time, and returns the report.
func runSuite(t *testing.T, handler string) (critest.Report, error) {
	t.Helper()
	name := fmt.Sprintf("critest-containerd-%s-%s", strings.TrimPrefix(daemon.Version, "v"), handler)
	junit := filepath.Join(daemon.Out, name+".xml")
	logPath := filepath.Join(daemon.Out, name+".log")
	// A report of an earlier run must not pass for this one's.
	if err := os.Remove(junit); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout+2*time.Minute)
	defer cancel()
	endpoint := "unix://" + daemon.Socket
	args := []string{"-runtime-endpoint", endpoint, "-image-endpoint", endpoint, "-runtime-handler", handler,
		"-ginkgo.junit-report", junit, "-ginkgo.no-color", "-ginkgo.timeout", suiteTimeout.String()}
	if focus := os.Getenv("COCOON_TEST_CRITEST_FOCUS"); focus != "" {
		args = append(args, "-ginkgo.focus", focus)
	}
	cmd := exec.CommandContext(ctx, critestPath, args...)
	cmd.Dir = t.TempDir()
	// Its temporary directories (the pods' volumes and logs) in the
	// daemon's, which goes with it: a spec that fails may leave them.
	tmp := filepath.Join(daemon.Dir, "critest-tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start).Round(time.Second)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("timed out after %v (output: %s)", elapsed, logPath)
	}
	// critest exits 1 when a spec fails; its report says which.
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, fmt.Errorf("running %s: %w", critestPath, err)
	}
	r, rerr := critest.ReadReport(junit)
	if rerr != nil {
		return nil, fmt.Errorf("%w (exit: %v, output: %s)", rerr, err, logPath)
	}
	left := removePods(t)
	fmt.Printf("critest: containerd %s, %s handler: %s in %v (%d pods left, removed; output %s)\n",
		daemon.Version, handler, r.TallyString(), elapsed, left, logPath)
	return r, nil
}

// removePods removes the pods that the suite left (a failed spec may
// leave its pod) and returns how many there were.
func removePods(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := daemon.Crictl(ctx, "pods", "-q")
	if err != nil {
		t.Errorf("listing the pods the suite left: %v", err)
		return 0
	}
	pods := strings.Fields(out)
	for _, p := range pods {
		if _, err := daemon.Crictl(ctx, "stopp", p); err != nil {
			t.Errorf("stopping pod %s that the suite left: %v", p, err)
		}
		if _, err := daemon.Crictl(ctx, "rmp", p); err != nil {
			t.Errorf("removing pod %s that the suite left: %v", p, err)
		}
	}
	return len(pods)
}

// oneLine is the first line of s.
func oneLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
