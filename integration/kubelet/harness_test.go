//go:build integration

// Package kubelet_test drives cocoon through a real kubelet: a one-node
// cluster of kubetest (etcd, kube-apiserver and a kubelet of Kubernetes
// 1.34, built by `make kubernetes`) on a private containerd (Debian's 1.6,
// or $COCOON_TEST_CONTAINERD) whose CRI plugin has the "cocoon" and
// "runc" handlers, the RuntimeClass "cocoon" installed by
// packaging/kubernetes/register.sh, pods on a CNI network of the suite's
// own, and the busybox and pause images built here and imported into
// containerd (imagePullPolicy Never). Every test works through kubectl;
// the host side (QEMU processes, cocoon's state, cgroups) is read
// directly. Nothing is left behind: the suite checks processes, mounts,
// cgroups, CNI leases and cocoon's state after it.
package kubelet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoon-containers/cocoon/integration/containerdtest"
	"github.com/cocoon-containers/cocoon/integration/kubetest"
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
	daemon  *containerdtest.Daemon
)

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
	s := &suite{m: m}
	opts := containerdtest.Options{CRI: true, SandboxImage: containerdtest.PauseImage, PodNetwork: podNetwork}
	return containerdtest.RunTests(s, opts, namespace, func(ctx context.Context, d *containerdtest.Daemon) error {
		daemon = d
		if err := d.ImportBusybox(ctx, namespace); err != nil {
			return err
		}
		if err := d.ImportPause(ctx, namespace); err != nil {
			return err
		}
		cluster, err = kubetest.Start(ctx, d, repo)
		return err
	})
}

// suite runs the tests, then stops the cluster (before containerd, whose
// leftovers RunTests checks) and checks what the cluster leaves.
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
