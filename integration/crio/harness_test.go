//go:build integration

// Package crio_test drives cocoon through a real CRI-O (criotest: built
// by `make crio` into the cache, on private directories, with the drop-in
// of packaging/crio/register.sh) with crictl, as the kubelet would, on
// both of cocoon's handlers: "cocoon" (cocoon-runtime under conmon) and
// "cocoon-vm" (the shim v2, runtime_type "vm"). VM templates are on, as
// in an install: every pod's VM is restored from one. Nothing is left
// behind: processes, mounts, pinned namespaces, CNI leases, VM state,
// cgroups.
package crio_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/criotest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

const (
	busybox        = containerdtest.BusyboxImage
	commandTimeout = 3 * time.Minute
	ociHandler     = criotest.OCIHandler // cocoon-runtime under conmon
	vmHandler      = criotest.VMHandler  // the shim v2, runtime_type "vm"
)

// podNetwork is the suite's CNI network, in the benchmarking range
// 198.18.0.0/15 (the TEST-NETs are the other suites': a bridge of each may
// be up at once).
var podNetwork = &containerdtest.PodNetwork{Name: "cocoon-crio-test", Bridge: "cocoon-crio0", Subnet: "198.18.71.0/24"}

// The suite's CRI-O, set once by TestMain.
var (
	crio      *criotest.Daemon
	guestRel  string // out/kernel.release
	hostRel   string
	cgParent  string // the pods' cgroup parent
	templates *testutil.Templates
)

func ociRoot() string                 { return crio.OCIRoot() }
func vmRoot() string                  { return crio.VMRoot() }
func nsDir() string                   { return crio.NSDir() }
func cniDirs() containerdtest.CNIDirs { return crio.CNIDirs() }

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	if err := setup(bin, out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// conmon double-forks, and cocoon-runtime leaves the relays, QEMU and
	// the proxy behind on purpose: the suite adopts them, as a node's init
	// would.
	code := testutil.RunAdopting(m, func() error {
		crio.Stop()
		problems := append(crio.Leftovers(), cgroupLeftovers()...)
		if len(problems) > 0 {
			return fmt.Errorf("%s", strings.Join(problems, "; "))
		}
		return nil
	})
	if code != 0 || os.Getenv("COCOON_TEST_DAEMON_LOG") != "" {
		// The whole log (debug level) is kept in out/, its tail printed.
		kept := filepath.Join(out, "crio.log")
		if crio.SaveLog(kept) == nil {
			fmt.Fprintf(os.Stderr, "--- CRI-O log: %s\n", kept)
		}
		fmt.Fprintf(os.Stderr, "--- CRI-O log tail:\n%s\n", crio.LogTail())
	}
	crio.Remove()
	return code
}

// setup starts the suite's CRI-O, with VM templates on, as an installed
// cocoon has them: every pod's VM is restored from one.
func setup(bin, out string) error {
	rel, err := os.ReadFile(filepath.Join(out, "kernel.release"))
	if err != nil {
		return err
	}
	guestRel = strings.TrimSpace(string(rel))
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	hostRel = unix.ByteSliceToString(uts.Release[:])
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	cgParent = fmt.Sprintf("/cocoon-crio-%d", os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	crio, err = criotest.Start(ctx, criotest.Options{Bin: bin, Out: out, Repo: repo, PodNetwork: podNetwork, Templates: true})
	if err != nil {
		return err
	}
	templates = crio.Templates
	return nil
}

// cgroupLeftovers reports (and removes) cgroups under the pods' parent:
// the pods' cgroups (the parents named in their configurations) are the
// kubelet's to make and remove, as CRI-O leaves them: the suite removes
// them; any cgroup still in one is left by CRI-O or cocoon.
func cgroupLeftovers() []string {
	var problems []string
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgParent)
	for _, dir := range dirs {
		pods, _ := os.ReadDir(dir)
		for _, pod := range pods {
			if !pod.IsDir() {
				continue
			}
			podDir := filepath.Join(dir, pod.Name())
			entries, _ := os.ReadDir(podDir)
			for _, e := range entries {
				if e.IsDir() {
					problems = append(problems, "cgroup left: "+filepath.Join(podDir, e.Name()))
					_ = os.Remove(filepath.Join(podDir, e.Name()))
				}
			}
			_ = os.Remove(podDir)
		}
		if err := os.Remove(dir); err != nil {
			problems = append(problems, fmt.Sprintf("removing cgroup %s: %v", dir, err))
		}
	}
	return problems
}

// crictlCommand returns crictl pointed at the suite's CRI-O.
func crictlCommand(ctx context.Context, args ...string) *exec.Cmd {
	return crio.CrictlCommand(ctx, args...)
}

// crictlIn runs crictl with stdin.
func crictlIn(t testing.TB, stdin string, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunClient(t, commandTimeout, stdin, func(ctx context.Context) *exec.Cmd { return crictlCommand(ctx, args...) })
}

func crictl(t testing.TB, args ...string) testutil.Result {
	t.Helper()
	return crictlIn(t, "", args...)
}

func mustCrictl(t testing.TB, args ...string) string {
	t.Helper()
	r := crictl(t, args...)
	if r.Code != 0 {
		t.Fatalf("crictl %v: %v", args, r)
	}
	return strings.TrimSpace(r.Stdout)
}
