//go:build integration

// Package kubelet_test drives cocoon through a real kubelet: a one-node
// cluster of kubetest (etcd, kube-apiserver and a kubelet of Kubernetes
// 1.34, built by `make kubernetes`) on a private CRI runtime with cocoon's
// "cocoon" handler beside runc: containerd (Debian's 1.6, or
// $COCOON_TEST_CONTAINERD) with its CRI plugin, or, with
// COCOON_TEST_KUBELET_CRI=crio, CRI-O (criotest, cocoon registered by
// packaging/crio/register.sh: cocoon-runtime under conmon). The
// RuntimeClass "cocoon" is installed by packaging/kubernetes/register.sh,
// pods are on a CNI network of the suite's own, and the busybox and pause
// images are built here and put into the runtime's image store
// (imagePullPolicy Never). Every test works through kubectl; the host side
// (QEMU processes, cocoon's state, cgroups) is read directly. Nothing is
// left behind: the suite checks processes, mounts, cgroups, CNI leases and
// cocoon's state after it.
package kubelet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/criotest"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
	"github.com/cocoon-containers/cocoon/internal/testutil"
)

const (
	namespace = "k8s.io" // containerd's namespace of the CRI plugin
	busybox   = containerdtest.BusyboxImage
)

// podNetwork is the suite's CNI network, in the benchmarking range
// 198.18.0.0/15 (the TEST-NETs and 198.18.71.0/24 are other suites').
var podNetwork = &containerdtest.PodNetwork{Name: "cocoon-kube-test", Bridge: "cocoon-kube0", Subnet: "198.18.90.0/24"}

var (
	cluster *kubetest.Cluster
	node    nodeRuntime
)

// nodeRuntime is the node's CRI runtime.
type nodeRuntime struct {
	kubetest.Runtime
	// name names it in messages: containerd or CRI-O.
	name string
	// sandboxDir is where cocoon keeps the VM of a CRI sandbox.
	sandboxDir func(id string) string
	// vmSandboxDir is where the shim of CRI-O's cocoon-vm handler keeps
	// it; nil on containerd.
	vmSandboxDir func(id string) string
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := kubetest.BinDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	unmount, err := kubetest.MountHugetlb()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := onRuntime(&suite{m: m}, repo)
	if err := unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "left behind after the suite:", err)
		code = 1
	}
	return code
}

// onRuntime runs the suite on the CRI runtime COCOON_TEST_KUBELET_CRI
// names.
func onRuntime(s *suite, repo string) int {
	switch cri := os.Getenv("COCOON_TEST_KUBELET_CRI"); cri {
	case "", "containerd":
		return onContainerd(s, repo)
	case "crio":
		return onCRIO(s, repo)
	default:
		fmt.Fprintf(os.Stderr, "COCOON_TEST_KUBELET_CRI=%q: want containerd or crio\n", cri)
		return 1
	}
}

// onContainerd runs the suite on a private containerd.
func onContainerd(s *suite, repo string) int {
	opts := containerdtest.Options{CRI: true, SandboxImage: containerdtest.PauseImage, PodNetwork: podNetwork}
	return containerdtest.RunTests(s, opts, namespace, func(ctx context.Context, d *containerdtest.Daemon) error {
		node = nodeRuntime{Runtime: d, name: "containerd", sandboxDir: func(id string) string {
			return filepath.Join(d.SandboxRoot(namespace), id)
		}}
		if err := d.ImportBusybox(ctx, namespace); err != nil {
			return err
		}
		if err := d.ImportPause(ctx, namespace); err != nil {
			return err
		}
		var err error
		cluster, err = kubetest.Start(ctx, d, repo)
		return err
	})
}

// onCRIO runs the suite on a private CRI-O. conmon double-forks, and
// cocoon-runtime leaves the relays, QEMU and the proxy behind on purpose:
// the suite adopts them, as a node's init would.
func onCRIO(s *suite, repo string) int {
	bin, out := os.Getenv("COCOON_TEST_BIN"), os.Getenv("COCOON_TEST_OUT")
	if bin == "" || out == "" {
		fmt.Fprintln(os.Stderr, "COCOON_TEST_BIN and COCOON_TEST_OUT must name bin/ and out/ (make build kernel image; make integration)")
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := criotest.Start(ctx, criotest.Options{Bin: bin, Out: out, Repo: repo, PodNetwork: podNetwork})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer d.Remove()
	node = nodeRuntime{Runtime: d, name: "CRI-O", sandboxDir: d.SandboxDir, vmSandboxDir: d.VMSandboxDir}
	stop := func() error {
		d.Stop()
		if left := d.Leftovers(); len(left) > 0 {
			return fmt.Errorf("%s", strings.Join(left, "; "))
		}
		return nil
	}
	if cluster, err = kubetest.Start(ctx, d, repo); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "left behind:", err)
		}
		return 1
	}
	code := testutil.RunAdopting(s, stop)
	if code != 0 || os.Getenv("COCOON_TEST_DAEMON_LOG") != "" {
		kept := filepath.Join(out, "kubelet-suite-crio.log")
		if d.SaveLog(kept) == nil {
			fmt.Fprintf(os.Stderr, "--- CRI-O log: %s\n", kept)
		}
		fmt.Fprintf(os.Stderr, "--- CRI-O log tail:\n%s\n", d.LogTail())
	}
	return code
}

// suite runs the tests, then stops the cluster (before the runtime, whose
// leftovers are checked after it) and checks what the cluster leaves.
type suite struct{ m *testing.M }

func (s *suite) Run() int {
	code := s.m.Run()
	if code != 0 || os.Getenv("COCOON_TEST_DAEMON_LOG") != "" {
		fmt.Fprintf(os.Stderr, "--- kubelet log tail:\n%s\n", cluster.KubeletLogTail())
		if out := os.Getenv("COCOON_TEST_OUT"); out != "" {
			if err := cluster.SaveLogs(out, "kubelet-suite-"); err != nil {
				fmt.Fprintln(os.Stderr, "saving the cluster's logs:", err)
			} else {
				fmt.Fprintf(os.Stderr, "--- the cluster's logs: %s/kubelet-suite-*.log\n", out)
			}
		}
	}
	if left := cluster.Stop(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "left behind by the cluster:", strings.Join(left, "; "))
		code = 1
	}
	return code
}
